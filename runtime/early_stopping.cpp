// Early stopping (see early_stopping.h).
#include "runtime/early_stopping.h"

#include <cmath>

#include "core/error.h"
#include "core/json_int.h"

namespace shardlm::runtime {

EarlyStoppingConfig EarlyStoppingConfig::from(const core::ConfigSection& s) {
  EarlyStoppingConfig c;
  c.enabled = s.get("enabled", c.enabled);
  c.patience = s.get("patience", c.patience);
  c.min_delta = s.get("min_delta", c.min_delta);
  c.metric = s.get("metric", c.metric);
  return c;
}

void EarlyStoppingConfig::validate() const {
  core::config_require(patience >= 1, "patience", std::to_string(patience), "an integer >= 1");
  core::config_require(min_delta >= 0, "min_delta", std::to_string(min_delta), "a number >= 0");
  core::config_require(metric == "val_loss" || metric == "val_ppl" || metric == "val_acc", "metric",
                       metric, "one of val_loss, val_ppl, val_acc");
}

bool EarlyStopping::update(int64_t step, double value) {
  bool better;
  if (std::isnan(best_))
    better = true;
  else if (higher_is_better())
    better = value > best_ + cfg_.min_delta;
  else
    better = value < best_ - cfg_.min_delta;
  if (better) {
    best_ = value;
    best_step_ = step;
    bad_ = 0;
  } else {
    ++bad_;
  }
  return better;
}

nlohmann::json EarlyStopping::state() const {
  return {{"best", std::isnan(best_) ? nlohmann::json(nullptr) : nlohmann::json(best_)},
          {"best_step", best_step_},
          {"bad", bad_}};
}

void EarlyStopping::load_state(const nlohmann::json& j) {
  best_ = j.at("best").is_null() ? std::numeric_limits<double>::quiet_NaN()
                                 : j.at("best").get<double>();
  best_step_ =
      core::json_int<int64_t, core::CheckpointError>(j.at("best_step"), key() + ".best_step");
  bad_ = core::json_int<int64_t, core::CheckpointError>(j.at("bad"), key() + ".bad");
}

}  // namespace shardlm::runtime
