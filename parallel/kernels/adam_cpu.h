// Fused AdamW over raw fp32 arrays on the CPU: one pass reads p, g, m, v and
// writes p, m, v (28 bytes per element), where torch's AdamW makes about ten
// passes and two temporaries. AVX2+FMA when the CPU has it, scalar otherwise;
// both follow torch's rounding order (adam_params.h), so they agree with
// torch::optim::AdamW to within a few ulps. Torch-free; the caller threads it.
#pragma once

#include <cstdint>

#include "parallel/kernels/adam_params.h"

namespace shardlm::parallel::kernels {

// Scalars for step t (from 1) with the given hyper-parameters.
AdamStep make_adam_step(double lr, double beta1, double beta2, double eps, double weight_decay,
                        int64_t t);

// p, g, m, v: n floats each. decay: apply decoupled weight decay to this range.
void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamStep& s,
               bool decay);
// The scalar reference (also the fallback without AVX2).
void adam_step_scalar(float* p, const float* g, float* m, float* v, int64_t n, const AdamStep& s,
                      bool decay);
// Whether adam_step uses the AVX2+FMA path on this CPU.
bool adam_uses_avx2();

}  // namespace shardlm::parallel::kernels
