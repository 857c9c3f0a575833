// Control commands: names, JSON form, bytes for a broadcast (control.h).
#include "monitor/control.h"

#include <climits>

#include "monitor/protocol.h"

namespace shardlm::monitor {

using json = nlohmann::json;

namespace {
struct KindName {
  ControlKind kind;
  const char* name;
};
constexpr KindName kKinds[] = {
    {ControlKind::kPause, "pause"},
    {ControlKind::kResume, "resume"},
    {ControlKind::kStop, "stop"},
    {ControlKind::kSaveCheckpoint, "save_checkpoint"},
    {ControlKind::kSetLr, "set_lr"},
    {ControlKind::kSetWeightDecay, "set_weight_decay"},
    {ControlKind::kSetClip, "set_clip"},
    {ControlKind::kSetBatch, "set_batch"},
    {ControlKind::kSetEarlyStopping, "set_early_stopping"},
    {ControlKind::kStartRun, "start_run"},
    {ControlKind::kResumeFrom, "resume_from"},
    {ControlKind::kInspect, "inspect"},
};

[[noreturn]] void bad(const std::string& id, const std::string& what) {
  throw ProtocolError("bad_message", "control '" + id + "': " + what);
}

double number_arg(const json& args, const std::string& id, const char* key) {
  auto it = args.find(key);
  if (it == args.end() || !it->is_number())
    bad(id, std::string("args.") + key + " must be a number");
  return it->get<double>();
}

int64_t int_arg(const json& args, const std::string& id, const char* key) {
  auto it = args.find(key);
  if (it == args.end() || !(it->is_number_integer() || it->is_number_unsigned()))
    bad(id, std::string("args.") + key + " must be an integer");
  return it->get<int64_t>();
}

std::string string_arg(const json& args, const std::string& id, const char* key) {
  auto it = args.find(key);
  if (it == args.end() || !it->is_string() || it->get_ref<const std::string&>().empty())
    bad(id, std::string("args.") + key + " must be a non-empty string");
  return it->get<std::string>();
}
}  // namespace

const char* control_kind_name(ControlKind k) {
  for (auto& kn : kKinds)
    if (kn.kind == k) return kn.name;
  return "pause";
}

std::optional<ControlKind> parse_control_kind(std::string_view name) {
  for (auto& kn : kKinds)
    if (name == kn.name) return kn.kind;
  return std::nullopt;
}

json ControlCommand::to_json() const {
  json j;
  j["v"] = kProtocolVersion;
  j["ts"] = now_ts();
  j["id"] = id;
  if (kind == ControlKind::kInspect) {
    j["type"] = "inspect";
    j["what"] = inspect_what;
  } else {
    j["type"] = "control";
    j["command"] = control_kind_name(kind);
  }
  // The typed fields win over the raw args, so a command built in C++ needs no args.
  json a = args.is_object() ? args : json::object();
  switch (kind) {
    case ControlKind::kSetLr:
      a["lr"] = value;
      break;
    case ControlKind::kSetWeightDecay:
      a["weight_decay"] = value;
      break;
    case ControlKind::kSetClip:
      a["clip"] = value;
      break;
    case ControlKind::kSetBatch:
      a["micro_batch"] = micro_batch;
      a["accumulation"] = accumulation;
      break;
    case ControlKind::kSetEarlyStopping:
      a["enabled"] = early.enabled;
      a["patience"] = early.patience;
      a["min_delta"] = early.min_delta;
      break;
    case ControlKind::kStartRun:
      a["config"] = path;
      break;
    case ControlKind::kResumeFrom:
      a["checkpoint"] = path;
      break;
    default:
      break;
  }
  if (!a.empty()) j["args"] = std::move(a);
  return j;
}

ControlCommand ControlCommand::from_json(const json& msg) {
  ControlCommand c;
  if (!msg.is_object()) throw ProtocolError("bad_message", "control: not an object");
  c.id = msg.value("id", std::string());
  if (c.id.empty()) bad(c.id, "missing id");
  const std::string type = msg.value("type", std::string());
  c.args = msg.contains("args") && msg["args"].is_object() ? msg["args"] : json::object();
  if (type == "inspect") {
    c.kind = ControlKind::kInspect;
    c.inspect_what = msg.value("what", std::string());
    if (c.inspect_what.empty()) bad(c.id, "inspect needs 'what'");
    return c;
  }
  if (type != "control") bad(c.id, "not a control message (type '" + type + "')");
  auto kind = parse_control_kind(msg.value("command", std::string()));
  if (!kind || *kind == ControlKind::kInspect)
    bad(c.id, "unknown command '" + msg.value("command", std::string()) + "'");
  c.kind = *kind;
  const json& a = c.args;
  switch (c.kind) {
    case ControlKind::kSetLr:
      c.value = number_arg(a, c.id, "lr");
      if (!(c.value > 0)) bad(c.id, "args.lr must be > 0");
      break;
    case ControlKind::kSetWeightDecay:
      c.value = number_arg(a, c.id, "weight_decay");
      if (!(c.value >= 0)) bad(c.id, "args.weight_decay must be >= 0");
      break;
    case ControlKind::kSetClip:
      c.value = number_arg(a, c.id, "clip");
      if (!(c.value >= 0)) bad(c.id, "args.clip must be >= 0");
      break;
    case ControlKind::kSetBatch:
      c.micro_batch = int_arg(a, c.id, "micro_batch");
      c.accumulation = int_arg(a, c.id, "accumulation");
      if (c.micro_batch < 1 || c.accumulation < 1)
        bad(c.id, "args.micro_batch and args.accumulation must be >= 1");
      break;
    case ControlKind::kSetEarlyStopping: {
      auto it = a.find("enabled");
      if (it == a.end() || !it->is_boolean()) bad(c.id, "args.enabled must be true or false");
      c.early.enabled = it->get<bool>();
      if (a.contains("patience")) c.early.patience = int_arg(a, c.id, "patience");
      if (a.contains("min_delta")) c.early.min_delta = number_arg(a, c.id, "min_delta");
      if (c.early.patience < 0 || c.early.min_delta < 0)
        bad(c.id, "args.patience and args.min_delta must be >= 0");
      break;
    }
    case ControlKind::kStartRun:
      c.path = string_arg(a, c.id, "config");
      break;
    case ControlKind::kResumeFrom:
      c.path = string_arg(a, c.id, "checkpoint");
      break;
    default:
      break;
  }
  return c;
}

std::string encode_commands(const std::vector<ControlCommand>& cmds) {
  json arr = json::array();
  for (auto& c : cmds) arr.push_back(c.to_json());
  return dump(arr);
}

std::vector<ControlCommand> decode_commands(std::string_view bytes) {
  json arr = json::parse(bytes.begin(), bytes.end(), nullptr, false);
  if (arr.is_discarded() || !arr.is_array())
    throw ProtocolError("bad_json", "control commands: expected a JSON array");
  std::vector<ControlCommand> out;
  out.reserve(arr.size());
  for (auto& j : arr) out.push_back(ControlCommand::from_json(j));
  return out;
}

std::vector<ControlCommand> broadcast_commands(const std::vector<ControlCommand>& cmds,
                                               core::Comm& comm, int root) {
  std::string bytes;
  if (comm.rank() == root && !cmds.empty()) bytes = encode_commands(cmds);
  bytes = core::broadcast_string(comm, std::move(bytes), root);
  if (bytes.empty()) return {};
  return decode_commands(bytes);
}

json encode_ack(int rank, const ControlCommand& cmd, int64_t step, bool ok,
                const std::string& message) {
  json j = envelope("ack");
  j["rank"] = rank;
  j["id"] = cmd.id;
  j["command"] = control_kind_name(cmd.kind);
  j["step"] = step < 0 ? 0 : step;
  j["ok"] = ok;
  if (!message.empty()) j["message"] = message.substr(0, 4096);
  return j;
}

}  // namespace shardlm::monitor
