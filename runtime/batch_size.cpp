// Micro-batch sizing from memory (see batch_size.h).
#include "runtime/batch_size.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace shardlm::runtime {

double activation_bytes_per_sample(const model::ModelConfig& cfg, int64_t T,
                                   const ActivationOptions& opts) {
  const double d = static_cast<double>(cfg.d_model), H = static_cast<double>(cfg.n_head);
  const double L = static_cast<double>(cfg.n_layer), t = static_cast<double>(T);
  const double scale = opts.bytes / 2.0;  // eq. 2 counts 2-byte elements
  const double per_token = 34.0 + (opts.fused_attention ? 0.0 : 5.0 * H * t / d);
  const double layer = t * d * per_token * scale;
  const double blocks = opts.checkpointing ? L * t * d * opts.bytes + layer : L * layer;
  const double logits = 3.0 * t * static_cast<double>(cfg.vocab_size) * 4.0;
  return blocks + logits;
}

int64_t max_micro_batch(int64_t free_bytes, double per_sample_bytes, double reserve_fraction,
                        int64_t cap) {
  if (!(per_sample_bytes > 0))
    throw core::ConfigError("auto_batch", "per-sample bytes", std::to_string(per_sample_bytes),
                            "a positive estimate");
  if (!(reserve_fraction >= 0 && reserve_fraction < 1))
    throw core::ConfigError("auto_batch", "reserve fraction", std::to_string(reserve_fraction),
                            "a number in [0, 1)");
  if (free_bytes <= 0) return 0;
  const double usable = static_cast<double>(free_bytes) * (1.0 - reserve_fraction);
  const double n = std::floor(usable / per_sample_bytes);
  return static_cast<int64_t>(std::min(n, static_cast<double>(std::max<int64_t>(cap, 1))));
}

BatchPlan plan_batch(int64_t max_micro, int64_t global_batch, int64_t world) {
  BatchPlan p;
  max_micro = std::max<int64_t>(max_micro, 1);
  world = std::max<int64_t>(world, 1);
  if (global_batch <= 0) {
    p.micro_batch = max_micro;
    return p;
  }
  const int64_t per_rank = std::max<int64_t>(1, global_batch / world);
  p.accumulation = (per_rank + max_micro - 1) / max_micro;  // the fewest micro-batches
  p.micro_batch = std::max<int64_t>(1, per_rank / p.accumulation);
  return p;
}

}  // namespace shardlm::runtime
