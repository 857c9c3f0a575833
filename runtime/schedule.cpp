// LR schedules (see schedule.h).
#include "runtime/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/json_int.h"

namespace shardlm::runtime {

ScheduleConfig ScheduleConfig::from(const core::ConfigSection& s) {
  ScheduleConfig c;
  c.kind = s.get("kind", c.kind);
  c.warmup_steps = s.get("warmup_steps", c.warmup_steps);
  c.min_lr_ratio = s.get("min_lr_ratio", c.min_lr_ratio);
  c.total_steps = s.get("total_steps", c.total_steps);
  return c;
}

void ScheduleConfig::validate() const {
  core::config_require(kind == "cosine" || kind == "linear" || kind == "constant", "kind", kind,
                       "one of cosine, linear, constant");
  core::config_require(warmup_steps >= 0, "warmup_steps", std::to_string(warmup_steps),
                       "an integer >= 0");
  core::config_require(total_steps >= 0, "total_steps", std::to_string(total_steps),
                       "an integer >= 0 (0 = train.steps)");
  core::config_require(min_lr_ratio >= 0 && min_lr_ratio <= 1, "min_lr_ratio",
                       std::to_string(min_lr_ratio), "a number in [0, 1]");
}

LrSchedule::LrSchedule(ScheduleConfig cfg, double base_lr, int64_t total_steps)
    : cfg_(std::move(cfg)),
      base_lr_(base_lr),
      total_(total_steps),
      configured_lr_(base_lr),
      configured_total_(total_steps) {}

double LrSchedule::shape(int64_t step) const {
  if (step < cfg_.warmup_steps) return static_cast<double>(step + 1) / cfg_.warmup_steps;
  if (cfg_.kind == "constant") return 1.0;
  int64_t decay = std::max<int64_t>(1, total_ - cfg_.warmup_steps);
  double t = std::clamp(static_cast<double>(step - cfg_.warmup_steps) / decay, 0.0, 1.0);
  double m = cfg_.min_lr_ratio;
  if (cfg_.kind == "linear") return 1.0 - (1.0 - m) * t;
  return m + (1.0 - m) * 0.5 * (1.0 + std::cos(M_PI * t));  // cosine
}

double LrSchedule::at(int64_t step) const {
  return base_lr_ * shape(step);
}

void LrSchedule::set_lr_at(int64_t step, double lr) {
  double s = shape(step);
  base_lr_ = s > 0 ? lr / s : lr;
}

nlohmann::json LrSchedule::configured() const {
  return {{"kind", cfg_.kind},
          {"warmup_steps", cfg_.warmup_steps},
          {"min_lr_ratio", cfg_.min_lr_ratio},
          {"base_lr", configured_lr_},
          {"total_steps", configured_total_}};
}

nlohmann::json LrSchedule::state() const {
  return {{"kind", cfg_.kind},
          {"warmup_steps", cfg_.warmup_steps},
          {"min_lr_ratio", cfg_.min_lr_ratio},
          {"base_lr", base_lr_},
          {"total_steps", total_},
          {"configured", configured()}};
}

std::string LrSchedule::load_state(const nlohmann::json& j) {
  // Checkpoints before "configured" carry the live values only: restore them.
  if (j.contains("configured")) {
    const nlohmann::json& was = j.at("configured");
    const nlohmann::json now = configured();
    std::string changed;
    for (const auto& [key, value] : now.items()) {
      if (was.contains(key) && was.at(key) == value) continue;
      if (!changed.empty()) changed += ", ";
      changed +=
          key + " " + (was.contains(key) ? was.at(key).dump() : "absent") + " -> " + value.dump();
    }
    if (!changed.empty()) return changed;  // the new configuration's schedule stays
  }
  cfg_.kind = j.at("kind").get<std::string>();
  cfg_.warmup_steps =
      core::json_int<int64_t, core::CheckpointError>(j.at("warmup_steps"), "schedule.warmup_steps");
  cfg_.min_lr_ratio = j.at("min_lr_ratio").get<double>();
  base_lr_ = j.at("base_lr").get<double>();
  total_ =
      core::json_int<int64_t, core::CheckpointError>(j.at("total_steps"), "schedule.total_steps");
  return "";
}

}  // namespace shardlm::runtime
