// AdamW in LibTorch ops (see adamw.h) and the dense fp32 moment state.
#include "parallel/adamw.h"

#include <torch/version.h>

#include <cmath>

#include "core/error.h"

namespace shardlm::parallel {

// ---- dense state ------------------------------------------------------------------

void DenseAdam::init_state(int64_t n, const torch::Device& device) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  m_ = torch::zeros({n}, opts);
  v_ = torch::zeros({n}, opts);
}

StateDict DenseAdam::state_dict() const {
  SHARDLM_CHECK(m_.defined(), core::CheckpointError, "{}: no state before the first step", name());
  return {{"step", step_tensor()}, {"exp_avg", m_}, {"exp_avg_sq", v_}};
}

void DenseAdam::load_state_dict(const StateDict& state) {
  const torch::Tensor& m = need(state, "exp_avg");
  const torch::Tensor& v = need(state, "exp_avg_sq");
  SHARDLM_CHECK(m.dim() == 1 && v.sizes() == m.sizes(), core::CheckpointError,
                "{}: exp_avg {} and exp_avg_sq {} must be flat and of one size", name(),
                c10::str(m.sizes()), c10::str(v.sizes()));
  begin_load(state, m.numel(), m_.defined() ? m_.device() : m.device());
  m_.copy_(m);
  v_.copy_(v);
}

int64_t DenseAdam::state_bytes() const {
  return m_.defined() ? static_cast<int64_t>(m_.nbytes() + v_.nbytes()) : 0;
}

// ---- AdamW --------------------------------------------------------------------------

bool AdamW::fused_available(const torch::Device& device) {
#if SHARDLM_FUSED_ADAMW
  return device.is_cuda();
#else
  (void)device;
  return false;
#endif
}

void AdamW::do_step(torch::Tensor& p, const torch::Tensor& g) {
  if (m_.device() != p.device()) {  // state loaded on another device
    m_ = m_.to(p.device());
    v_ = v_.to(p.device());
  }
  if (config_.fused && fused_available(p.device())) {
    fused_step(p, g);
    return;
  }
  const OptimizerConfig& c = config_;
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(step_));
  if (c.weight_decay != 0) {
    for (const ParamSegment& r : decay_runs())
      if (r.decay) p.narrow(0, r.begin, r.end - r.begin).mul_(1 - c.lr * c.weight_decay);
  }
  m_.mul_(c.beta1).add_(g, 1 - c.beta1);
  v_.mul_(c.beta2).addcmul_(g, g, 1 - c.beta2);
  torch::Tensor denom = (v_.sqrt() / std::sqrt(bc2)).add_(c.eps);
  p.addcdiv_(m_, denom, -c.lr / bc1);
}

// One multi-tensor kernel per decay kind: the runs of the shard (views of p,
// g and the moments) with weight decay, then those without. The kernel reads
// the step count from a device scalar per tensor, so nothing syncs the host.
void AdamW::fused_step(torch::Tensor& p, const torch::Tensor& g) {
#if SHARDLM_FUSED_ADAMW
  const OptimizerConfig& c = config_;
  for (bool decay : {true, false}) {
    std::vector<torch::Tensor> ps, gs, ms, vs, steps;
    for (const ParamSegment& r : decay_runs()) {
      if (r.decay != decay) continue;
      const int64_t n = r.end - r.begin;
      ps.push_back(p.narrow(0, r.begin, n));
      gs.push_back(g.narrow(0, r.begin, n));
      ms.push_back(m_.narrow(0, r.begin, n));
      vs.push_back(v_.narrow(0, r.begin, n));
    }
    if (ps.empty()) continue;
    if (static_cast<int64_t>(fused_steps_.size()) < static_cast<int64_t>(ps.size()) ||
        fused_steps_[0].device() != p.device())
      fused_steps_.assign(ps.size(), torch::Tensor());
    for (size_t i = 0; i < ps.size(); ++i) {
      if (!fused_steps_[i].defined())
        fused_steps_[i] =
            torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(p.device()));
      fused_steps_[i].fill_(static_cast<double>(step_));
      steps.push_back(fused_steps_[i]);
    }
    at::_fused_adamw_(ps, gs, ms, vs, /*max_exp_avg_sqs=*/{}, steps, c.lr, c.beta1, c.beta2,
                      decay ? c.weight_decay : 0.0, c.eps, /*amsgrad=*/false,
                      /*maximize=*/false);
  }
#else
  (void)p;
  (void)g;
  SHARDLM_FAIL(core::NotCompiled, "adamw: the fused kernel needs LibTorch >= 2.1 with CUDA");
#endif
}

}  // namespace shardlm::parallel
