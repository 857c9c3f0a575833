// Encoding of the rank-side messages and parsing of any message (protocol.h).
#include "monitor/protocol.h"

#include <chrono>
#include <cmath>
#include <set>

#include "monitor/schema.h"
#include "monitor/timestamp.h"

namespace shardlm::monitor {

using json = nlohmann::json;

const char* event_kind_name(EventKind k) {
  switch (k) {
    case EventKind::kRunStarted:
      return "run_started";
    case EventKind::kRunFinished:
      return "run_finished";
    case EventKind::kCheckpointSaved:
      return "checkpoint_saved";
    case EventKind::kEarlyStop:
      return "early_stop";
    case EventKind::kPaused:
      return "paused";
    case EventKind::kResumed:
      return "resumed";
    case EventKind::kStopped:
      return "stopped";
    case EventKind::kError:
      return "error";
    case EventKind::kWarning:
      return "warning";
    case EventKind::kInfo:
      return "info";
  }
  return "info";
}

namespace {
thread_local double pinned_ts = 0;  // set by a SameTimestamp (timestamp.h); 0: none
}  // namespace

double now_ts() {
  if (pinned_ts != 0) return pinned_ts;
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  return static_cast<double>(ms) / 1000.0;
}

SameTimestamp::SameTimestamp() : previous_(pinned_ts) {
  pinned_ts = now_ts();
}
SameTimestamp::~SameTimestamp() {
  pinned_ts = previous_;
}

json real(double x) {
  return std::isfinite(x) ? json(x) : json(nullptr);
}

json envelope(std::string_view type) {
  json j = json::object();
  j["v"] = kProtocolVersion;
  j["type"] = std::string(type);
  j["ts"] = now_ts();
  return j;
}

namespace {

template <class T>
void put(json& j, const char* key, const std::optional<T>& v) {
  if (!v) return;
  if constexpr (std::is_floating_point_v<T>) {
    j[key] = real(*v);
  } else {
    j[key] = *v;
  }
}

// A non-negative quantity (times, bytes): negative or non-finite values are dropped,
// because the schema says they cannot be.
template <class T>
void put_nonneg(json& j, const char* key, const std::optional<T>& v) {
  if (!v) return;
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(*v) || *v < 0) return;
  } else {
    if (*v < 0) return;
  }
  j[key] = *v;
}

json number_map(const std::map<std::string, double>& m) {
  json j = json::object();
  for (auto& [k, v] : m) j[k] = real(v);
  return j;
}

}  // namespace

json encode_run_info(int rank, const std::string& run_id, int world_size, const json& info) {
  json j = envelope("run_info");
  j["rank"] = rank;
  j["run_id"] = run_id.empty() ? std::string("run") : run_id;
  j["world_size"] = world_size < 1 ? 1 : world_size;
  j["info"] = info.is_object() ? info : json::object();
  return j;
}

