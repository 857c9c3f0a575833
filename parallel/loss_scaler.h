// LossScaler: dynamic loss scaling for fp16 training. The loss is multiplied
// by scale() before backward so small gradients survive fp16; the gradients
// are divided by it again (unscale_) before clipping and the optimizer step.
// A step whose gradients hold inf/NaN is skipped and the scale halved; after
// growth_interval clean steps in a row the scale doubles. With a process
// group, every rank sees the same overflow verdict (max all-reduce of the
// flag), so all ranks skip together. The state is part of the checkpoint.
#pragma once

#include <vector>

#include <torch/types.h>

#include "parallel/optimizer.h"

namespace shardlm::core {
class ConfigSection;
}

namespace shardlm::parallel {

class ProcessGroup;

// The [loss_scaler] section of a run configuration (enabled is set by train.precision = "fp16").
struct LossScalerConfig {
  bool enabled = true;  // false: scale() is 1 and nothing is ever skipped
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  double min_scale = 1.0;
  double max_scale = 16777216.0;  // 2^24

  static LossScalerConfig from(const core::ConfigSection& s);
  void validate() const;
};

class LossScaler {
 public:
  explicit LossScaler(LossScalerConfig config = {});

  double scale() const { return scale_; }
  // loss * scale()
  torch::Tensor scale_loss(const torch::Tensor& loss) const;
  // Multiplies every gradient by 1 / scale() in place and returns whether all
  // of them are finite; with `group`, the answer is the same on every rank.
  bool unscale_(const std::vector<torch::Tensor>& grads, ProcessGroup* group = nullptr);
  // Whether every tensor is finite (agreed over `group` when given).
  static bool all_finite(const std::vector<torch::Tensor>& tensors, ProcessGroup* group = nullptr);
  // Ends a step: on overflow halves the scale (not below min_scale) and
  // returns false (skip the optimizer step); otherwise counts a clean step,
  // grows the scale after growth_interval of them, and returns true.
  bool update(bool found_inf);

  int64_t clean_steps() const { return clean_steps_; }  // since the last change of scale
  int64_t skipped_steps() const { return skipped_; }    // over the whole run
  const LossScalerConfig& config() const { return config_; }

  // "scale" (fp64 scalar), "clean_steps", "skipped_steps" (int64 scalars).
  StateDict state_dict() const;
  void load_state_dict(const StateDict& state);

 private:
  LossScalerConfig config_;
  double scale_;
  int64_t clean_steps_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace shardlm::parallel
