// LossScaler with injected overflows, and gradient clipping across ranks
// (equal to clipping the whole gradient in one process).
#include <gtest/gtest.h>

#include <limits>

#include "core/config.h"
#include "core/error.h"
#include "parallel/grad_clip.h"
#include "parallel/loss_scaler.h"
#include "parallel/mpi_group.h"

namespace shardlm::parallel {
namespace {

LossScalerConfig small_config() {
  LossScalerConfig c;
  c.init_scale = 1024;
  c.growth_interval = 3;
  return c;
}

TEST(LossScaler, GrowsAfterCleanStepsAndHalvesOnOverflow) {
  LossScaler s(small_config());
  EXPECT_EQ(s.scale(), 1024);
  EXPECT_TRUE(s.update(false));
  EXPECT_TRUE(s.update(false));
  EXPECT_EQ(s.scale(), 1024);
  EXPECT_TRUE(s.update(false));  // third clean step in a row
  EXPECT_EQ(s.scale(), 2048);
  EXPECT_EQ(s.clean_steps(), 0);
  EXPECT_TRUE(s.update(false));
  EXPECT_FALSE(s.update(true));  // overflow: skip and halve, the count restarts
  EXPECT_EQ(s.scale(), 1024);
  EXPECT_EQ(s.skipped_steps(), 1);
  EXPECT_EQ(s.clean_steps(), 0);
  EXPECT_FALSE(s.update(true));
  EXPECT_EQ(s.scale(), 512);
  for (int i = 0; i < 3; ++i) s.update(false);
  EXPECT_EQ(s.scale(), 1024);
}

TEST(LossScaler, RespectsMinAndMaxScale) {
  auto c = small_config();
  c.init_scale = 2;
  c.min_scale = 1;
  c.max_scale = 4;
  c.growth_interval = 1;
  LossScaler s(c);
  s.update(true);
  s.update(true);
  EXPECT_EQ(s.scale(), 1);
  for (int i = 0; i < 5; ++i) s.update(false);
  EXPECT_EQ(s.scale(), 4);
}

TEST(LossScaler, UnscaleFindsInjectedOverflowAndTheStepIsSkipped) {
  LossScaler s(small_config());
  auto loss = torch::tensor(0.5f);
  EXPECT_FLOAT_EQ(s.scale_loss(loss).item<float>(), 512.f);
  // Clean gradients: divided by the scale, step taken.
  std::vector<torch::Tensor> grads = {torch::full({10}, 2048.f), torch::full({3}, 1024.f)};
  EXPECT_TRUE(s.unscale_(grads));
  EXPECT_FLOAT_EQ(grads[0][0].item<float>(), 2.f);
  EXPECT_FLOAT_EQ(grads[1][2].item<float>(), 1.f);
  EXPECT_TRUE(s.update(false));
  // Injected inf and NaN: found, step skipped, scale halved.
  for (float bad : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
    std::vector<torch::Tensor> g = {torch::ones({10}), torch::ones({5})};
    g[1][3] = bad;
    const double before = s.scale();
    const bool finite = s.unscale_(g);
    EXPECT_FALSE(finite);
    EXPECT_FALSE(s.update(!finite));
    EXPECT_EQ(s.scale(), before / 2);
  }
  EXPECT_EQ(s.skipped_steps(), 2);
}

TEST(LossScaler, DisabledIsIdentity) {
  auto c = small_config();
  c.enabled = false;
  LossScaler s(c);
  EXPECT_EQ(s.scale(), 1);
  auto g = std::vector<torch::Tensor>{torch::full({2}, 3.f)};
  EXPECT_TRUE(s.unscale_(g));
  EXPECT_FLOAT_EQ(g[0][0].item<float>(), 3.f);
  EXPECT_TRUE(s.update(false));
}

TEST(LossScaler, StateRoundTripAndConfig) {
  LossScaler a(small_config());
  a.update(false);
  a.update(true);
  a.update(false);
  LossScaler b(small_config());
  b.load_state_dict(a.state_dict());
  EXPECT_EQ(b.scale(), a.scale());
  EXPECT_EQ(b.clean_steps(), 1);
  EXPECT_EQ(b.skipped_steps(), 1);
  EXPECT_THROW(b.load_state_dict({{"scale", torch::tensor(1.0)}}), core::CheckpointError);
  auto rc = core::RunConfig::parse("[loss_scale]\ninit_scale = 256.0\ngrowth_interval = 10\n",
                                   "run.toml");
  auto c = rc.get<LossScalerConfig>("loss_scale");
  EXPECT_EQ(c.init_scale, 256);
  EXPECT_EQ(c.growth_interval, 10);
  auto bad = core::RunConfig::parse("[loss_scale]\nbackoff_factor = 2.0\n", "run.toml");
  EXPECT_THROW(bad.get<LossScalerConfig>("loss_scale"), core::ConfigError);
}

// Every rank agrees on overflow, even when only one rank saw it.
TEST(LossScalerMpi, OverflowOnOneRankSkipsOnAll) {
  MpiGroup g;
  LossScaler s(small_config());
  std::vector<torch::Tensor> grads = {torch::ones({8})};
  if (g.rank() == g.size() - 1) grads[0][5] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(s.unscale_(grads, &g));
  EXPECT_FALSE(s.update(true));
  std::vector<torch::Tensor> clean = {torch::ones({8})};
  EXPECT_TRUE(s.unscale_(clean, &g));
}

// ---- clipping ---------------------------------------------------------------------------

// The whole gradient: three tensors, the same on every rank (fixed seed).
std::vector<torch::Tensor> whole_gradient(double scale) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(99);
  return {torch::randn({1003}, gen) * scale, torch::randn({17}, gen) * scale,
          torch::randn({4000}, gen) * scale};
}

void expect_clip_across_ranks_equals_single(double scale, double max_norm) {
  MpiGroup g;
  auto whole = whole_gradient(scale);
  auto flat = torch::cat(whole);
  // Single process: clip all of it.
  auto reference = whole_gradient(scale);
  const double ref_norm = clip_grad_norm(reference, max_norm);
  auto ref_flat = torch::cat(reference);
  // Sharded: rank r holds its split of the flat gradient, as two pieces.
  auto off = split_offsets(flat.numel(), g.size());
  auto mine = flat.slice(0, off[g.rank()], off[g.rank() + 1]).clone();
  const int64_t half = mine.numel() / 2;
  std::vector<torch::Tensor> shards = {mine.slice(0, 0, half), mine.slice(0, half)};
  const double norm = clip_grad_norm(shards, max_norm, g);
  EXPECT_NEAR(norm, ref_norm, 1e-6 * ref_norm);
  EXPECT_NEAR(norm, flat.norm().item<double>(), 1e-5 * ref_norm);
  auto want = ref_flat.slice(0, off[g.rank()], off[g.rank() + 1]);
  EXPECT_LE((mine - want).abs().max().item<double>(), 1e-6 * want.abs().max().item<double>());
}

TEST(ClipMpi, ClippedAcrossRanksEqualsSingleRank) {
  expect_clip_across_ranks_equals_single(1.0, 1.0);
}
TEST(ClipMpi, BelowMaxNormNothingChanges) {
  expect_clip_across_ranks_equals_single(1e-3, 10.0);
}

TEST(ClipMpi, NonFiniteNormLeavesGradients) {
  MpiGroup g;
  std::vector<torch::Tensor> shards = {torch::ones({4})};
  if (g.rank() == 0) shards[0][1] = std::nanf("");
  const double n = clip_grad_norm(shards, 1.0, g);
  EXPECT_TRUE(std::isnan(n));
  EXPECT_EQ(shards[0][0].item<float>(), 1.0f);
}

}  // namespace
}  // namespace shardlm::parallel
