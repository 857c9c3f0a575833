// Unit tests of the trainer's parts: LR schedule, early stopping, activation
// checkpointing (gradients identical with and without), autocast guard.
#include <gtest/gtest.h>

#include <cmath>

#include "model/activation_checkpoint.h"
#include "model/autocast.h"
#include "model/gpt.h"
#include "runtime/early_stopping.h"
#include "runtime/schedule.h"
#include "runtime/train_config.h"

using namespace shardlm;

TEST(Schedule, WarmupThenCosineToMinimum) {
  runtime::ScheduleConfig c;
  c.warmup_steps = 10;
  c.min_lr_ratio = 0.1;
  runtime::LrSchedule s(c, 1e-3, 110);
  EXPECT_NEAR(s.at(0), 1e-4, 1e-12);   // (0 + 1) / 10
  EXPECT_NEAR(s.at(9), 1e-3, 1e-12);   // end of warmup
  EXPECT_NEAR(s.at(60), 0.55e-3, 1e-9);  // half-way down the cosine: (1 + 0.1) / 2
  EXPECT_NEAR(s.at(110), 1e-4, 1e-12);
  EXPECT_NEAR(s.at(500), 1e-4, 1e-12);  // stays at the minimum
  for (int i = 10; i < 110; ++i) EXPECT_LE(s.at(i + 1), s.at(i) + 1e-15);
}

TEST(Schedule, LinearConstantAndLiveChange) {
  runtime::ScheduleConfig c;
  c.kind = "linear";
  c.warmup_steps = 0;
  c.min_lr_ratio = 0.0;
  runtime::LrSchedule lin(c, 2.0, 100);
  EXPECT_NEAR(lin.at(50), 1.0, 1e-12);
  c.kind = "constant";
  runtime::LrSchedule cst(c, 2.0, 100);
  EXPECT_DOUBLE_EQ(cst.at(77), 2.0);
  // A live set_lr keeps the shape: at that step the LR is the new value and
  // later steps scale with it.
  lin.set_lr_at(50, 0.5);
  EXPECT_NEAR(lin.at(50), 0.5, 1e-12);
  EXPECT_NEAR(lin.at(75), 0.25, 1e-12);
  // The state round-trips.
  runtime::LrSchedule other(runtime::ScheduleConfig{}, 9.0, 1);
  other.load_state(lin.state());
  EXPECT_DOUBLE_EQ(other.at(75), lin.at(75));
}

TEST(Schedule, ConfigErrorsNameTheKey) {
  auto rc = core::RunConfig::parse("[train.schedule]\nkind = \"step\"\n", "run.toml");
  try {
    rc.get<runtime::TrainConfig>("train");
    FAIL();
  } catch (const core::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.schedule.kind"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("run.toml:2"), std::string::npos) << e.what();
  }
}

TEST(EarlyStopping, PatienceAndMinDelta) {
  runtime::EarlyStoppingConfig c;
  c.enabled = true;
  c.patience = 2;
  c.min_delta = 0.01;
  runtime::EarlyStopping es(c);
  EXPECT_TRUE(es.update(10, 3.0));
  EXPECT_TRUE(es.update(20, 2.5));
  EXPECT_FALSE(es.update(30, 2.495));  // better, but not by more than min_delta
  EXPECT_FALSE(es.should_stop());
  EXPECT_FALSE(es.update(40, 2.6));
  EXPECT_TRUE(es.should_stop());
  EXPECT_EQ(es.best_step(), 20);
  EXPECT_DOUBLE_EQ(es.best(), 2.5);
  runtime::EarlyStopping copy(c);
  copy.load_state(es.state());
  EXPECT_TRUE(copy.should_stop());
  EXPECT_EQ(copy.best_step(), 20);
}

TEST(EarlyStopping, AccuracyIsHigherIsBetter) {
  runtime::EarlyStoppingConfig c;
  c.enabled = true;
  c.metric = "val_acc";
  c.patience = 1;
  runtime::EarlyStopping es(c);
  es.update(1, 0.3);
  EXPECT_TRUE(es.update(2, 0.4));
  EXPECT_FALSE(es.update(3, 0.35));
  EXPECT_TRUE(es.should_stop());
}

