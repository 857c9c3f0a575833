// The scalars of one Adam/AdamW step, shared by the CPU kernels, the CUDA
// kernel (parallel/cuda/adam8bit.cu) and the LibTorch optimizers. Plain C++
// with no includes, so nvcc compiles it without LibTorch.
#pragma once

namespace shardlm::parallel::kernels {

// Scalars in the form torch's AdamW applies them to fp32 tensors (each a
// double rounded once to float):
//   p  = p * decay_factor                      (decoupled weight decay)
//   m  = fma(g, 1 - beta1, m * beta1)
//   v  = fma((1 - beta2) * g, g, v * beta2)
//   p  = p + (-step_size * m) / (sqrt(v) / bias_correction2_sqrt + eps)
struct AdamStep {
  float beta1;
  float one_minus_beta1;
  float beta2;
  float one_minus_beta2;
  float eps;
  float neg_step_size;          // -lr / (1 - beta1^t)
  float bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  float decay_factor;           // 1 - lr * weight_decay
};

}  // namespace shardlm::parallel::kernels
