// The 8-bit Adam CUDA kernel against its CPU reference, without LibTorch or
// MPI, so that the same check runs inside test_parallel (label gpu) and as the
// standalone program gpu_check_main.cpp built with nvcc alone on a GPU machine.
#pragma once

#include <cstdint>
#include <string>

namespace shardlm::parallel::gpu_check {

struct GpuCheckResult {
  bool ok = false;
  std::string message;  // what differed, or a summary
  double max_param_rel_diff = 0;
  int64_t code_mismatches = 0;  // q1/q2 indices that differ
  double kernel_ms = 0;         // mean time of one step on the device
};

// Runs `steps` 8-bit AdamW steps over n elements with blocks of `block` on the
// CPU reference and on the first CUDA device, and compares parameters, code
// indices and block scales. Requires a device (see shardlm_cuda_device_count).
GpuCheckResult check_adam8bit_cuda(int64_t n, int block, int steps);

}  // namespace shardlm::parallel::gpu_check
