// Gradient-norm clipping over gradients sharded across ranks: the global L2
// norm is sqrt of the all-reduced sum of the squares of every rank's shards,
// so each rank clips with the same factor as a single process holding all of
// them would. Shards of different ranks must be disjoint (ZeRO-2/3 shards);
// replicated gradients (DDP after all-reduce) are clipped without a group.
//
// The *_tensor forms never wait for the device: the norm stays a 0-dim fp64
// tensor on the gradients' device (the training step reads it once, when it
// logs); the double forms read it back.
#pragma once

#include <vector>

#include <torch/types.h>

namespace shardlm::parallel {

class ProcessGroup;

// The global L2 norm of `shards` (each shard's fp32 norm, squared and summed
// in fp64), as a 0-dim fp64 tensor on the shards' device (`group`'s when given).
torch::Tensor global_grad_norm_tensor(const std::vector<torch::Tensor>& shards,
                                      ProcessGroup* group);
double global_grad_norm(const std::vector<torch::Tensor>& shards, ProcessGroup* group);

// Scales every shard by max_norm / (norm + 1e-6) when the norm exceeds max_norm
// (as torch.nn.utils.clip_grad_norm_ does) and returns the norm before
// clipping. A non-finite norm leaves the gradients untouched (the loss scaler
// then skips the step). `group`: null for gradients held whole by this process.
torch::Tensor clip_grad_norm_tensor(const std::vector<torch::Tensor>& shards, double max_norm,
                                    ProcessGroup* group);
double clip_grad_norm(const std::vector<torch::Tensor>& shards, double max_norm,
                      ProcessGroup& group);
// The same for gradients held whole by this process.
double clip_grad_norm(const std::vector<torch::Tensor>& grads, double max_norm);

}  // namespace shardlm::parallel
