// Gradient-norm clipping over gradients sharded across ranks: the global L2
// norm is sqrt of the all-reduced sum of the squares of every rank's shards,
// so each rank clips with the same factor as a single process holding all of
// them would. Shards of different ranks must be disjoint (ZeRO-2/3 shards);
// replicated gradients (DDP after all-reduce) are clipped without a group.
#pragma once

#include <vector>

#include <torch/types.h>

namespace shardlm::parallel {

class ProcessGroup;

// The global L2 norm of `shards` (sum of squares accumulated in fp64).
double global_grad_norm(const std::vector<torch::Tensor>& shards, ProcessGroup* group);

// Scales every shard by max_norm / (norm + 1e-6) when the norm exceeds max_norm
// (as torch.nn.utils.clip_grad_norm_ does) and returns the norm before
// clipping. A non-finite norm leaves the gradients untouched (the loss scaler
// then skips the step).
double clip_grad_norm(const std::vector<torch::Tensor>& shards, double max_norm,
                      ProcessGroup& group);
// The same for gradients held whole by this process.
double clip_grad_norm(const std::vector<torch::Tensor>& grads, double max_norm);

}  // namespace shardlm::parallel
