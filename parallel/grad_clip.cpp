// Global gradient-norm clipping across shards (see grad_clip.h).
#include "parallel/grad_clip.h"

#include <torch/torch.h>

#include "parallel/process_group.h"

namespace shardlm::parallel {

torch::Tensor global_grad_norm_tensor(const std::vector<torch::Tensor>& shards,
                                      ProcessGroup* group) {
  torch::Device device = group ? group->device() : torch::Device(torch::kCPU);
  if (!group)
    for (const torch::Tensor& g : shards)
      if (g.defined()) {
        device = g.device();
        break;
      }
  auto sumsq = torch::zeros({}, torch::TensorOptions(device).dtype(torch::kDouble));
  for (const torch::Tensor& g : shards) {
    if (!g.defined() || g.numel() == 0) continue;
    auto n = g.norm().to(device, torch::kDouble);  // fp32 pairwise reduction, squared in fp64
    sumsq.add_(n * n);
  }
  if (group != nullptr && group->size() > 1) {
    auto t = sumsq.reshape({1});
    group->all_reduce(t, ReduceOp::kSum);
  }
  return sumsq.sqrt();
}

double global_grad_norm(const std::vector<torch::Tensor>& shards, ProcessGroup* group) {
  return global_grad_norm_tensor(shards, group).item<double>();
}

torch::Tensor clip_grad_norm_tensor(const std::vector<torch::Tensor>& shards, double max_norm,
                                    ProcessGroup* group) {
  torch::Tensor norm = global_grad_norm_tensor(shards, group);
  // coef = max_norm / (norm + 1e-6), applied only below 1 and for a finite
  // norm: computed on the device, multiplied by 1 otherwise (no host read).
  auto coef = (max_norm / (norm + 1e-6));
  coef = torch::where(torch::isfinite(norm) & (coef < 1.0), coef, torch::ones_like(coef));
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& g : shards)
    if (g.defined() && g.numel() > 0) g.mul_(coef.to(g.device()));
  return norm;
}

double clip_grad_norm(const std::vector<torch::Tensor>& shards, double max_norm,
                      ProcessGroup& group) {
  return clip_grad_norm_tensor(shards, max_norm, &group).item<double>();
}

double clip_grad_norm(const std::vector<torch::Tensor>& grads, double max_norm) {
  return clip_grad_norm_tensor(grads, max_norm, nullptr).item<double>();
}

}  // namespace shardlm::parallel
