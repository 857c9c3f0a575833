// Global gradient-norm clipping across shards (see grad_clip.h).
#include "parallel/grad_clip.h"

#include <cmath>

#include "parallel/process_group.h"

namespace shardlm::parallel {

namespace {
double clip_with_norm(const std::vector<torch::Tensor>& grads, double max_norm, double norm) {
  if (!std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& g : grads)
      if (g.defined()) g.mul_(coef);
  }
  return norm;
}
}  // namespace

double global_grad_norm(const std::vector<torch::Tensor>& shards, ProcessGroup* group) {
  double sumsq = 0.0;
  for (const torch::Tensor& g : shards) {
    if (!g.defined() || g.numel() == 0) continue;
    const double n = g.norm().item<double>();  // fp32 pairwise reduction, squared in fp64
    sumsq += n * n;
  }
  if (group != nullptr && group->size() > 1) {
    auto t = torch::tensor({sumsq}, torch::kDouble);
    group->all_reduce(t, ReduceOp::kSum);
    sumsq = t.item<double>();
  }
  return std::sqrt(sumsq);
}

double clip_grad_norm(const std::vector<torch::Tensor>& shards, double max_norm,
                      ProcessGroup& group) {
  return clip_with_norm(shards, max_norm, global_grad_norm(shards, &group));
}

double clip_grad_norm(const std::vector<torch::Tensor>& grads, double max_norm) {
  return clip_with_norm(grads, max_norm, global_grad_norm(grads, nullptr));
}

}  // namespace shardlm::parallel
