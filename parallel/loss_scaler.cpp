// Dynamic loss scaling (see loss_scaler.h).
#include "parallel/loss_scaler.h"

#include <algorithm>

#include "core/config.h"
#include "core/error.h"
#include "parallel/process_group.h"

namespace shardlm::parallel {

LossScalerConfig LossScalerConfig::from(const core::ConfigSection& s) {
  LossScalerConfig c;
  c.enabled = s.get("enabled", c.enabled);
  c.init_scale = s.get("init_scale", c.init_scale);
  c.growth_factor = s.get("growth_factor", c.growth_factor);
  c.backoff_factor = s.get("backoff_factor", c.backoff_factor);
  c.growth_interval = s.get("growth_interval", c.growth_interval);
  c.min_scale = s.get("min_scale", c.min_scale);
  c.max_scale = s.get("max_scale", c.max_scale);
  return c;
}

void LossScalerConfig::validate() const {
  using core::config_require;
  config_require(init_scale > 0, "init_scale", std::to_string(init_scale), "a number > 0");
  config_require(growth_factor > 1, "growth_factor", std::to_string(growth_factor), "a number > 1");
  config_require(backoff_factor > 0 && backoff_factor < 1, "backoff_factor",
                 std::to_string(backoff_factor), "a number in (0, 1)");
  config_require(growth_interval >= 1, "growth_interval", std::to_string(growth_interval),
                 "a step count >= 1");
  config_require(min_scale > 0 && min_scale <= max_scale, "min_scale", std::to_string(min_scale),
                 "a number in (0, max_scale]");
}

LossScaler::LossScaler(LossScalerConfig config)
    : config_(config), scale_(config.enabled ? config.init_scale : 1.0) {
  config_.validate();
}

torch::Tensor LossScaler::scale_loss(const torch::Tensor& loss) const {
  return config_.enabled ? loss * scale_ : loss;
}

bool LossScaler::all_finite(const std::vector<torch::Tensor>& tensors, ProcessGroup* group) {
  // One flag on the device, one all-reduce and one host read for the whole
  // step: sum() is inf/NaN when any element is (or when the sum overflows
  // fp32, which the step could not survive either).
  torch::Tensor bad;
  for (const torch::Tensor& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    auto b = torch::isfinite(t.sum(torch::kFloat)).logical_not().to(torch::kInt).reshape({1});
    bad = bad.defined() ? bad.add_(b) : b;
  }
  torch::Device device = group ? group->device() : (bad.defined() ? bad.device() : torch::kCPU);
  bad = bad.defined() ? bad.to(device)
                      : torch::zeros({1}, torch::TensorOptions(device).dtype(torch::kInt));
  if (group != nullptr && group->size() > 1) group->all_reduce(bad, ReduceOp::kMax);
  return bad.item<int>() == 0;
}

bool LossScaler::unscale_(const std::vector<torch::Tensor>& grads, ProcessGroup* group) {
  if (config_.enabled) {
    torch::NoGradGuard no_grad;
    const double inv = 1.0 / scale_;
    for (const torch::Tensor& g : grads)
      if (g.defined()) g.mul_(inv);
  }
  return all_finite(grads, group);
}

bool LossScaler::update(bool found_inf) {
  if (!config_.enabled) return !found_inf;
  if (found_inf) {
    scale_ = std::max(config_.min_scale, scale_ * config_.backoff_factor);
    clean_steps_ = 0;
    ++skipped_;
    return false;
  }
  if (++clean_steps_ >= config_.growth_interval) {
    scale_ = std::min(config_.max_scale, scale_ * config_.growth_factor);
    clean_steps_ = 0;
  }
  return true;
}

StateDict LossScaler::state_dict() const {
  return {{"scale", torch::tensor(scale_, torch::kDouble)},
          {"clean_steps", torch::tensor(clean_steps_, torch::kLong)},
          {"skipped_steps", torch::tensor(skipped_, torch::kLong)}};
}

void LossScaler::load_state_dict(const StateDict& state) {
  for (const char* key : {"scale", "clean_steps", "skipped_steps"})
    SHARDLM_CHECK(state.count(key) && state.at(key).numel() == 1, core::CheckpointError,
                  "loss scaler state has no scalar '{}'", key);
  scale_ = state.at("scale").item<double>();
  clean_steps_ = state.at("clean_steps").item<int64_t>();
  skipped_ = state.at("skipped_steps").item<int64_t>();
  SHARDLM_CHECK(scale_ > 0, core::CheckpointError, "loss scaler state: scale {} is not positive",
                scale_);
}

}  // namespace shardlm::parallel
