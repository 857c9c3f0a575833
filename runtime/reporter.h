// What a training run tells people: every rank's metrics sink (JSONL, the
// monitor's WebSocket), rank 0's progress line, the hardware probe, events.
// Step metrics are built here and nowhere else (Reporter::step), from the
// StepRecord the trainer's step() returns.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/comm.h"
#include "core/env.h"
#include "core/progress.h"
#include "monitor/config.h"
#include "monitor/hardware.h"
#include "monitor/protocol.h"
#include "parallel/loss_scaler.h"
#include "runtime/engine.h"
#include "runtime/evaluate.h"
#include "runtime/run_settings.h"

namespace shardlm::runtime {

// One optimizer step as the trainer saw it (host values, read once per logged step).
struct StepRecord {
  int64_t step = 0;  // 0-based
  double loss = 0;   // global mean over the step's target tokens
  double lr = 0;
  double grad_norm = 0;      // NaN when the step was skipped
  double global_tokens = 0;  // target tokens of the step, over all ranks
  int64_t local_tokens = 0;  // this rank's
  int64_t tokens_seen = 0;   // over all ranks, after this step
  bool skipped = false;      // the fp16 loss scaler skipped the update
  monitor::StepTimes time;
};

// The live settings a step reports (they change under control).
struct Knobs {
  double clip = 0, weight_decay = 0;
  int64_t micro_batch = 0, accumulation = 1;
};

class Reporter {
 public:
  // Collective over `comm`: agrees on the run id and the monitor's token, then
  // opens this rank's sink (and rank 0's embedded aggregator).
  Reporter(const RunSettings& s, const core::Env& env, core::Comm& comm);
  ~Reporter();

  // The `run_info` message and the log line that describes the run.
  void run_info(const RunSettings& s, int64_t micro_batch, int64_t accumulation);
  // The `step` message (every monitor.every steps) and the progress line.
  void step(const StepRecord& r, const Knobs& k, const parallel::LossScaler& scaler,
            Engine& engine);
  void validation(int64_t step, const EvalResult& r, bool best, bool final);
  void event(monitor::EventKind kind, int64_t step, const std::string& message,
             nlohmann::json data = nullptr);
  // A line rank 0 prints without breaking the progress bar.
  void message(const std::string& text);
  monitor::ControlChannel& control() { return *mon_.control; }
  // Sends what is queued (at most 2 s) and ends the progress line.
  void finish();

  const std::string& run_id() const { return run_id_; }

 private:
  core::Env env_;
  int64_t every_ = 1;
  int64_t total_steps_ = 0;
  std::string run_id_;
  monitor::Monitor mon_;
  std::unique_ptr<monitor::HardwareProbe> probe_;
  std::unique_ptr<core::ProgressBar> progress_;  // rank 0
  // The communication totals at the last step (see report_comm).
  parallel::CommCounters comm_prev_;
  int64_t comm_prev_step_ = -1;
  void report_comm(const StepRecord& r, const Engine& engine, monitor::StepMetrics& m);
};

}  // namespace shardlm::runtime
