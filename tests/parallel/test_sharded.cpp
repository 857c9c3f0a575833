// ShardedModel on 1, 2 and 4 ranks: an MLP whose Linear layers are the units
// trains to the same losses as a single process with torch::optim::AdamW, for
// ZeRO stages 0-3 with and without CPU offload, with gradient accumulation;
// memory per rank and bytes per step follow the ZeRO formulas.
#include <gtest/gtest.h>

#include <algorithm>

#include <torch/torch.h>

#include "core/error.h"
#include "parallel/loss_scaler.h"
#include "parallel/mpi_group.h"
#include "parallel/sharded_model.h"

namespace shardlm::parallel {
namespace {

constexpr int kIn = 16, kWidth = 48, kDepth = 4, kBatch = 32, kSteps = 20;

struct Mlp : torch::nn::Module {
  std::vector<torch::nn::Linear> layers;
  torch::nn::Linear head{nullptr};
  Mlp() {
    torch::manual_seed(3);
    for (int i = 0; i < kDepth; ++i)
      layers.push_back(register_module("layer" + std::to_string(i),
                                       torch::nn::Linear(i == 0 ? kIn : kWidth, kWidth)));
    head = register_module("head", torch::nn::Linear(kWidth, 1));
  }
};

struct Data {
  torch::Tensor x, y;
  Data() {
    auto gen = torch::make_generator<at::CPUGeneratorImpl>(11);
    x = torch::randn({kBatch, kIn}, gen);
    y = torch::randn({kBatch, 1}, gen);
  }
};

OptimizerConfig opt_config() {
  OptimizerConfig c;
  c.name = "adamw";
  // Small enough that fp32 rounding differences (another summation order of
  // the same batch) are not amplified step after step.
  c.lr = 3e-3;
  c.weight_decay = 0.1;
  return c;
}
constexpr double kMaxNorm = 0.5;

// Single process, whole batch, plain LibTorch.
std::vector<double> reference_losses() {
  auto m = std::make_shared<Mlp>();
  Data d;
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& p : m->parameters()) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  auto oc = opt_config();
  torch::optim::AdamW opt(
      {torch::optim::OptimizerParamGroup(
           decay, std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(oc.lr)
                                                                   .betas({oc.beta1, oc.beta2})
                                                                   .weight_decay(oc.weight_decay))),
       torch::optim::OptimizerParamGroup(
           no_decay,
           std::make_unique<torch::optim::AdamWOptions>(
               torch::optim::AdamWOptions(oc.lr).betas({oc.beta1, oc.beta2}).weight_decay(0)))});
  std::vector<double> losses;
  for (int s = 0; s < kSteps; ++s) {
    opt.zero_grad();
    auto h = d.x;
    for (auto& l : m->layers) h = torch::tanh(l(h));
    auto loss = torch::mse_loss(m->head(h), d.y);
    loss.backward();
    torch::nn::utils::clip_grad_norm_(m->parameters(), kMaxNorm);
    opt.step();
    losses.push_back(loss.item<double>());
  }
  return losses;
}

struct RunResult {
  std::vector<double> losses;
  ShardedModel::Memory memory;
  ShardedModel::Memory peak;  // over the run, each field on its own
  CommCounters step_comm;     // the last step's collectives, all types
  int64_t params = 0;
};

