// AdamW in LibTorch ops (see adamw.h) and the dense fp32 moment state.
#include "parallel/adamw.h"

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

void AdamW::do_step(torch::Tensor& p, const torch::Tensor& g) {
  if (m_.device() != p.device()) {  // state loaded on another device
    m_ = m_.to(p.device());
    v_ = v_.to(p.device());
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

}  // namespace shardlm::parallel
