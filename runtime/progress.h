// The terminal progress line of rank 0: step/total, loss, LR, gradient norm,
// tokens/s, step time and ETA. On a terminal it redraws one line with a bar;
// otherwise (a log file, CI) it prints plain lines.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace shardlm::runtime {

class Progress {
 public:
  Progress(int64_t total_steps, bool tty);
  // `step` is 1-based (steps done). skipped: the fp16 scaler skipped the update.
  void step(int64_t step, double loss, double lr, double grad_norm, double tokens_per_s,
            double step_seconds, bool skipped = false);
  // A line that must not be overwritten (validation, events).
  void message(const std::string& text);
  void finish();
  static std::string format_duration(double seconds);

 private:
  int64_t total_;
  bool tty_;
  bool line_open_ = false;
  double ema_step_s_ = 0;
};

}  // namespace shardlm::runtime
