// GPU checks (label gpu; SKIPPED without a CUDA device): the NCCL process group
// at world size 1, the GPT on CUDA against the CPU, bf16 autocast, activation
// checkpointing and the sharded engine (ZeRO-0 and ZeRO-3) stepping on the GPU;
// layer streaming (ZeRO-3 with parameters offloaded) against ZeRO-3 offload.
#include <gtest/gtest.h>
#include <mpi.h>

#include <torch/torch.h>

#include "model/activation_checkpoint.h"
#include "model/gpt.h"
#include "parallel/mpi_group.h"
#include "parallel/nccl_group.h"
#include "runtime/engine.h"

using namespace shardlm;

namespace {
#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

model::ModelConfig small() {
  model::ModelConfig c;
  c.vocab_size = 512;
  c.context_length = 64;
  c.n_layer = 3;
  c.n_head = 4;
  c.d_model = 128;
  return c;
}

double rel(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a.cpu().to(torch::kDouble) - b.cpu().to(torch::kDouble)).norm() /
          b.cpu().to(torch::kDouble).norm().clamp_min(1e-30))
      .item<double>();
}
}  // namespace

TEST(Gpu, NcclGroupAtWorldOne) {
  REQUIRE_CUDA();
  if (!parallel::NcclGroup::compiled()) GTEST_SKIP() << "built without NCCL";
  auto g = parallel::NcclGroup::create(MPI_COMM_SELF);
  auto opts = torch::TensorOptions().device(torch::kCUDA);
  auto t = torch::arange(10, opts.dtype(torch::kFloat));
  g->all_reduce(t, parallel::ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(t.cpu(), torch::arange(10, torch::kFloat)));
  auto bf = torch::ones({7}, opts.dtype(torch::kBFloat16));
  g->all_reduce(bf, parallel::ReduceOp::kAvg);
  EXPECT_TRUE(torch::equal(bf.cpu(), torch::ones({7}, torch::kBFloat16)));
  auto out = torch::zeros({6}, opts);
  g->all_gather(out, torch::full({6}, 3.0, opts));
  EXPECT_TRUE(torch::equal(out.cpu(), torch::full({6}, 3.0)));
  auto rs = torch::zeros({6}, opts);
  g->reduce_scatter(rs, torch::full({6}, 2.0, opts));
  EXPECT_TRUE(torch::equal(rs.cpu(), torch::full({6}, 2.0)));
  g->broadcast(out, 0);
  g->barrier();
}

TEST(Gpu, GptOnCudaMatchesCpu) {
  REQUIRE_CUDA();
  torch::manual_seed(3);
  model::GPT cpu(small());
  model::GPT gpu(small());
  {
    torch::NoGradGuard ng;
    auto src = cpu->named_parameters();
    for (auto& p : gpu->named_parameters()) p.value().copy_(src[p.key()]);
  }
  gpu->to(torch::kCUDA);
  auto ids = torch::randint(512, {2, 64}, torch::kLong);
  auto lc = model::loss(cpu->forward(ids), ids);
  auto lg = model::loss(gpu->forward(ids.cuda()), ids.cuda());
  lc.backward();
  lg.backward();
  EXPECT_LT(std::abs(lc.item<double>() - lg.item<double>()), 1e-4 * lc.item<double>());
  auto pc = cpu->named_parameters();
  for (auto& p : gpu->named_parameters())
    EXPECT_LT(rel(p.value().grad(), pc[p.key()].grad()), 1e-3) << p.key();
  // bf16 autocast: finite and close to fp32.
  torch::Tensor lb;
  {
    model::AutocastGuard ac(torch::kCUDA, torch::kBFloat16);
    lb = model::loss(gpu->forward(ids.cuda()), ids.cuda());
  }
  EXPECT_TRUE(std::isfinite(lb.item<double>()));
  EXPECT_LT(std::abs(lb.item<double>() - lg.item<double>()), 0.05 * lg.item<double>());
}

