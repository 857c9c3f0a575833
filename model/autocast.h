// Mixed-precision autocast as a scope guard, over the API differences between
// LibTorch 1.13 (set_cpu_enabled / set_enabled) and 2.x (per device type).
// Autocast is applied from outside the model (torchtitan's habit): the trainer
// opens a guard around forward; activation checkpointing re-opens the same
// state for its recomputation.
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

class AutocastGuard {
 public:
  // dtype kFloat (or enabled = false) leaves autocast off.
  AutocastGuard(bool cuda_device, c10::ScalarType dtype);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  AutocastState saved_;
};

}  // namespace shardlm::model
