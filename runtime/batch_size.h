// Sizing the micro-batch from memory (train.auto_batch): pure arithmetic on
// byte counts, no device and no trial runs, so it is unit-tested anywhere.
// The trainer measures what is free (parallel::cuda_memory on a GPU,
// train.memory_budget_mb less the model states on a CPU), estimates what one
// sample costs, and asks for the largest micro-batch that fits and the
// accumulation that makes up the global batch.
//
//   double per = activation_bytes_per_sample(cfg, T, {.bytes = 2, .fused_attention = true});
//   int64_t b = max_micro_batch(free_bytes, per);          // 0: not even one sample fits
//   BatchPlan p = plan_batch(b, train.global_batch, world);
#pragma once

#include <cstdint>

#include "model/config.h"

namespace shardlm::runtime {

struct ActivationOptions {
  double bytes = 4;              // bytes per activation element (4 fp32, 2 bf16/fp16 autocast)
  bool fused_attention = false;  // SDPA (flash/memory-efficient): no T x T scores are kept
  bool checkpointing = false;    // activation checkpointing: one block's activations at a time
};

// Bytes of activations kept for backward by one sample (one row of T
// tokens) in a training step of `cfg`. Per layer, Korthikanti et al. 2022
// ("Reducing Activation Recomputation in Large Transformer Models", eq. 2):
// T d (34 + 5 H T / d) bytes at 2 bytes per element, scaled to `bytes`;
// the 5 H T / d term (scores, softmax, dropout mask) is absent with fused
// attention; with checkpointing a layer keeps only its input (T d elements)
// and one layer's full set is alive during its recomputation. Plus the logits
// and their gradient in fp32 (3 T V x 4 bytes).
double activation_bytes_per_sample(const model::ModelConfig& cfg, int64_t T,
                                   const ActivationOptions& opts);

// The largest micro-batch whose activations fit in `free_bytes` after keeping
// `reserve_fraction` of it back (allocator fragmentation, cuBLAS/cuDNN
// workspaces), at most `cap`. 0 when not even one sample fits. Throws
// core::ConfigError for a per-sample size <= 0 or a fraction outside [0, 1).
int64_t max_micro_batch(int64_t free_bytes, double per_sample_bytes, double reserve_fraction = 0.15,
                        int64_t cap = 1 << 20);

struct BatchPlan {
  int64_t micro_batch = 1;   // rows per rank per micro-batch
  int64_t accumulation = 1;  // micro-batches per optimizer step
  int64_t rows() const { return micro_batch * accumulation; }
};

// Micro-batch and accumulation for `global_batch` rows per step over `world`
// ranks when at most `max_micro` rows fit: the fewest micro-batches, then the
// largest micro-batch such that micro x accumulation x world <= global_batch
// (never above it, as close as the factors allow). global_batch <= 0 means
// "one micro-batch of max_micro". max_micro is raised to 1.
BatchPlan plan_batch(int64_t max_micro, int64_t global_batch, int64_t world);

}  // namespace shardlm::runtime
