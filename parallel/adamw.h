// AdamW with LibTorch ops on any device, and the fp32-moment state it shares
// with CpuAdam. The op sequence is torch::optim::AdamW's, so on a shard with
// weight decay everywhere the two are bitwise equal; ranges whose segment says
// decay = false skip the decoupled decay (biases, norms, embeddings).
//
// On a CUDA shard with LibTorch >= 2.1 (and OptimizerConfig::fused, the
// default) the step is LibTorch's fused multi-tensor kernel (at::_fused_adamw_,
// what torch.optim.AdamW(fused=True) runs): one launch per decay kind instead
// of ~10 elementwise passes. Same update; it agrees with the op sequence to
// fp32 rounding (tests/gpu checks it), not bitwise.
#pragma once

#include <torch/version.h>

#include <vector>

#include "parallel/optimizer.h"

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define SHARDLM_FUSED_ADAMW 1
#else
#define SHARDLM_FUSED_ADAMW 0
#endif

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
  // Whether shards on `device` step with the fused kernel in this build.
  static bool fused_available(const torch::Device& device);

 protected:
  void do_step(torch::Tensor& params, const torch::Tensor& grads) override;

 private:
  void fused_step(torch::Tensor& params, const torch::Tensor& grads);
  std::vector<torch::Tensor> fused_steps_;  // device scalars: the step count per run
};

}  // namespace shardlm::parallel
