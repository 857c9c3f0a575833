// AdamW and CpuAdam against torch::optim::AdamW over many steps, decay
// segments, run-time lr changes, state round trips, FlatParams layout.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "core/config.h"
#include "core/error.h"
#include "parallel/adamw.h"
#include "parallel/cpu_adam.h"
#include "parallel/flat_params.h"
#include "parallel/kernels/adam_cpu.h"

namespace shardlm::parallel {
namespace {

OptimizerConfig adam_config(const std::string& name, double wd = 0.1) {
  OptimizerConfig c;
  c.name = name;
  c.lr = 1e-2;
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.eps = 1e-8;
  c.weight_decay = wd;
  return c;
}

// The reference: torch::optim::AdamW on one tensor.
struct TorchAdamW {
  torch::Tensor p;
  std::unique_ptr<torch::optim::AdamW> opt;
  TorchAdamW(const torch::Tensor& init, const OptimizerConfig& c) : p(init.clone()) {
    p.set_requires_grad(true);
    opt = std::make_unique<torch::optim::AdamW>(std::vector<torch::Tensor>{p},
                                                torch::optim::AdamWOptions(c.lr)
                                                    .betas({c.beta1, c.beta2})
                                                    .eps(c.eps)
                                                    .weight_decay(c.weight_decay));
  }
  void step(const torch::Tensor& g) {
    p.mutable_grad() = g.clone();
    opt->step();
  }
  void set_lr(double lr) {
    static_cast<torch::optim::AdamWOptions&>(opt->param_groups()[0].options()).lr(lr);
  }
};

// Gradients of a fixed stream, shaped like real ones (mixed scales, some zeros).
torch::Tensor grad_at(int64_t n, int step) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(1000 + step);
  auto g = torch::randn({n}, gen) * torch::rand({n}, gen).mul(3).exp().mul(0.01);
  g.masked_fill_(torch::rand({n}, gen) < 0.01, 0.0);
  return g;
}

double max_rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs() / b.abs().clamp_min(1e-3)).max().item<double>();
}

TEST(Optimizers, AdamWIsBitwiseTorchAdamW) {
  const int64_t n = 10007;
  auto c = adam_config("adamw");
  auto init = torch::randn({n});
  TorchAdamW ref(init, c);
  AdamW ours(c);
  auto p = init.clone();
  for (int s = 1; s <= 50; ++s) {
    auto g = grad_at(n, s);
    ref.step(g);
    ours.step(p, g);
  }
  EXPECT_TRUE(torch::equal(p, ref.p.detach()));
  EXPECT_EQ(ours.steps(), 50);
}

void expect_cpu_adam_matches_torch(int threads, int steps) {
  const int64_t n = 100003;  // not a multiple of 8: the scalar tail runs too
  auto c = adam_config("cpu_adam");
  auto init = torch::randn({n});
  TorchAdamW ref(init, c);
  const int saved = at::get_num_threads();
  at::set_num_threads(threads);
  CpuAdam ours(c);
  auto p = init.clone();
  double worst = 0;
  int64_t unequal = 0;
  for (int s = 1; s <= steps; ++s) {
    auto g = grad_at(n, s);
    ref.step(g);
    ours.step(p, g);
    worst = std::max(worst, max_rel_diff(p, ref.p.detach()));
    unequal += p.ne(ref.p.detach()).sum().item<int64_t>();
  }
  at::set_num_threads(saved);
  // The kernel follows torch's rounding order (fused where torch fuses), so
  // the two agree bitwise; the tolerance is for CPUs where torch takes other kernels.
  EXPECT_LT(worst, 1e-6) << "threads " << threads << " avx2 " << kernels::adam_uses_avx2();
  if (kernels::adam_uses_avx2())
    EXPECT_EQ(unequal, 0) << "elements not bitwise equal over all steps";
  auto& st = static_cast<torch::optim::AdamWParamState&>(*ref.opt->state().begin()->second);
  EXPECT_LT(max_rel_diff(ours.exp_avg_sq(), st.exp_avg_sq()), 1e-6);
  EXPECT_LT(max_rel_diff(ours.exp_avg(), st.exp_avg()), 1e-6);
}

TEST(Optimizers, CpuAdamMatchesTorchAdamWOneThread) {
  expect_cpu_adam_matches_torch(1, 200);
}
TEST(Optimizers, CpuAdamMatchesTorchAdamWTwoThreads) {
  expect_cpu_adam_matches_torch(2, 20);
}

