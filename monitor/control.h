// Control commands from the dashboard to the run: what they are, how rank 0
// receives them (ControlChannel), and how they travel to the other ranks
// (encode_commands / broadcast_commands) so that every rank applies them at
// the same step boundary.
//
// The trainer's loop, at a step boundary:
//   auto cmds = monitor::broadcast_commands(rank == 0 ? channel.poll() : {}, comm);
//   for (auto& c : cmds) { apply(c); if (rank == 0) channel.ack(c, step); }
#pragma once

#include "core/comm.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace shardlm::monitor {

enum class ControlKind {
  kPause,
  kResume,
  kStop,
  kSaveCheckpoint,
  kSetLr,
  kSetWeightDecay,
  kSetClip,
  kSetBatch,
  kSetEarlyStopping,
  kStartRun,    // handled by the aggregator (spawns a run); never reaches a trainer
  kResumeFrom,  // handled by the aggregator (spawns a run from a checkpoint)
  kInspect,     // a model-inspection request (`inspect` message), read-only
};

// The protocol's name of a kind ("set_lr"); kInspect is "inspect".
const char* control_kind_name(ControlKind k);
// Inverse of control_kind_name; nullopt for an unknown name.
std::optional<ControlKind> parse_control_kind(std::string_view name);

struct EarlyStoppingSettings {
  bool enabled = false;
  int64_t patience = 0;
  double min_delta = 0;
};

struct ControlCommand {
  std::string id;  // chosen by the viewer; echoed in the ack
  ControlKind kind = ControlKind::kPause;
  double value = 0;             // set_lr: lr, set_weight_decay: wd, set_clip: max norm
  int64_t micro_batch = 0;      // set_batch
  int64_t accumulation = 0;     // set_batch
  EarlyStoppingSettings early;  // set_early_stopping
  std::string path;             // start_run: config; resume_from: checkpoint
  std::string inspect_what;     // inspect: attention | embeddings | activations | architecture
  nlohmann::json args = nlohmann::json::object();  // the raw args, as received

  // A `control` (or `inspect`) message without token.
  nlohmann::json to_json() const;
  // From a `control` or `inspect` message that passed the schema; throws
  // ProtocolError("bad_message") naming the field when args are missing or out of range.
  static ControlCommand from_json(const nlohmann::json& msg);
};

// Commands as bytes and back (a JSON array), for a broadcast or a file.
std::string encode_commands(const std::vector<ControlCommand>& cmds);
// Throws ProtocolError when `bytes` is not what encode_commands wrote.
std::vector<ControlCommand> decode_commands(std::string_view bytes);

// Rank `root`'s commands on every rank of `comm` (core::broadcast_string).
// Collective: every rank calls it at the same step boundary; `cmds` is read on root only.
std::vector<ControlCommand> broadcast_commands(const std::vector<ControlCommand>& cmds,
                                               core::Comm& comm, int root = 0);

// Where rank 0 gets commands from. Implementations are thread-safe.
class ControlChannel {
 public:
  virtual ~ControlChannel() = default;
  // Commands received since the last call, oldest first; never blocks.
  virtual std::vector<ControlCommand> poll() = 0;
  // Tells the viewers that `cmd` took effect at `step` (ok) or was refused (!ok, why).
  virtual void ack(const ControlCommand& cmd, int64_t step, bool ok = true,
                   const std::string& message = "") = 0;
  // Answers an `inspect` request with its data (ok) or why it failed; a
  // channel that cannot carry answers drops them. `partial`: more answers to
  // the same request follow (a streamed generation).
  virtual void inspect_result(const ControlCommand& request, bool ok, const nlohmann::json& data,
                              const std::string& error, bool partial = false) {
    (void)request, (void)ok, (void)data, (void)error, (void)partial;
  }
};

// No control: poll() is always empty.
class NullControl : public ControlChannel {
 public:
  std::vector<ControlCommand> poll() override { return {}; }
  void ack(const ControlCommand&, int64_t, bool, const std::string&) override {}
};

// The `ack` message for `cmd` at `step`.
nlohmann::json encode_ack(int rank, const ControlCommand& cmd, int64_t step, bool ok,
                          const std::string& message);

}  // namespace shardlm::monitor
