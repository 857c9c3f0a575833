// Learning-rate schedules: linear warmup, then cosine / linear decay to a
// minimum, or constant. The schedule is a pure function of the step and its
// (resumable) state, so a resumed run sees exactly the same LRs.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/config.h"

namespace shardlm::runtime {

struct ScheduleConfig {
  std::string kind = "cosine";  // cosine | linear | constant
  int64_t warmup_steps = 100;
  double min_lr_ratio = 0.1;  // final LR = lr * min_lr_ratio
  int64_t total_steps = 0;    // length of the schedule; 0 = train.steps
  static ScheduleConfig from(const core::ConfigSection& s);
  void validate() const;
};

class LrSchedule {
 public:
  LrSchedule(ScheduleConfig cfg, double base_lr, int64_t total_steps);
  // LR for optimizer step `step` (0-based). Warmup ramps linearly from
  // base/warmup to base over the first warmup_steps steps.
  double at(int64_t step) const;
  // A live change of the LR (from the dashboard): from now on the schedule's
  // shape is kept and scaled so that at(step) == lr.
  void set_lr_at(int64_t step, double lr);
  double base_lr() const { return base_lr_; }
  int64_t total_steps() const { return total_; }
  void set_total_steps(int64_t total) { total_ = total; }

  // The state holds the live values (a dashboard LR change included) and the
  // configuration they came from. load_state restores them when that
  // configuration equals this schedule's; when the user changed it for the
  // resumed run (another lr, train.steps, warmup, kind...), the new schedule
  // is kept and the returned text names what changed ("" = restored exactly).
  nlohmann::json state() const;
  std::string load_state(const nlohmann::json& j);

 private:
  double shape(int64_t step) const;  // in (0, 1]: the multiplier of base_lr
  ScheduleConfig cfg_;
  nlohmann::json configured() const;
  double base_lr_;
  int64_t total_;
  double configured_lr_;      // base_lr as configured (before live changes)
  int64_t configured_total_;  // total steps as configured
};

}  // namespace shardlm::runtime
