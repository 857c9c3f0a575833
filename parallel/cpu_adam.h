// CpuAdam: the fused, vectorised (AVX2+FMA), multi-threaded AdamW for CPU
// shards, as used with CPU offload (ZeRO-Offload). One pass over memory per
// step, split over LibTorch's intra-op threads (at::parallel_for), so
// at::set_num_threads / OMP_NUM_THREADS sets its threads too. Agrees with
// torch::optim::AdamW to within a few ulps per step.
#pragma once

#include "parallel/adamw.h"

namespace shardlm::parallel {

class CpuAdam final : public DenseAdam {
 public:
  explicit CpuAdam(OptimizerConfig config) : DenseAdam(std::move(config)) {}
  std::string name() const override { return "cpu_adam"; }
  // Elements per task handed to one thread.
  static constexpr int64_t kGrain = 1 << 15;

 protected:
  void init_state(int64_t n, const torch::Device& device) override;
  void do_step(torch::Tensor& params, const torch::Tensor& grads) override;
};

}  // namespace shardlm::parallel
