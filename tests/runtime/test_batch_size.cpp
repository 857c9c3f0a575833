// train.auto_batch's arithmetic (runtime/batch_size.h): the activation
// estimate, the largest micro-batch that fits in free bytes, and the
// micro-batch x accumulation plan for a global batch.
#include <gtest/gtest.h>

#include "core/error.h"
#include "runtime/batch_size.h"

using namespace shardlm;
using runtime::ActivationOptions;

namespace {
model::ModelConfig gpt2_small() {
  model::ModelConfig c;
  c.vocab_size = 50304;
  c.context_length = 1024;
  c.n_layer = 12;
  c.n_head = 12;
  c.d_model = 768;
  return c;
}
}  // namespace

TEST(BatchSize, ActivationEstimateFollowsKorthikanti) {
  auto c = gpt2_small();
  const double T = 1024, d = 768, H = 12, L = 12, V = 50304;
  // bf16, written-out attention: L T d (34 + 5 H T / d) + 3 T V 4
  ActivationOptions bf16{2, false, false};
  EXPECT_DOUBLE_EQ(runtime::activation_bytes_per_sample(c, 1024, bf16),
                   L * T * d * (34 + 5 * H * T / d) + 3 * T * V * 4);
  // fused attention keeps no T x T scores
  ActivationOptions fused{2, true, false};
  EXPECT_DOUBLE_EQ(runtime::activation_bytes_per_sample(c, 1024, fused),
                   L * T * d * 34 + 3 * T * V * 4);
  // fp32 doubles the block part, not the (already fp32) logits
  ActivationOptions fp32{4, true, false};
  EXPECT_DOUBLE_EQ(runtime::activation_bytes_per_sample(c, 1024, fp32),
                   2 * L * T * d * 34 + 3 * T * V * 4);
  // checkpointing: each layer's input plus one layer's full set
  ActivationOptions ckpt{2, true, true};
  EXPECT_DOUBLE_EQ(runtime::activation_bytes_per_sample(c, 1024, ckpt),
                   L * T * d * 2 + T * d * 34 + 3 * T * V * 4);
  EXPECT_LT(runtime::activation_bytes_per_sample(c, 1024, ckpt),
            runtime::activation_bytes_per_sample(c, 1024, fused));
  // Longer rows cost more than proportionally with written-out attention.
  EXPECT_GT(runtime::activation_bytes_per_sample(c, 1024, bf16),
            2 * runtime::activation_bytes_per_sample(c, 512, bf16));
}

TEST(BatchSize, LargestMicroBatchThatFits) {
  // 1000 bytes free, 15% kept back: 850 usable.
  EXPECT_EQ(runtime::max_micro_batch(1000, 100), 8);
  EXPECT_EQ(runtime::max_micro_batch(1000, 85), 10);
  EXPECT_EQ(runtime::max_micro_batch(1000, 100, 0.0), 10);
  EXPECT_EQ(runtime::max_micro_batch(1000, 851), 0);  // not even one
  EXPECT_EQ(runtime::max_micro_batch(0, 10), 0);
  EXPECT_EQ(runtime::max_micro_batch(-5, 10), 0);
  EXPECT_EQ(runtime::max_micro_batch(int64_t(80) << 30, 1.0, 0.1, 64), 64);  // capped
  // An H100's 80 GB for GPT-2 small in bf16 with fused attention: ~80 rows.
  auto c = gpt2_small();
  double per = runtime::activation_bytes_per_sample(c, 1024, ActivationOptions{2, true, false});
  int64_t b = runtime::max_micro_batch(int64_t(79) << 30, per);
  EXPECT_GT(b, 40);
  EXPECT_LT(b, 200);
  EXPECT_THROW(runtime::max_micro_batch(1000, 0.0), core::ConfigError);
  EXPECT_THROW(runtime::max_micro_batch(1000, 10, 1.0), core::ConfigError);
}

TEST(BatchSize, PlanMakesUpTheGlobalBatchWithoutExceedingIt) {
  auto p = runtime::plan_batch(8, 64, 2);  // 32 rows per rank: 4 x 8
  EXPECT_EQ(p.micro_batch, 8);
  EXPECT_EQ(p.accumulation, 4);
  p = runtime::plan_batch(5, 64, 2);  // 32 per rank, 5 fit: 7 micro-batches of 4
  EXPECT_EQ(p.accumulation, 7);
  EXPECT_EQ(p.micro_batch, 4);
  p = runtime::plan_batch(100, 64, 2);  // everything in one
  EXPECT_EQ(p.micro_batch, 32);
  EXPECT_EQ(p.accumulation, 1);
  p = runtime::plan_batch(12, 0, 4);  // no global batch: one micro-batch of what fits
  EXPECT_EQ(p.micro_batch, 12);
  EXPECT_EQ(p.accumulation, 1);
  p = runtime::plan_batch(0, 16, 1);  // nothing fits: still one row at a time
  EXPECT_EQ(p.micro_batch, 1);
  EXPECT_EQ(p.accumulation, 16);
  for (int64_t world : {1, 2, 3, 8})
    for (int64_t fit = 1; fit <= 40; fit += 3)
      for (int64_t global : {1, 7, 64, 100, 512}) {
        auto q = runtime::plan_batch(fit, global, world);
        EXPECT_LE(q.micro_batch, fit);
        EXPECT_GE(q.micro_batch, 1);
        if (global >= world) {
          EXPECT_LE(q.rows() * world, global) << fit << " " << global << " " << world;
          // The fewest micro-batches: one fewer could not hold a rank's rows.
          EXPECT_LT((q.accumulation - 1) * fit, global / world);
        }
      }
}
