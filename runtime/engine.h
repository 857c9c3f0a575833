// Engine: how the trainer's model meets the ranks. It owns the flat fp32
// parameters and gradients, the optimizer on this rank's shard, the gradient
// reduction and the global-norm clipping, behind four calls the trainer makes
// every step:
//   zero_grad()  ->  forward/backward (with block_runner())  ->  reduce()  ->
//   clip()  ->  step(lr)
// The model's parameters are views into the flat buffer, so the optimizer
// updates them in place. The trainable set (layer-wise training) can change:
// set_trainable() rebuilds the buffers and keeps the optimizer state of
// parameters that stay trainable.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "model/gpt.h"
#include "parallel/flat_params.h"
#include "parallel/optimizer.h"
#include "parallel/process_group.h"

namespace shardlm::runtime {

class Engine {
 public:
  // `group` may be null for a world of one. Rank 0's initial parameters are
  // broadcast, so every rank starts from the same model.
  Engine(model::GPT model, parallel::OptimizerConfig opt, parallel::ProcessGroup* group,
         torch::Device device);

  // Which parameters train (by name); the rest are frozen (no gradient, not in
  // the optimizer). Rebuilds the flat buffers when the set changes.
  void set_trainable(const std::function<bool(const std::string&)>& trainable);
  const std::vector<std::string>& trainable_names() const { return names_; }

  model::BlockRunner block_runner(bool activation_checkpointing) const;
  void zero_grad();
  // Averages the gradients over the ranks (after the last micro-batch).
  void reduce();
  // The flat gradients (for the loss scaler's unscale and finiteness check).
  std::vector<torch::Tensor> grads() const { return {grad_}; }
  // Clips by the global norm; returns the norm before clipping (<= 0 max: no clip).
  double clip(double max_norm);
  void step(double lr);
  void set_weight_decay(double wd) { optimizer_->set_weight_decay(wd); }

  parallel::Optimizer& optimizer() { return *optimizer_; }
  int64_t num_trainable() const { return flat_ ? flat_->numel() : 0; }
  // Bytes of parameters + gradients + optimizer state held by this rank.
  int64_t model_state_bytes() const;
  double reduce_seconds() const { return reduce_s_; }

  // Named dense optimizer state of every trainable parameter (fp32, in the
  // parameter's shape): exp_avg/NAME, exp_avg_sq/NAME, and step.
  std::map<std::string, torch::Tensor> optimizer_state() const;
  void load_optimizer_state(const std::map<std::string, torch::Tensor>& state);

 private:
  void rebuild();
  model::GPT model_;
  parallel::OptimizerConfig opt_cfg_;
  parallel::ProcessGroup* group_;
  torch::Device device_;
  std::vector<std::string> names_;       // trainable, in named_parameters() order
  std::vector<torch::Tensor> params_;    // the module's parameter tensors
  std::unique_ptr<parallel::FlatParams> flat_;
  torch::Tensor grad_;                   // (padded,) fp32
  std::unique_ptr<parallel::Optimizer> optimizer_;
  double reduce_s_ = 0;
};

}  // namespace shardlm::runtime
