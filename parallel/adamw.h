// AdamW with LibTorch ops on any device, and the fp32-moment state it shares
// with CpuAdam. The op sequence is torch::optim::AdamW's, so on a shard with
// weight decay everywhere the two are bitwise equal; ranges whose segment says
// decay = false skip the decoupled decay (biases, norms, embeddings).
#pragma once

#include "parallel/optimizer.h"

namespace shardlm::parallel {

// Optimizers keeping both moments as dense fp32 (N,) tensors.
class DenseAdam : public Optimizer {
 public:
  using Optimizer::Optimizer;
  // "step", "exp_avg" (N,), "exp_avg_sq" (N,).
  StateDict state_dict() const override;
  void load_state_dict(const StateDict& state) override;
  StateDict dense_state() const override { return state_dict(); }
  void load_dense_state(const StateDict& state) override { load_state_dict(state); }
  int64_t state_bytes() const override;
  const torch::Tensor& exp_avg() const { return m_; }
  const torch::Tensor& exp_avg_sq() const { return v_; }

 protected:
  void init_state(int64_t n, const torch::Device& device) override;
  torch::Tensor m_, v_;  // (N,) fp32
};

class AdamW final : public DenseAdam {
 public:
  explicit AdamW(OptimizerConfig config) : DenseAdam(std::move(config)) {}
  std::string name() const override { return "adamw"; }

 protected:
  void do_step(torch::Tensor& params, const torch::Tensor& grads) override;
};

}  // namespace shardlm::parallel