TEST(TrainConfig, FreezeScheduleGivesTrainableBlocks) {
  auto rc = core::RunConfig::parse("[train]\nfreeze_schedule = [0, 1, 5, 2, 9, -1]\n", "run.toml");
  auto t = rc.get<runtime::TrainConfig>("train");
  EXPECT_EQ(t.trainable_blocks(0, 4), 1);
  EXPECT_EQ(t.trainable_blocks(4, 4), 1);
  EXPECT_EQ(t.trainable_blocks(5, 4), 2);
  EXPECT_EQ(t.trainable_blocks(100, 4), 4);
  auto bad = core::RunConfig::parse("[train]\nfreeze_schedule = [0, 1, 5]\n", "run.toml");
  EXPECT_THROW(bad.get<runtime::TrainConfig>("train"), core::ConfigError);
}

namespace {
model::ModelConfig tiny(double dropout) {
  model::ModelConfig c;
  c.vocab_size = 97;
  c.context_length = 16;
  c.n_layer = 3;
  c.n_head = 2;
  c.d_model = 32;
  c.embd_dropout = c.attn_dropout = c.resid_dropout = dropout;
  return c;
}

// Gradients of every parameter after one forward/backward, with or without
// checkpointing every block; the RNG is reset so dropout draws the same masks.
std::vector<torch::Tensor> grads_of(model::GPT& m, bool checkpointing, const torch::Tensor& ids) {
  for (auto& p : m->parameters()) p.mutable_grad() = torch::Tensor();
  torch::manual_seed(7);
  model::ForwardOptions opts;
  if (checkpointing)
    opts.block_runner = [](int64_t, const model::BlockFn& f, const torch::Tensor& x) {
      return model::checkpoint(f, x);
    };
  auto logits = m->forward(ids, opts);
  model::loss(logits, ids).backward();
  std::vector<torch::Tensor> out;
  for (auto& p : m->parameters()) out.push_back(p.grad().clone());
  return out;
}
}  // namespace

TEST(ActivationCheckpoint, GradientsIdenticalWithAndWithoutDropout) {
  for (double dropout : {0.0, 0.2}) {
    torch::manual_seed(1);
    model::GPT m(tiny(dropout));
    m->train();
    auto ids = torch::randint(97, {2, 16}, torch::kLong);
    auto a = grads_of(m, false, ids);
    auto b = grads_of(m, true, ids);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i << " dropout " << dropout
                                            << " max diff " << (a[i] - b[i]).abs().max().item<float>();
  }
}

TEST(ActivationCheckpoint, FrozenInputStillTrainsTheBlock) {
  torch::manual_seed(2);
  model::GPT m(tiny(0.0));
  m->wte->weight.set_requires_grad(false);
  if (m->wpe) m->wpe->weight.set_requires_grad(false);
  auto ids = torch::randint(97, {2, 8}, torch::kLong);
  auto b = grads_of(m, true, ids);
  auto named = m->named_parameters();
  EXPECT_TRUE(named["blocks.0.attn.c_attn.weight"].grad().defined());
  EXPECT_GT(named["blocks.0.attn.c_attn.weight"].grad().abs().sum().item<float>(), 0.f);
}

TEST(Autocast, GuardEnablesBf16OnCpuAndRestores) {
  auto before = model::AutocastState::current();
  {
    model::AutocastGuard g(torch::kCPU, c10::kBFloat16);
    auto a = torch::randn({4, 4});
    EXPECT_EQ(torch::mm(a, a).scalar_type(), c10::kBFloat16);
  }
  auto after = model::AutocastState::current();
  EXPECT_EQ(before.cpu, after.cpu);
  auto a = torch::randn({4, 4});
  EXPECT_EQ(torch::mm(a, a).scalar_type(), c10::kFloat);
}
