// The monitor's wire format, version 1 (docs/monitor-protocol.md, checked by
// monitor/protocol.schema.json): the structs a trainer fills, and the
// functions that turn them into one JSON object per message.
//
// Floats that are NaN or infinite are written as null (JSON has no NaN).
// Optional fields are std::optional and omitted when empty, so a message says
// only what the sender measured.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace shardlm::monitor {

inline constexpr int kProtocolVersion = 1;

// A message that is not valid JSON, does not match the schema, or is not
// allowed in its place. The aggregator answers it with an `error` message.
class ProtocolError : public core::Error {
 public:
  ProtocolError(const std::string& code, const std::string& msg, const char* file = nullptr,
                int line = 0)
      : core::Error(msg, file, line), code_(code) {}
  // One of the `error.code` values of the schema ("bad_json", "bad_message", ...).
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// ---- what a rank reports --------------------------------------------------------

// Seconds spent in one step, in total and by phase.
struct StepTimes {
  double total = 0;
  std::optional<double> data, forward, backward, reduce, optimizer, other;
};

// Bytes. host_* from /proc (HardwareProbe), device_* from the framework's allocator.
struct MemoryUsage {
  std::optional<int64_t> host_rss, host_available, host_total;
  std::optional<int64_t> device_allocated, device_reserved, device_peak;
};

// One GPU as NVML sees it (HardwareProbe fills it when libnvidia-ml.so.1 loads).
struct GpuStats {
  int index = 0;
  std::optional<double> util, mem_util, temp_c, power_w;  // %, %, °C, W
  std::optional<int64_t> mem_used, mem_total;             // bytes
};

// The live hyperparameters in force at a step (they change under control).
struct HParams {
  std::optional<double> lr, weight_decay, clip;
  std::optional<int64_t> micro_batch, accumulation;
  std::optional<bool> paused;
};

// One optimizer step of one rank: the `step` message.
struct StepMetrics {
  int64_t step = 0;
  std::optional<int64_t> epoch;
  double loss = 0;
  double lr = 0;
  std::optional<double> grad_norm, loss_scale, tokens_per_s;
  std::optional<int64_t> tokens;  // tokens seen by this rank so far
  StepTimes time;
  MemoryUsage mem;
  std::optional<GpuStats> gpu;
  HParams hparams;
  std::map<std::string, double> extra;  // any further scalar, by name
};

// A validation pass: the `validation` message.
struct ValidationMetrics {
  int64_t step = 0;
  double loss = 0;
  std::optional<double> perplexity;
  std::optional<int64_t> tokens;
  std::map<std::string, double> metrics;  // accuracy, bleu, ...
};

// `event.kind` values a rank sends (the aggregator's own kinds are strings in aggregator.cpp).
enum class EventKind {
  kRunStarted,
  kRunFinished,
  kCheckpointSaved,
  kEarlyStop,
  kPaused,
  kResumed,
  kStopped,
  kError,
  kWarning,
  kInfo,
};
const char* event_kind_name(EventKind k);

struct Event {
  EventKind kind = EventKind::kInfo;
  std::string message;
  std::optional<int64_t> step;
  nlohmann::json data;  // an object, or null for none
};

// ---- encoding ---------------------------------------------------------------------

// Seconds since the Unix epoch, millisecond resolution.
double now_ts();
// A float as JSON: null when NaN or infinite.
nlohmann::json real(double x);
// {"v":1,"type":type,"ts":now}.
nlohmann::json envelope(std::string_view type);

nlohmann::json encode_run_info(int rank, const std::string& run_id, int world_size,
                               const nlohmann::json& info);
nlohmann::json encode_step(int rank, const StepMetrics& m);
nlohmann::json encode_validation(int rank, const ValidationMetrics& v);
nlohmann::json encode_event(int rank, const Event& e);

// Parses one message; throws ProtocolError("bad_json") when `text` is not a JSON
// object, ProtocolError("bad_message") when it breaks the schema (the message
// names the field). Returns the parsed object.
nlohmann::json parse_message(std::string_view text);

// Serialises a message the way the monitor sends it (compact, NaN → null).
std::string dump(const nlohmann::json& msg);

}  // namespace shardlm::monitor
