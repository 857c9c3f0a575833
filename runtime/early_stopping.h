// Early stopping on a validation metric (lower is better) with patience and a
// minimum improvement; also tracks the best value and its step.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "core/config.h"

namespace shardlm::runtime {

struct EarlyStoppingConfig {
  bool enabled = false;
  int64_t patience = 5;             // validations without improvement before stopping
  double min_delta = 0.0;           // an improvement must be larger than this
  std::string metric = "val_loss";  // val_loss | val_ppl | val_acc (higher is better for acc)
  static EarlyStoppingConfig from(const core::ConfigSection& s);
  void validate() const;
};

class EarlyStopping {
 public:
  explicit EarlyStopping(EarlyStoppingConfig cfg = {}) : cfg_(cfg) {}
  // Records a validation result at `step`; returns true when it is a new best.
  bool update(int64_t step, double value);
  bool should_stop() const { return cfg_.enabled && bad_ >= cfg_.patience; }
  double best() const { return best_; }
  int64_t best_step() const { return best_step_; }
  int64_t validations_without_improvement() const { return bad_; }
  const EarlyStoppingConfig& config() const { return cfg_; }
  void reconfigure(const EarlyStoppingConfig& cfg) { cfg_ = cfg; }

  // The state protocol (runtime/state.h).
  std::string key() const { return "early_stopping"; }
  nlohmann::json state() const;
  void load_state(const nlohmann::json& j);

 private:
  bool higher_is_better() const { return cfg_.metric == "val_acc"; }
  EarlyStoppingConfig cfg_;
  double best_ = std::numeric_limits<double>::quiet_NaN();
  int64_t best_step_ = -1;
  int64_t bad_ = 0;
};

}  // namespace shardlm::runtime