TEST(Optimizers, ScalarAndAvx2KernelsAgree) {
  const int64_t n = 4099;
  auto p1 = torch::randn({n}), g = torch::randn({n}), m1 = torch::randn({n}) * 0.1,
       v1 = torch::rand({n}) * 0.01;
  auto p2 = p1.clone(), m2 = m1.clone(), v2 = v1.clone();
  auto s = kernels::make_adam_step(1e-3, 0.9, 0.95, 1e-8, 0.1, 7);
  kernels::adam_step(p1.data_ptr<float>(), g.data_ptr<float>(), m1.data_ptr<float>(),
                     v1.data_ptr<float>(), n, s, true);
  kernels::adam_step_scalar(p2.data_ptr<float>(), g.data_ptr<float>(), m2.data_ptr<float>(),
                            v2.data_ptr<float>(), n, s, true);
  EXPECT_TRUE(torch::equal(p1, p2));
  EXPECT_TRUE(torch::equal(m1, m2));
  EXPECT_TRUE(torch::equal(v1, v2));
}

// Segments [0, a) decay, [a, b) no decay, [b, n) decay against two torch
// optimizers: one with weight decay, one without.
template <class Opt>
void expect_decay_segments_respected(double tol) {
  const int64_t n = 3000, a = 1000, b = 1700;
  auto c = adam_config("x", 0.5);
  auto init = torch::randn({n});
  auto nodecay = c;
  nodecay.weight_decay = 0;
  TorchAdamW ref_a(init.slice(0, 0, a), c), ref_b(init.slice(0, a, b), nodecay),
      ref_c(init.slice(0, b, n), c);
  Opt ours(c);
  ours.set_segments({{0, a, true, false, a, "w1"},
                     {a, b, false, false, b - a, "bias"},
                     {b, n, true, false, n - b, "w2"}});
  auto p = init.clone();
  for (int s = 1; s <= 20; ++s) {
    auto g = grad_at(n, s);
    ref_a.step(g.slice(0, 0, a));
    ref_b.step(g.slice(0, a, b));
    ref_c.step(g.slice(0, b, n));
    ours.step(p, g);
  }
  auto want = torch::cat({ref_a.p, ref_b.p, ref_c.p}).detach();
  EXPECT_LE(max_rel_diff(p, want), tol);
}

TEST(Optimizers, DecaySegmentsAdamW) {
  expect_decay_segments_respected<AdamW>(0.0);
}
TEST(Optimizers, DecaySegmentsCpuAdam) {
  expect_decay_segments_respected<CpuAdam>(1e-6);
}

TEST(Optimizers, LearningRateAndDecayChangeAtRunTime) {
  const int64_t n = 512;
  auto c = adam_config("adamw");
  auto init = torch::randn({n});
  TorchAdamW ref(init, c);
  AdamW ours(c);
  auto p = init.clone();
  for (int s = 1; s <= 20; ++s) {
    if (s == 10) {
      ours.set_lr(3e-3);
      ref.set_lr(3e-3);
    }
    auto g = grad_at(n, s);
    ref.step(g);
    ours.step(p, g);
  }
  EXPECT_DOUBLE_EQ(ours.lr(), 3e-3);
  EXPECT_TRUE(torch::equal(p, ref.p.detach()));
  // Without weight decay the parameters of a zero gradient stay put.
  ours.set_weight_decay(0);
  auto before = p.clone();
  ours.set_lr(0);
  ours.step(p, torch::zeros({n}));
  EXPECT_TRUE(torch::equal(p, before));
}

template <class Opt>
void expect_state_round_trip() {
  const int64_t n = 2049;
  auto c = adam_config("x");
  auto straight_p = torch::randn({n});
  auto resumed_p = straight_p.clone();
  Opt straight(c), first(c), second(c);
  for (int s = 1; s <= 10; ++s) straight.step(straight_p, grad_at(n, s));
  for (int s = 1; s <= 5; ++s) first.step(resumed_p, grad_at(n, s));
  StateDict saved;
  for (auto& [k, v] : first.state_dict()) saved[k] = v.clone();
  second.load_state_dict(saved);
  EXPECT_EQ(second.steps(), 5);
  for (int s = 6; s <= 10; ++s) second.step(resumed_p, grad_at(n, s));
  EXPECT_TRUE(torch::equal(straight_p, resumed_p));
  EXPECT_EQ(second.state_bytes(), 8 * n);
}

TEST(Optimizers, StateRoundTripAdamW) {
  expect_state_round_trip<AdamW>();
}
TEST(Optimizers, StateRoundTripCpuAdam) {
  expect_state_round_trip<CpuAdam>();
}

TEST(Optimizers, MissingStateIsNamed) {
  AdamW opt(adam_config("adamw"));
  StateDict bad{{"step", torch::tensor(3, torch::kLong)}, {"exp_avg", torch::zeros({4})}};
  try {
    opt.load_state_dict(bad);
    FAIL() << "expected CheckpointError";
  } catch (const core::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("exp_avg_sq"), std::string::npos);
  }
}