// Stops after `save_at` steps, saves, builds a fresh model, loads and goes on.
RunResult sharded_run(int stage, bool offload, int micro_batches, int steps = kSteps,
                      int save_at = -1, bool stream = false) {
  auto group = std::make_shared<MpiGroup>();
  auto m = std::make_shared<Mlp>();
  Data d;
  std::vector<std::shared_ptr<torch::nn::Module>> units;
  for (auto& l : m->layers) units.push_back(l.ptr());
  ShardedConfig sc;
  sc.zero_stage = stage;
  sc.cpu_offload = offload;
  sc.offload_params = stream;
  auto model_ptr = std::make_unique<ShardedModel>(m, units, group, sc, opt_config());
  const int p = group->size(), r = group->rank();
  const int local = kBatch / p, mb = local / micro_batches;
  RunResult res;
  for (int s = 0; s < steps; ++s) {
    if (s == save_at) {
      StateDict saved;
      for (auto& [k, v] : model_ptr->state_dict()) saved[k] = v.clone();
      // A new model of another initialisation: everything must come from `saved`.
      model_ptr.reset();
      m = std::make_shared<Mlp>();
      for (auto& par : m->parameters()) par.detach().uniform_();
      units.clear();
      for (auto& l : m->layers) units.push_back(l.ptr());
      model_ptr = std::make_unique<ShardedModel>(m, units, group, sc, opt_config());
      model_ptr->load_state_dict(saved);
    }
    ShardedModel& model = *model_ptr;
    group->stats().end_step();
    double local_loss = 0;
    for (int k = 0; k < micro_batches; ++k) {
      model.begin_micro_batch(k == micro_batches - 1);
      const int64_t b = r * local + k * mb;
      auto h = d.x.slice(0, b, b + mb);
      for (size_t i = 0; i < m->layers.size(); ++i)
        h = model.run_unit(i, h,
                           [&](const torch::Tensor& t) { return torch::tanh(m->layers[i](t)); });
      auto loss = torch::mse_loss(m->head(h), d.y.slice(0, b, b + mb)) / micro_batches;
      loss.backward();
      local_loss += loss.item<double>();
    }
    model.step(kMaxNorm);
    res.peak = model.peak_memory();
    res.step_comm = group->stats().step(Collective::kAllReduce);
    for (Collective c :
         {Collective::kReduceScatter, Collective::kAllGather, Collective::kBroadcast})
      res.step_comm += group->stats().step(c);
    auto t = torch::tensor({local_loss}, torch::kDouble);
    group->all_reduce(t, ReduceOp::kAvg);
    res.losses.push_back(t.item<double>());
  }
  res.memory = model_ptr->memory();
  res.params = model_ptr->num_params();
  return res;
}

void expect_same_losses(int stage, bool offload, int micro, bool stream = false) {
  auto want = reference_losses();
  auto got = sharded_run(stage, offload, micro, kSteps, -1, stream).losses;
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LT(want.back(), want.front() * 0.8);  // it does learn
  for (size_t s = 0; s < want.size(); ++s)
    EXPECT_NEAR(got[s], want[s], 1e-5 * std::fabs(want[s]))
        << "stage " << stage << " offload " << offload << " stream " << stream << " micro-batches "
        << micro << " step " << s;
}

// Every layout against the single-device reference: ZeRO stage, CPU offload,
// micro-batches per step, layer streaming.
struct Layout {
  const char* name;
  int stage;
  bool offload;
  int micro;
  bool stream = false;
};
class ShardedLosses : public ::testing::TestWithParam<Layout> {};
TEST_P(ShardedLosses, MatchTheReference) {
  const Layout& l = GetParam();
  expect_same_losses(l.stage, l.offload, l.micro, l.stream);
}
INSTANTIATE_TEST_SUITE_P(
    Sharded, ShardedLosses,
    ::testing::Values(Layout{"Stage0Ddp", 0, false, 1}, Layout{"Stage0DdpOffload", 0, true, 1},
                      Layout{"Stage1", 1, false, 1}, Layout{"Stage1Offload", 1, true, 1},
                      Layout{"Stage2", 2, false, 1}, Layout{"Stage2Offload", 2, true, 1},
                      Layout{"Stage3", 3, false, 1}, Layout{"Stage3Offload", 3, true, 1},
                      Layout{"Stage3StreamedLayers", 3, true, 1, true},
                      Layout{"AccumulationStage3StreamedLayers", 3, true, 2, true},
                      Layout{"AccumulationStage0", 0, false, 2},
                      Layout{"AccumulationStage1", 1, false, 2},
                      Layout{"AccumulationStage2", 2, false, 2},
                      Layout{"AccumulationStage3Offload", 3, true, 2}),
    [](const ::testing::TestParamInfo<Layout>& i) { return std::string(i.param.name); });

TEST(Sharded, SaveAndLoadResumesBitwise) {
  for (int stage : {0, 2, 3}) {
    auto straight = sharded_run(stage, stage == 3, 1, 8);
    auto resumed = sharded_run(stage, stage == 3, 1, 8, /*save_at=*/4);
    EXPECT_EQ(straight.losses, resumed.losses) << "stage " << stage;
  }
}