json encode_step(int rank, const StepMetrics& m) {
  json j = envelope("step");
  j["rank"] = rank;
  j["step"] = m.step < 0 ? 0 : m.step;
  put_nonneg(j, "epoch", m.epoch);
  j["loss"] = real(m.loss);
  j["lr"] = real(m.lr);
  put(j, "grad_norm", m.grad_norm);
  put(j, "loss_scale", m.loss_scale);
  put_nonneg(j, "tokens", m.tokens);
  put(j, "tokens_per_s", m.tokens_per_s);
  json t = json::object();
  t["total"] = std::isfinite(m.time.total) && m.time.total > 0 ? m.time.total : 0.0;
  put_nonneg(t, "data", m.time.data);
  put_nonneg(t, "forward", m.time.forward);
  put_nonneg(t, "backward", m.time.backward);
  put_nonneg(t, "reduce", m.time.reduce);
  put_nonneg(t, "optimizer", m.time.optimizer);
  put_nonneg(t, "other", m.time.other);
  j["time"] = std::move(t);
  json mem = json::object();
  put_nonneg(mem, "host_rss", m.mem.host_rss);
  put_nonneg(mem, "host_available", m.mem.host_available);
  put_nonneg(mem, "host_total", m.mem.host_total);
  put_nonneg(mem, "device_allocated", m.mem.device_allocated);
  put_nonneg(mem, "device_reserved", m.mem.device_reserved);
  put_nonneg(mem, "device_peak", m.mem.device_peak);
  if (!mem.empty()) j["mem"] = std::move(mem);
  if (m.gpu) {
    json g = json::object();
    g["index"] = m.gpu->index < 0 ? 0 : m.gpu->index;
    put_nonneg(g, "util", m.gpu->util);
    put_nonneg(g, "mem_util", m.gpu->mem_util);
    if (m.gpu->temp_c && std::isfinite(*m.gpu->temp_c)) g["temp_c"] = *m.gpu->temp_c;
    put_nonneg(g, "power_w", m.gpu->power_w);
    put_nonneg(g, "mem_used", m.gpu->mem_used);
    put_nonneg(g, "mem_total", m.gpu->mem_total);
    j["gpu"] = std::move(g);
  }
  json h = json::object();
  put(h, "lr", m.hparams.lr);
  put_nonneg(h, "weight_decay", m.hparams.weight_decay);
  put_nonneg(h, "clip", m.hparams.clip);
  if (m.hparams.micro_batch && *m.hparams.micro_batch >= 1)
    h["micro_batch"] = *m.hparams.micro_batch;
  if (m.hparams.accumulation && *m.hparams.accumulation >= 1)
    h["accumulation"] = *m.hparams.accumulation;
  put(h, "paused", m.hparams.paused);
  if (!h.empty()) j["hparams"] = std::move(h);
  if (!m.extra.empty()) j["extra"] = number_map(m.extra);
  return j;
}

json encode_validation(int rank, const ValidationMetrics& v) {
  json j = envelope("validation");
  j["rank"] = rank;
  j["step"] = v.step < 0 ? 0 : v.step;
  j["loss"] = real(v.loss);
  put(j, "perplexity", v.perplexity);
  put_nonneg(j, "tokens", v.tokens);
  if (!v.metrics.empty()) j["metrics"] = number_map(v.metrics);
  return j;
}

json encode_event(int rank, const Event& e) {
  json j = envelope("event");
  j["rank"] = rank;
  if (e.step && *e.step >= 0) j["step"] = *e.step;
  j["kind"] = event_kind_name(e.kind);
  j["message"] = e.message.size() > 4096 ? e.message.substr(0, 4096) : e.message;
  if (e.data.is_object()) j["data"] = e.data;
  return j;
}

std::string dump(const json& msg) {
  return msg.dump(-1, ' ', false, json::error_handler_t::replace);
}

json parse_message(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw ProtocolError("bad_json", "the message is not valid JSON");
  if (!j.is_object()) throw ProtocolError("bad_json", "the message is not a JSON object");
  static const std::set<std::string> types = {
      "hello",       "welcome",     "history_end",    "run_info",
      "step",        "validation",  "event",          "heartbeat",
      "bye",         "control",     "command_status", "ack",
      "aggregate",   "ranks",       "error",          "list_checkpoints",
      "checkpoints", "inspect",     "inspect_result", "rate_next",
      "rate_pair",   "rate_vote",   "rate_ack",       "rate_list",
      "rate_votes",  "rate_create", "rate_created"};
  auto t = j.find("type");
  if (t == j.end() || !t->is_string())
    throw ProtocolError("bad_message", "the message has no string field 'type'");
  if (!types.count(t->get<std::string>()))
    throw ProtocolError("unknown_type", "unknown message type '" + t->get<std::string>() + "'");
  auto errors = protocol_validator().errors(j);
  if (!errors.empty()) {
    std::string msg = t->get<std::string>() + " message: " + errors.front();
    for (size_t i = 1; i < errors.size() && i < 3; ++i) msg += "; " + errors[i];
    throw ProtocolError("bad_message", msg);
  }
  return j;
}

}  // namespace shardlm::monitor
