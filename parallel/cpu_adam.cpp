// CpuAdam: the fused kernel of kernels/adam_cpu.h over LibTorch's threads.
#include "parallel/cpu_adam.h"

#include <ATen/Parallel.h>

#include "core/error.h"
#include "parallel/kernels/adam_cpu.h"

namespace shardlm::parallel {

void CpuAdam::init_state(int64_t n, const torch::Device& device) {
  SHARDLM_CHECK(device.is_cpu(), core::ModelError,
                "cpu_adam steps CPU shards (got one on {}); use adamw or adam8bit on the device",
                device.str());
  DenseAdam::init_state(n, device);
}

void CpuAdam::do_step(torch::Tensor& p, const torch::Tensor& g) {
  SHARDLM_CHECK(p.device().is_cpu(), core::ModelError, "cpu_adam: params are on {}, not the CPU",
                p.device().str());
  const OptimizerConfig& c = config_;
  const kernels::AdamStep s =
      kernels::make_adam_step(c.lr, c.beta1, c.beta2, c.eps, c.weight_decay, step_);
  const std::vector<ParamSegment> runs = decay_runs();
  float* pp = p.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* mp = m_.data_ptr<float>();
  float* vp = v_.data_ptr<float>();
  const bool decay_on = c.weight_decay != 0;
  at::parallel_for(0, p.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (const ParamSegment& r : runs) {
      const int64_t b = std::max(begin, r.begin), e = std::min(end, r.end);
      if (b >= e) continue;
      kernels::adam_step(pp + b, gp + b, mp + b, vp + b, e - b, s, decay_on && r.decay);
    }
  });
}

}  // namespace shardlm::parallel
