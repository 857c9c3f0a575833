// Block-wise 8-bit quantisation with a dynamic (non-linear) code map, and the
// 8-bit AdamW step built on it: the method of bitsandbytes' 8-bit optimizers
// (Dettmers et al., "8-bit Optimizers via Block-wise Quantization", 2022).
//
// A code map is 256 sorted floats in [-1, 1] (signed, for the first moment) or
// [0, 1] (unsigned, for the second). Like a float with a variable split between
// exponent and fraction: decade k = 0..6 covers magnitudes [0.1, 1] x 10^(k-6)
// with 2^k (signed) or 2^(k+1) (unsigned) evenly spaced midpoints, plus 0 and 1.
// Small magnitudes get as much relative precision as large ones, which linear
// 8-bit codes cannot give to Adam's second moment.
//
// A block of B values (B = 256 or 2048) stores one fp32 absmax and B code
// indices; x ~ code[q] * absmax. The CPU functions here are the reference for
// the CUDA kernel (parallel/cuda/adam8bit.cu): same operations, same order.
// Torch-free.
#pragma once

#include <array>
#include <cstdint>

#include "parallel/kernels/adam_params.h"

namespace shardlm::parallel::kernels {

using CodeMap = std::array<float, 256>;

// The dynamic map, sorted ascending.
CodeMap dynamic_code_map(bool is_signed);
// Index of the code value nearest to x (ties to the lower; NaN -> 1); code
// sorted ascending. The reference search (binary, 8 steps).
uint8_t quantize_nearest(const float* code, float x);

// The same index as quantize_nearest in a few steps: a table over the top 14
// bits of x's order-preserving bit pattern gives the largest code below the
// bucket's smallest value, and a short scan finishes (a bucket is 1/32 of an
// octave wide, so it holds at most a few codes).
class CodeIndex {
 public:
  explicit CodeIndex(const CodeMap& code);
  uint8_t nearest(float x) const;
  const CodeMap& code() const { return code_; }

 private:
  static constexpr int kShift = 18;  // 32 - 14 bits
  CodeMap code_;
  std::array<uint8_t, (1u << (32 - kShift))> first_;
};

// x (n,) -> q (n,) indices and absmax (ceil(n / block),).
void quantize_blockwise(const float* code, const float* x, int64_t n, int64_t block, uint8_t* q,
                        float* absmax);
void dequantize_blockwise(const float* code, const uint8_t* q, const float* absmax, int64_t n,
                          int64_t block, float* x);

// One AdamW step for blocks [first_block, last_block) of a run of n elements
// whose moments are stored 8-bit: q1/absmax1 with the signed map code1 (first
// moment), q2/absmax2 with the unsigned map code2 (second moment). Each block
// is dequantised, updated in fp32 exactly as adam_step() does, and quantised
// again with its new absmax. Blocks are independent: threads may split them.
void adam8bit_step_blocks(float* p, const float* g, uint8_t* q1, uint8_t* q2, float* absmax1,
                          float* absmax2, const float* code1, const float* code2, int64_t n,
                          int64_t block, int64_t first_block, int64_t last_block, const AdamStep& s,
                          bool decay);

inline int64_t num_blocks(int64_t n, int64_t block) {
  return (n + block - 1) / block;
}

}  // namespace shardlm::parallel::kernels
