// Fused AdamW kernels (see adam_cpu.h). This file is compiled with
// -ffp-contract=off: the only fused multiply-adds are the explicit ones that
// mirror torch's CPU kernels (add with alpha, addcmul), which makes the result
// bitwise equal to torch::optim::AdamW on the same CPU.
#include "parallel/kernels/adam_cpu.h"

#include <immintrin.h>

#include <cmath>

namespace shardlm::parallel::kernels {

AdamStep make_adam_step(double lr, double beta1, double beta2, double eps, double weight_decay,
                        int64_t t) {
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(t));
  AdamStep s;
  s.beta1 = static_cast<float>(beta1);
  s.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  s.beta2 = static_cast<float>(beta2);
  s.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  s.eps = static_cast<float>(eps);
  s.neg_step_size = static_cast<float>(-(lr / bc1));
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(bc2));
  s.decay_factor = static_cast<float>(1.0 - lr * weight_decay);
  return s;
}

// ---- scalar ---------------------------------------------------------------------

void adam_step_scalar(float* p, const float* g, float* m, float* v, int64_t n, const AdamStep& s,
                      bool decay) {
  for (int64_t i = 0; i < n; ++i) {
    float pi = decay ? p[i] * s.decay_factor : p[i];
    const float gi = g[i];
    const float mi = std::fma(gi, s.one_minus_beta1, m[i] * s.beta1);
    const float vi = std::fma(s.one_minus_beta2 * gi, gi, v[i] * s.beta2);
    const float denom = std::sqrt(vi) / s.bias_correction2_sqrt + s.eps;
    pi = pi + s.neg_step_size * mi / denom;
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

// ---- AVX2 + FMA -----------------------------------------------------------------

__attribute__((target("avx2,fma"))) static void adam_step_avx2(float* p, const float* g, float* m,
                                                               float* v, int64_t n,
                                                               const AdamStep& s, bool decay) {
  const __m256 b1 = _mm256_set1_ps(s.beta1), omb1 = _mm256_set1_ps(s.one_minus_beta1);
  const __m256 b2 = _mm256_set1_ps(s.beta2), omb2 = _mm256_set1_ps(s.one_minus_beta2);
  const __m256 eps = _mm256_set1_ps(s.eps), nss = _mm256_set1_ps(s.neg_step_size);
  const __m256 bc2 = _mm256_set1_ps(s.bias_correction2_sqrt);
  const __m256 wd = _mm256_set1_ps(s.decay_factor);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 pi = _mm256_loadu_ps(p + i);
    if (decay) pi = _mm256_mul_ps(pi, wd);
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 mi = _mm256_fmadd_ps(gi, omb1, _mm256_mul_ps(_mm256_loadu_ps(m + i), b1));
    const __m256 vi =
        _mm256_fmadd_ps(_mm256_mul_ps(omb2, gi), gi, _mm256_mul_ps(_mm256_loadu_ps(v + i), b2));
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
    pi = _mm256_add_ps(pi, _mm256_div_ps(_mm256_mul_ps(nss, mi), denom));
    _mm256_storeu_ps(p + i, pi);
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
  }
  adam_step_scalar(p + i, g + i, m + i, v + i, n - i, s, decay);
}

bool adam_uses_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamStep& s,
               bool decay) {
  if (adam_uses_avx2())
    adam_step_avx2(p, g, m, v, n, s, decay);
  else
    adam_step_scalar(p, g, m, v, n, s, decay);
}

}  // namespace shardlm::parallel::kernels
