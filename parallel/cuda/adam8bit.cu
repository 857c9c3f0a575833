// 8-bit AdamW step on the GPU: one thread block per quantisation block.
// Mirrors adam8bit_step_blocks() in parallel/kernels/quant8.cpp operation by
// operation; compiled with --fmad=false so that the only fused multiply-adds are
// the explicit ones (as on the CPU), which makes the two bitwise comparable.
// No LibTorch here: raw pointers and the C-style launcher in adam8bit.h.
#include <cuda_runtime.h>

#include "parallel/cuda/adam8bit.h"

namespace {

using shardlm::parallel::kernels::AdamStep;

constexpr int kThreads = 256;

// ---- device helpers -----------------------------------------------------------

// The index kernels::quantize_nearest returns (the largest i with
// code[i] <= x, then the nearer neighbour, ties to the lower, NaN -> 1),
// found without branches so that the threads of a warp do not diverge.
__host__ __device__ __forceinline__ unsigned char nearest(const float* code, float x) {
  int i = 0;
#pragma unroll
  for (int step = 128; step > 0; step >>= 1) i += (code[i + step] <= x) ? step : 0;
  if (i == 255) return 255;
  return static_cast<unsigned char>((x - code[i] <= code[i + 1] - x) ? i : i + 1);
}

__device__ __forceinline__ float block_max(float x, float* scratch) {
  for (int off = 16; off > 0; off >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < kThreads / 32 ? scratch[lane] : 0.f;
  if (warp == 0)
    for (int off = 16; off > 0; off >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
  if (threadIdx.x == 0) scratch[0] = x;
  __syncthreads();
  x = scratch[0];
  __syncthreads();  // scratch is reused by the next reduction
  return x;
}

// ---- kernel ----------------------------------------------------------------------

template <int kPerThread>
__global__ void __launch_bounds__(kThreads)
    adam8bit_kernel(float* __restrict__ p, const float* __restrict__ g, unsigned char* q1,
                    unsigned char* q2, float* absmax1, float* absmax2, const float* code1,
                    const float* code2, long long n, AdamStep s, int decay) {
  __shared__ float c1[256], c2[256];
  __shared__ float scratch[kThreads / 32];
  c1[threadIdx.x] = code1[threadIdx.x];
  c2[threadIdx.x] = code2[threadIdx.x];
  const long long start = static_cast<long long>(blockIdx.x) * kThreads * kPerThread;
  const float a1 = absmax1[blockIdx.x], a2 = absmax2[blockIdx.x];
  __syncthreads();

  float m[kPerThread], v[kPerThread];
  float l1 = 0.f, l2 = 0.f;
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const long long i = start + threadIdx.x + static_cast<long long>(k) * kThreads;
    m[k] = 0.f;
    v[k] = 0.f;
    if (i >= n) continue;
    float pi = decay ? p[i] * s.decay_factor : p[i];
    const float gi = g[i];
    const float mi = fmaf(gi, s.one_minus_beta1, (c1[q1[i]] * a1) * s.beta1);
    const float vi = fmaf(s.one_minus_beta2 * gi, gi, (c2[q2[i]] * a2) * s.beta2);
    const float denom = sqrtf(vi) / s.bias_correction2_sqrt + s.eps;
    p[i] = pi + s.neg_step_size * mi / denom;
    m[k] = mi;
    v[k] = vi;
    l1 = fmaxf(l1, fabsf(mi));
    l2 = fmaxf(l2, vi);
  }
  const float new_a1 = block_max(l1, scratch);
  const float new_a2 = block_max(l2, scratch);
  if (threadIdx.x == 0) {
    absmax1[blockIdx.x] = new_a1;
    absmax2[blockIdx.x] = new_a2;
  }
  const float inv1 = new_a1 > 0.f ? 1.0f / new_a1 : 0.f;
  const float inv2 = new_a2 > 0.f ? 1.0f / new_a2 : 0.f;
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const long long i = start + threadIdx.x + static_cast<long long>(k) * kThreads;
    if (i >= n) continue;
    q1[i] = nearest(c1, m[k] * inv1);
    q2[i] = nearest(c2, v[k] * inv2);
  }
}

template <int kPerThread>
void launch(float* p, const float* g, uint8_t* q1, uint8_t* q2, float* absmax1, float* absmax2,
            const float* code1, const float* code2, int64_t n, const AdamStep& s, int decay,
            cudaStream_t stream) {
  const int64_t block = static_cast<int64_t>(kThreads) * kPerThread;
  const unsigned grid = static_cast<unsigned>((n + block - 1) / block);
  adam8bit_kernel<kPerThread>
      <<<grid, kThreads, 0, stream>>>(p, g, q1, q2, absmax1, absmax2, code1, code2, n, s, decay);
}

}  // namespace

extern "C" int shardlm_adam8bit_step_cuda(float* p, const float* g, uint8_t* q1, uint8_t* q2,
                                          float* absmax1, float* absmax2, const float* code1,
                                          const float* code2, int64_t n, int block,
                                          const AdamStep* step, int decay, void* stream) {
  if (n <= 0) return cudaSuccess;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  switch (block) {
    case 256:
      launch<1>(p, g, q1, q2, absmax1, absmax2, code1, code2, n, *step, decay, st);
      break;
    case 512:
      launch<2>(p, g, q1, q2, absmax1, absmax2, code1, code2, n, *step, decay, st);
      break;
    case 1024:
      launch<4>(p, g, q1, q2, absmax1, absmax2, code1, code2, n, *step, decay, st);
      break;
    case 2048:
      launch<8>(p, g, q1, q2, absmax1, absmax2, code1, code2, n, *step, decay, st);
      break;
    case 4096:
      launch<16>(p, g, q1, q2, absmax1, absmax2, code1, code2, n, *step, decay, st);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

extern "C" int shardlm_cuda_nearest_code(const float* code, float x) {
  return nearest(code, x);
}

extern "C" int shardlm_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}
