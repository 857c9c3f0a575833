// Activation (gradient) checkpointing for LibTorch's C++ API, which has no
// torch.utils.checkpoint. checkpoint(fn, x) runs fn(x) without keeping its
// intermediate activations; backward recomputes fn on the saved input with
// the same RNG state (so dropout masks match) and the same autocast state,
// then backpropagates through the recomputation. Gradients equal those of
// fn(x) run directly.
#pragma once

#include <torch/torch.h>

#include "model/gpt.h"

namespace shardlm::model {

// Returns fn(x); under torch::NoGradGuard or when x needs no gradient and fn
// has no parameters that do, it simply calls fn(x).
torch::Tensor checkpoint(const BlockFn& fn, const torch::Tensor& x);

}  // namespace shardlm::model