TEST(Optimizers, BadShardsAndSegmentsThrow) {
  CpuAdam opt(adam_config("cpu_adam"));
  EXPECT_THROW(opt.set_segments({{0, 10}, {11, 20}}), core::ModelError);  // a gap
  opt.set_segments({{0, 10}, {10, 20}});
  EXPECT_THROW(opt.step(torch::zeros({21}), torch::zeros({21})), core::ModelError);
  EXPECT_THROW(opt.step(torch::zeros({20}), torch::zeros({20}, torch::kDouble)), core::ModelError);
  EXPECT_THROW(opt.step(torch::zeros({4, 5}), torch::zeros({4, 5})), core::ModelError);
  opt.step(torch::zeros({20}), torch::zeros({20}));
  EXPECT_THROW(opt.step(torch::zeros({19}), torch::zeros({19})), core::ModelError);
}

TEST(Optimizers, FactoryReadsConfig) {
  auto rc = core::RunConfig::parse(
      "[optimizer]\nname = \"cpu_adam\"\nlr = 0.002\nweight_decay = 0.05\n", "run.toml");
  auto c = rc.get<OptimizerConfig>("optimizer");
  auto opt = make_optimizer(c);
  EXPECT_EQ(opt->name(), "cpu_adam");
  EXPECT_DOUBLE_EQ(opt->lr(), 0.002);
  EXPECT_DOUBLE_EQ(opt->weight_decay(), 0.05);
  EXPECT_EQ(make_optimizer(adam_config("adam8bit"))->name(), "adam8bit");
  auto bad = core::RunConfig::parse("[optimizer]\nname = \"sgd\"\n", "run.toml");
  EXPECT_THROW(bad.get<OptimizerConfig>("optimizer"), core::ConfigError);
  auto bad_block = core::RunConfig::parse("[optimizer]\nblock_size = 100\n", "run.toml");
  EXPECT_THROW(bad_block.get<OptimizerConfig>("optimizer"), core::ConfigError);
}

// ---- FlatParams -----------------------------------------------------------------------

struct TinyNet : torch::nn::Module {
  TinyNet() {
    register_module("wte", torch::nn::Embedding(10, 4));
    register_module("fc", torch::nn::Linear(4, 3));
    register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({3})));
  }
};

TEST(FlatParams, FlattensPadsShardsAndViews) {
  auto net = std::make_shared<TinyNet>();
  FlatParams fp = FlatParams::from_module(*net, 4);
  // 40 + 12 + 3 + 3 + 3 = 61 elements, padded to 64.
  EXPECT_EQ(fp.numel(), 61);
  EXPECT_EQ(fp.padded_numel(), 64);
  EXPECT_EQ(fp.shard_numel(), 16);
  EXPECT_EQ(fp.shard_range(3), (std::pair<int64_t, int64_t>{48, 64}));
  auto params = net->parameters();
  auto views = fp.views();
  ASSERT_EQ(views.size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(views[i], params[i]));
  // Views alias the buffer; shards too.
  fp.shard(0).fill_(7);
  EXPECT_EQ(views[0].view(-1)[15].item<float>(), 7.f);
  fp.copy_from(params);
  // Decay rule: the embedding, biases and norm gains do not decay.
  const auto& e = fp.entries();
  EXPECT_TRUE(e[0].embedding);
  EXPECT_FALSE(e[0].decay);
  EXPECT_TRUE(e[1].decay);   // linear weight
  EXPECT_FALSE(e[2].decay);  // linear bias
  EXPECT_FALSE(e[3].decay);  // norm weight
  // Rank 2 owns [32, 48): the embedding is [0, 40), the linear weight [40, 52).
  auto seg = fp.shard_segments(2);
  ASSERT_EQ(seg.size(), 2u);
  EXPECT_EQ(seg[0].begin, 0);
  EXPECT_EQ(seg[0].end, 8);
  EXPECT_EQ(seg[0].param_numel, 40);
  EXPECT_TRUE(seg[0].embedding);
  EXPECT_EQ(seg[1].begin, 8);
  EXPECT_EQ(seg[1].end, 16);
  EXPECT_TRUE(seg[1].decay);
  auto last = fp.shard_segments(3);
  EXPECT_EQ(last.back().name, "<padding>");
  EXPECT_EQ(last.back().end - last.back().begin, 3);
  // Segments feed an optimizer directly.
  CpuAdam opt(adam_config("cpu_adam"));
  opt.set_segments(last);
  auto shard = fp.shard(3).clone();
  opt.step(shard, torch::ones_like(shard));
  // The parameters copy back out.
  fp.flat().add_(1);
  fp.copy_to(params);
  EXPECT_TRUE(torch::equal(params[0], fp.views()[0]));
}

}  // namespace
}  // namespace shardlm::parallel
