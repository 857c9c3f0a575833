// C-style launcher of the 8-bit AdamW CUDA kernel (adam8bit.cu). Free of
// LibTorch and of CUDA headers, so that any target can declare it; the kernel
// itself is compiled by nvcc into the separate target shardlm_cuda_kernels.
#pragma once

#include <cstdint>

#include "parallel/kernels/adam_params.h"

extern "C" {

// One 8-bit AdamW step over a run of n elements (see kernels/quant8.h for the
// layout): p, g (n,) fp32; q1, q2 (n,) code indices; absmax1, absmax2
// (ceil(n / block),); code1 (signed) and code2 (unsigned): 256 floats each.
// All pointers are device pointers; `step` is a host pointer. block: 256, 512,
// 1024, 2048 or 4096. stream: a cudaStream_t, or nullptr for the default
// stream. Returns a cudaError_t value (0 = cudaSuccess); the launch is
// asynchronous.
int shardlm_adam8bit_step_cuda(float* p, const float* g, uint8_t* q1, uint8_t* q2, float* absmax1,
                               float* absmax2, const float* code1, const float* code2, int64_t n,
                               int block, const shardlm::parallel::kernels::AdamStep* step,
                               int decay, void* stream);

// The kernel's code search, run on the host (needs no device): tests compare
// it with kernels::quantize_nearest.
int shardlm_cuda_nearest_code(const float* code, float x);

// Number of CUDA devices, or 0 when there is no usable device or driver.
int shardlm_cuda_device_count(void);
}
