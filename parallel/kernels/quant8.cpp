// Dynamic code maps, block-wise quantisation and the 8-bit AdamW step
// (see quant8.h). Compiled with -ffp-contract=off, like the CUDA kernel with
// --fmad=false, so both round the same way.
#include "parallel/kernels/quant8.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

namespace shardlm::parallel::kernels {

CodeMap dynamic_code_map(bool is_signed) {
  // 7 bits below the sign: decades k = 0..6; with the sign bit spent on
  // magnitude (unsigned) each decade has twice the points.
  std::vector<double> v;
  for (int k = 0; k < 7; ++k) {
    const int points = is_signed ? (1 << k) : (1 << (k + 1));
    const double scale = std::pow(10.0, k - 6);
    for (int j = 0; j < points; ++j) {
      // Midpoints of `points` equal intervals of [0.1, 1].
      const double lo = 0.1 + 0.9 * j / points, hi = 0.1 + 0.9 * (j + 1) / points;
      const double mid = 0.5 * (lo + hi) * scale;
      v.push_back(mid);
      if (is_signed) v.push_back(-mid);
    }
  }
  v.push_back(0.0);
  v.push_back(1.0);
  std::sort(v.begin(), v.end());
  CodeMap out{};
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(v[i]);
  return out;
}

uint8_t quantize_nearest(const float* code, float x) {
  // The largest lo with code[lo] <= x, then the nearer of code[lo] and
  // code[lo + 1], ties to the lower; NaN maps to 1. The CUDA kernel computes
  // the same index with a branch-free search (no divergence on the GPU); here
  // the branchy search is faster (measured ~1.7x), as the CPU speculates.
  if (x >= code[255]) return 255;
  if (x <= code[0]) return 0;
  int lo = 0, hi = 255;
  while (hi - lo > 1) {  // invariant: code[lo] <= x < code[hi]
    const int mid = (lo + hi) >> 1;
    if (code[mid] <= x)
      lo = mid;
    else
      hi = mid;
  }
  return static_cast<uint8_t>((x - code[lo] <= code[hi] - x) ? lo : hi);
}

// ---- fast search --------------------------------------------------------------------

namespace {
// Unsigned integers that order like the floats they come from.
uint32_t order_key(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
float from_key(uint32_t k) {
  uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// The index for the maps the optimizer uses (built once), or one built now.
const CodeIndex& index_for(const float* code, std::unique_ptr<CodeIndex>& local) {
  static const CodeMap s = dynamic_code_map(true), u = dynamic_code_map(false);
  static const CodeIndex si(s), ui(u);
  if (std::memcmp(code, s.data(), sizeof s) == 0) return si;
  if (std::memcmp(code, u.data(), sizeof u) == 0) return ui;
  CodeMap c;
  std::memcpy(c.data(), code, sizeof c);
  local = std::make_unique<CodeIndex>(c);
  return *local;
}
}  // namespace

CodeIndex::CodeIndex(const CodeMap& code) : code_(code) {
  for (uint32_t b = 0; b < first_.size(); ++b) {
    const float lo = from_key(b << kShift);  // the bucket's smallest value
    int i = 0;
    while (i < 255 && code_[i + 1] <= lo) ++i;
    first_[b] = static_cast<uint8_t>(i);
  }
}

uint8_t CodeIndex::nearest(float x) const {
  if (x != x) return 1;  // NaN, as quantize_nearest
  if (x >= code_[255]) return 255;
  if (x <= code_[0]) return 0;
  int i = first_[order_key(x) >> kShift];  // code_[i] <= x here, and x < code_[255]
  while (code_[i + 1] <= x) ++i;
  return static_cast<uint8_t>((x - code_[i] <= code_[i + 1] - x) ? i : i + 1);
}

// ---- block-wise ------------------------------------------------------------------------

void quantize_blockwise(const float* code, const float* x, int64_t n, int64_t block, uint8_t* q,
                        float* absmax) {
  for (int64_t b = 0; b < num_blocks(n, block); ++b) {
    const int64_t s = b * block, e = std::min(n, s + block);
    float amax = 0.f;
    for (int64_t i = s; i < e; ++i) amax = std::max(amax, std::fabs(x[i]));
    absmax[b] = amax;
    const float inv = amax > 0.f ? 1.0f / amax : 0.f;
    for (int64_t i = s; i < e; ++i) q[i] = quantize_nearest(code, x[i] * inv);
  }
}

void dequantize_blockwise(const float* code, const uint8_t* q, const float* absmax, int64_t n,
                          int64_t block, float* x) {
  for (int64_t i = 0; i < n; ++i) x[i] = code[q[i]] * absmax[i / block];
}

void adam8bit_step_blocks(float* p, const float* g, uint8_t* q1, uint8_t* q2, float* absmax1,
                          float* absmax2, const float* code1, const float* code2, int64_t n,
                          int64_t block, int64_t first_block, int64_t last_block, const AdamStep& s,
                          bool decay) {
  std::unique_ptr<CodeIndex> own1, own2;
  const CodeIndex& index1 = index_for(code1, own1);
  const CodeIndex& index2 = index_for(code2, own2);
  std::vector<float> m(static_cast<size_t>(block)), v(static_cast<size_t>(block));
  for (int64_t b = first_block; b < last_block; ++b) {
    const int64_t start = b * block, len = std::min(n, start + block) - start;
    const float a1 = absmax1[b], a2 = absmax2[b];
    float new_a1 = 0.f, new_a2 = 0.f;
    for (int64_t j = 0; j < len; ++j) {
      const int64_t i = start + j;
      float pi = decay ? p[i] * s.decay_factor : p[i];
      const float gi = g[i];
      const float mi = std::fma(gi, s.one_minus_beta1, (code1[q1[i]] * a1) * s.beta1);
      const float vi = std::fma(s.one_minus_beta2 * gi, gi, (code2[q2[i]] * a2) * s.beta2);
      const float denom = std::sqrt(vi) / s.bias_correction2_sqrt + s.eps;
      p[i] = pi + s.neg_step_size * mi / denom;
      m[j] = mi;
      v[j] = vi;
      new_a1 = std::max(new_a1, std::fabs(mi));
      new_a2 = std::max(new_a2, vi);
    }
    absmax1[b] = new_a1;
    absmax2[b] = new_a2;
    const float inv1 = new_a1 > 0.f ? 1.0f / new_a1 : 0.f;
    const float inv2 = new_a2 > 0.f ? 1.0f / new_a2 : 0.f;
    for (int64_t j = 0; j < len; ++j) {
      q1[start + j] = index1.nearest(m[j] * inv1);
      q2[start + j] = index2.nearest(v[j] * inv2);
    }
  }
}

}  // namespace shardlm::parallel::kernels