TEST(Gpu, CheckpointingGradientsIdenticalOnCuda) {
  REQUIRE_CUDA();
  auto cfg = small();
  cfg.embd_dropout = cfg.attn_dropout = cfg.resid_dropout = 0.1;
  torch::manual_seed(5);
  model::GPT m(cfg);
  m->to(torch::kCUDA);
  m->train();
  auto ids =
      torch::randint(512, {2, 64}, torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
  auto grads = [&](bool ckpt) {
    for (auto& p : m->parameters()) p.mutable_grad() = torch::Tensor();
    torch::manual_seed(9);
    model::ForwardOptions o;
    if (ckpt)
      o.block_runner = [](int64_t, const model::BlockFn& f, const torch::Tensor& x) {
        return model::checkpoint(f, x);
      };
    model::loss(m->forward(ids, o), ids).backward();
    std::vector<torch::Tensor> g;
    for (auto& p : m->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  auto a = grads(false), b = grads(true);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
}

namespace {
// Steps the engine on CUDA with bf16 autocast: the losses, the peak and the
// at-rest model-state memory on the device.
struct EngineRun {
  std::vector<double> losses;
  parallel::ShardedModel::Memory peak, at_rest;
};
EngineRun engine_run(const parallel::ShardedConfig& sc, const std::string& optimizer, int steps) {
  torch::manual_seed(11);
  model::GPT m(small());
  parallel::OptimizerConfig oc;
  oc.name = optimizer;
  oc.lr = 1e-3;
  std::shared_ptr<parallel::ProcessGroup> g;
  if (parallel::NcclGroup::compiled())
    g = parallel::NcclGroup::create(MPI_COMM_SELF);
  else
    g = std::make_shared<parallel::MpiGroup>(MPI_COMM_SELF);
  runtime::Engine e(m, sc, oc, g, torch::kCUDA);
  auto ids =
      torch::randint(512, {4, 64}, torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
  model::ForwardOptions o;
  o.block_runner = e.block_runner(true);
  EngineRun r;
  for (int s = 0; s < steps; ++s) {
    e.begin_micro_batch(true);
    torch::Tensor loss;
    {
      model::AutocastGuard ac(torch::kCUDA, torch::kBFloat16);
      loss = model::loss(m->forward(ids, o), ids);
    }
    loss.backward();
    e.step(1e-3, 1.0);
    r.losses.push_back(loss.item<double>());
  }
  r.peak = e.sharded().peak_memory();
  r.at_rest = e.memory();
  return r;
}
}  // namespace

TEST(Gpu, EngineStepsOnCudaAtZero0And3) {
  REQUIRE_CUDA();
  std::vector<std::vector<double>> losses;
  for (int stage : {0, 3}) {
    parallel::ShardedConfig sc;
    sc.zero_stage = stage;
    auto l = engine_run(sc, "adamw", 8).losses;
    EXPECT_LT(l.back(), l.front()) << "stage " << stage;
    losses.push_back(l);
  }
  for (size_t i = 0; i < losses[0].size(); ++i)
    EXPECT_NEAR(losses[0][i], losses[1][i], 1e-2 * losses[0][i]) << "step " << i;
}

// Layer streaming: parameter shards in pinned host memory, copied to the GPU
// unit by unit. Same losses as ZeRO-3 with optimizer offload, nothing of the
// model on the GPU between steps, and at most two blocks' parameters besides
// the root's during one.
TEST(Gpu, LayerStreamingMatchesOffloadOnCuda) {
  REQUIRE_CUDA();
  parallel::ShardedConfig sc;
  sc.zero_stage = 3;
  sc.cpu_offload = true;
  auto offload = engine_run(sc, "cpu_adam", 6);
  sc.offload_params = true;
  auto streamed = engine_run(sc, "cpu_adam", 6);
  for (size_t i = 0; i < offload.losses.size(); ++i)
    EXPECT_NEAR(streamed.losses[i], offload.losses[i], 1e-5 * offload.losses[i]) << "step " << i;
  EXPECT_EQ(streamed.at_rest.params + streamed.at_rest.grads, 0);
  model::ModelConfig c = small();
  const double block = 4.0 * (12.0 * c.d_model * c.d_model + 13.0 * c.d_model);
  const double root = 4.0 * (c.vocab_size + c.context_length + 2) * c.d_model;
  EXPECT_LE(streamed.peak.params, 2 * block + root + 4096);
}