TEST(Sharded, StreamedLayersResumeBitwise) {
  auto straight = sharded_run(3, true, 1, 8, -1, true);
  auto resumed = sharded_run(3, true, 1, 8, /*save_at=*/4, true);
  EXPECT_EQ(straight.losses, resumed.losses);
  // and the streamed run is the offloaded ZeRO-3 run, bit for bit
  EXPECT_EQ(straight.losses, sharded_run(3, true, 1, 8).losses);
}

TEST(Sharded, StreamedLayersRejectAConfigWithoutZero3Offload) {
  ShardedConfig sc;
  sc.offload_params = true;
  sc.zero_stage = 3;
  EXPECT_THROW(sc.validate(), core::ConfigError);  // no cpu_offload
  sc.cpu_offload = true;
  sc.zero_stage = 2;
  EXPECT_THROW(sc.validate(), core::ConfigError);
  sc.zero_stage = 3;
  EXPECT_NO_THROW(sc.validate());
}

TEST(Sharded, Stage3GatherAllMaterialisesTheModule) {
  auto group = std::make_shared<MpiGroup>();
  auto m = std::make_shared<Mlp>();
  std::vector<std::shared_ptr<torch::nn::Module>> units;
  for (auto& l : m->layers) units.push_back(l.ptr());
  ShardedConfig sc;
  sc.zero_stage = 3;
  ShardedModel model(m, units, group, sc, opt_config());
  const int64_t at_rest = model.memory().params;
  model.gather_all();
  EXPECT_GT(model.memory().params, at_rest);
  auto fresh = std::make_shared<Mlp>();  // same seed: the values before any step
  auto a = m->parameters(), b = fresh->parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
}

// fp16-style loss scaling around the sharded step: an overflow injected on
// one rank makes every rank skip; parameters and states stay as they were.
TEST(Sharded, LossScalerSkipsOverflowOnEveryRank) {
  for (int stage : {0, 2, 3}) {
    auto group = std::make_shared<MpiGroup>();
    auto m = std::make_shared<Mlp>();
    Data d;
    std::vector<std::shared_ptr<torch::nn::Module>> units;
    for (auto& l : m->layers) units.push_back(l.ptr());
    ShardedConfig sc;
    sc.zero_stage = stage;
    ShardedModel model(m, units, group, sc, opt_config());
    LossScalerConfig lc;
    lc.init_scale = 1024;
    LossScaler scaler(lc);
    const int local = kBatch / group->size();
    auto run = [&](bool poison) {
      model.begin_micro_batch(true);
      auto h = d.x.slice(0, group->rank() * local, (group->rank() + 1) * local);
      for (size_t i = 0; i < m->layers.size(); ++i)
        h = model.run_unit(i, h,
                           [&](const torch::Tensor& t) { return torch::tanh(m->layers[i](t)); });
      auto loss = torch::mse_loss(m->head(h),
                                  d.y.slice(0, group->rank() * local, (group->rank() + 1) * local));
      scaler.scale_loss(loss).backward();
      auto grads = model.reduced_grads();
      if (poison && group->rank() == group->size() - 1)
        grads.back().view(-1)[0] = std::numeric_limits<float>::infinity();
      const bool finite = scaler.unscale_(grads, group.get());
      if (scaler.update(!finite))
        model.step();
      else
        model.skip_step();
      return finite;
    };
    EXPECT_TRUE(run(false));
    model.gather_all();
    std::vector<torch::Tensor> before;
    for (auto& par : m->parameters()) before.push_back(par.detach().clone());
    EXPECT_FALSE(run(true)) << "stage " << stage;
    EXPECT_EQ(scaler.scale(), 512);
    EXPECT_EQ(model.unit_optimizer(0).steps(), 1);
    model.gather_all();
    auto after = m->parameters();
    for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after[i]));
    EXPECT_TRUE(run(false));  // and training goes on
    EXPECT_EQ(model.unit_optimizer(0).steps(), 2);
  }
}

