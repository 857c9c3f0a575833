// The 8-bit Adam CUDA kernel against its CPU reference (see adam8bit_gpu_check.h).
#include "tests/parallel/adam8bit_gpu_check.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "parallel/cuda/adam8bit.h"
#include "parallel/kernels/adam_cpu.h"
#include "parallel/kernels/quant8.h"

namespace shardlm::parallel::gpu_check {

namespace {
#define GPU_CHECK(expr)                                                 \
  do {                                                                  \
    cudaError_t e_ = (expr);                                            \
    if (e_ != cudaSuccess) {                                            \
      res.message = std::string(#expr) + ": " + cudaGetErrorString(e_); \
      return res;                                                       \
    }                                                                   \
  } while (0)

template <class T>
T* device_copy(const std::vector<T>& h, cudaError_t* err) {
  T* d = nullptr;
  *err = cudaMalloc(&d, h.size() * sizeof(T));
  if (*err == cudaSuccess)
    *err = cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}
}  // namespace

GpuCheckResult check_adam8bit_cuda(int64_t n, int block, int steps) {
  GpuCheckResult res;
  using namespace kernels;
  const CodeMap code1 = dynamic_code_map(true), code2 = dynamic_code_map(false);
  const int64_t nb = num_blocks(n, block);
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> p(n), g(n), a1(nb, 0.f), a2(nb, 0.f);
  for (auto& x : p) x = normal(rng);
  std::vector<uint8_t> q1(n, quantize_nearest(code1.data(), 0.f)),
      q2(n, quantize_nearest(code2.data(), 0.f));
  std::vector<float> c1(code1.begin(), code1.end()), c2(code2.begin(), code2.end());

  cudaError_t err = cudaSuccess;
  float* dp = device_copy(p, &err);
  GPU_CHECK(err);
  float* dg = device_copy(g, &err);
  GPU_CHECK(err);
  uint8_t* dq1 = device_copy(q1, &err);
  GPU_CHECK(err);
  uint8_t* dq2 = device_copy(q2, &err);
  GPU_CHECK(err);
  float* da1 = device_copy(a1, &err);
  GPU_CHECK(err);
  float* da2 = device_copy(a2, &err);
  GPU_CHECK(err);
  float* dc1 = device_copy(c1, &err);
  GPU_CHECK(err);
  float* dc2 = device_copy(c2, &err);
  GPU_CHECK(err);
  cudaEvent_t t0, t1;
  GPU_CHECK(cudaEventCreate(&t0));
  GPU_CHECK(cudaEventCreate(&t1));
  float total_ms = 0;

  for (int s = 1; s <= steps; ++s) {
    // Gradients of mixed scales, some exactly zero.
    for (int64_t i = 0; i < n; ++i)
      g[i] = (i % 97 == 0) ? 0.f : normal(rng) * std::exp(static_cast<float>(i % 7) - 5.f);
    GPU_CHECK(cudaMemcpy(dg, g.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    const AdamStep st = make_adam_step(1e-3, 0.9, 0.95, 1e-8, s % 2 ? 0.1 : 0.0, s);
    adam8bit_step_blocks(p.data(), g.data(), q1.data(), q2.data(), a1.data(), a2.data(),
                         code1.data(), code2.data(), n, block, 0, nb, st, true);
    GPU_CHECK(cudaEventRecord(t0));
    GPU_CHECK(static_cast<cudaError_t>(shardlm_adam8bit_step_cuda(dp, dg, dq1, dq2, da1, da2, dc1,
                                                                  dc2, n, block, &st, 1, nullptr)));
    GPU_CHECK(cudaEventRecord(t1));
    GPU_CHECK(cudaEventSynchronize(t1));
    float ms = 0;
    GPU_CHECK(cudaEventElapsedTime(&ms, t0, t1));
    total_ms += ms;
  }
  std::vector<float> gp(n), ga1(nb), ga2(nb);
  std::vector<uint8_t> gq1(n), gq2(n);
  GPU_CHECK(cudaMemcpy(gp.data(), dp, n * sizeof(float), cudaMemcpyDeviceToHost));
  GPU_CHECK(cudaMemcpy(gq1.data(), dq1, n, cudaMemcpyDeviceToHost));
  GPU_CHECK(cudaMemcpy(gq2.data(), dq2, n, cudaMemcpyDeviceToHost));
  GPU_CHECK(cudaMemcpy(ga1.data(), da1, nb * sizeof(float), cudaMemcpyDeviceToHost));
  GPU_CHECK(cudaMemcpy(ga2.data(), da2, nb * sizeof(float), cudaMemcpyDeviceToHost));
  for (void* d : {static_cast<void*>(dp), static_cast<void*>(dg), static_cast<void*>(dq1),
                  static_cast<void*>(dq2), static_cast<void*>(da1), static_cast<void*>(da2),
                  static_cast<void*>(dc1), static_cast<void*>(dc2)})
    cudaFree(d);

  for (int64_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(gp[i]) - p[i]) /
                     std::max(1e-3, std::fabs(static_cast<double>(p[i])));
    res.max_param_rel_diff = std::max(res.max_param_rel_diff, d);
    res.code_mismatches += (gq1[i] != q1[i]) + (gq2[i] != q2[i]);
  }
  double absmax_diff = 0;
  for (int64_t b = 0; b < nb; ++b) {
    absmax_diff = std::max(absmax_diff, std::fabs(static_cast<double>(ga1[b]) - a1[b]) /
                                            std::max(1e-30, static_cast<double>(a1[b])));
    absmax_diff = std::max(absmax_diff, std::fabs(static_cast<double>(ga2[b]) - a2[b]) /
                                            std::max(1e-30, static_cast<double>(a2[b])));
  }
  res.kernel_ms = total_ms / steps;
  res.ok =
      res.max_param_rel_diff <= 1e-6 && absmax_diff <= 1e-6 && res.code_mismatches <= n / 10000;
  res.message = "n=" + std::to_string(n) + " block=" + std::to_string(block) +
                " steps=" + std::to_string(steps) +
                " max_param_rel_diff=" + std::to_string(res.max_param_rel_diff) +
                " absmax_rel_diff=" + std::to_string(absmax_diff) +
                " code_mismatches=" + std::to_string(res.code_mismatches) +
                " kernel_ms=" + std::to_string(res.kernel_ms);
  return res;
}

#undef GPU_CHECK

}  // namespace shardlm::parallel::gpu_check
