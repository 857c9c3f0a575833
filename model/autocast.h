// The whole autocast state (CPU and CUDA) captured and re-applied, over the API
// differences between LibTorch 1.13 and 2.x. Activation checkpointing uses it to
// recompute a block under the autocast state of its forward. (For a scope, use
// model::AutocastGuard in gpt.h.)
#pragma once

#include <c10/core/ScalarType.h>

namespace shardlm::model {

struct AutocastState {
  bool cpu = false;
  c10::ScalarType cpu_dtype = c10::kBFloat16;
  bool cuda = false;
  c10::ScalarType cuda_dtype = c10::kHalf;
  static AutocastState current();
  void apply() const;  // also clears autocast's weight cache when turning off
};

}  // namespace shardlm::model