TEST(Sharded, MemoryPerRankFollowsZeroFormulas) {
  auto r0 = sharded_run(0, false, 1, 1);
  auto r3 = sharded_run(3, false, 1, 1);
  auto r3o = sharded_run(3, true, 1, 1);
  int p = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  const double psi = static_cast<double>(r0.params);
  // ZeRO-0: 4 B parameters + 4 B gradients + 8 B Adam states per parameter.
  EXPECT_NEAR(r0.memory.total(), 16 * psi, 0.1 * 16 * psi);
  // ZeRO-3 at rest: everything sharded, 1/P of ZeRO-0 (within 10%).
  EXPECT_NEAR(double(r3.memory.total()) / r0.memory.total(), 1.0 / p, 0.1 / p);
  // With offload the optimizer states and master weights live on the host;
  // the compute device keeps the parameter and gradient shards only.
  EXPECT_EQ(r3o.memory.optimizer, 0);
  EXPECT_NEAR(r3o.memory.params + r3o.memory.grads, 8 * psi / p, 0.1 * 8 * psi / p);
  EXPECT_GT(r3o.memory.host, 0);
}

// Layer streaming: at no moment of a step does the compute device hold more
// than two units' parameters and gradients (plus the root's), while ZeRO-3
// with optimizer offload keeps a shard of every unit there, and its full
// gradients for the whole backward.
TEST(Sharded, StreamedLayersHoldAboutTwoUnitsOnTheDevice) {
  int p = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  auto streamed = sharded_run(3, true, 1, 2, -1, true);
  auto offload = sharded_run(3, true, 1, 2);
  Mlp m;
  std::vector<int64_t> unit_bytes;  // padded to a multiple of the world size
  for (auto& l : m.layers) {
    int64_t n = 0;
    for (auto& t : l->parameters()) n += t.numel();
    unit_bytes.push_back(4 * ((n + p - 1) / p) * p);
  }
  int64_t root = 0;
  for (auto& t : m.head->parameters()) root += t.numel();
  const int64_t root_bytes = 4 * ((root + p - 1) / p) * p;
  std::sort(unit_bytes.rbegin(), unit_bytes.rend());
  const int64_t two_units = unit_bytes[0] + unit_bytes[1];
  // At rest nothing of the model is on the device; the host has it all.
  EXPECT_EQ(streamed.memory.params + streamed.memory.grads + streamed.memory.optimizer, 0);
  // The host copy of the shard is the fp32 master itself: no more host memory
  // than offload alone, which keeps the shard on the device as well.
  EXPECT_EQ(streamed.memory.host, offload.memory.host);
  EXPECT_GT(offload.memory.params, 0);
  EXPECT_LE(streamed.peak.params, two_units + root_bytes);
  EXPECT_GE(streamed.peak.params, unit_bytes[1]);  // it did gather
  // Full gradients of two units and their reduced shards, plus the root's.
  EXPECT_LE(streamed.peak.grads, (two_units + root_bytes) * (p + 1) / p);
  EXPECT_EQ(streamed.peak.optimizer, 0);
  // ZeRO-3 + offload at its peak holds every unit's full gradient at once.
  int64_t all_units = root_bytes;
  for (int64_t b : unit_bytes) all_units += b;
  EXPECT_GE(offload.peak.grads, all_units);
  EXPECT_LT(streamed.peak.params + streamed.peak.grads, offload.peak.params + offload.peak.grads);
}

TEST(Sharded, BytesPerStepFollowZeroFormulas) {
  int p = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  if (p == 1) GTEST_SKIP() << "a world of one sends nothing";
  const double psi_bytes = 4.0 * sharded_run(0, false, 1, 1).params;
  const double ring = double(p - 1) / p;
  // DDP: one all-reduce of the gradients, 2 psi (P-1)/P sent per rank.
  EXPECT_NEAR(sharded_run(0, false, 1, 2).step_comm.wire_bytes, 2 * psi_bytes * ring,
              0.05 * 2 * psi_bytes * ring);
  // ZeRO-1/2: reduce-scatter + all-gather, also 2 psi.
  EXPECT_NEAR(sharded_run(2, false, 1, 2).step_comm.wire_bytes, 2 * psi_bytes * ring,
              0.05 * 2 * psi_bytes * ring);
  // ZeRO-3: all-gather in forward and again in backward, reduce-scatter: 3 psi.
  EXPECT_NEAR(sharded_run(3, false, 1, 2).step_comm.wire_bytes, 3 * psi_bytes * ring,
              0.05 * 3 * psi_bytes * ring);
}

}  // namespace
}  // namespace shardlm::parallel
