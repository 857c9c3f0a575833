// GPU checks (label gpu; SKIPPED without a CUDA device): the NCCL process group
// at world size 1, the GPT on CUDA against the CPU, bf16 autocast, activation
// checkpointing and the sharded engine (ZeRO-0 and ZeRO-3) stepping on the GPU;
// layer streaming (ZeRO-3 with parameters offloaded) against ZeRO-3 offload;
// CPU offload against training on the device; the fused AdamW kernel against
// the op-by-op reference; the copy stream's ordering; the caching allocator's
// statistics; fused attention with a KV cache against the math path; and
// (GpuMpi, 2 ranks on one GPU) MpiGroup's collectives on CUDA tensors.
#include <gtest/gtest.h>
#include <mpi.h>

#include <torch/torch.h>

#include "model/activation_checkpoint.h"
#include "model/gpt.h"
#include "parallel/adamw.h"
#include "parallel/copy_stream.h"
#include "parallel/device_memory.h"
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

// CPU offload (master shards and the optimizer on the host, transfers on the
// copy stream) trains like the same stage on the device.
TEST(Gpu, CpuOffloadOnCudaMatchesTrainingOnTheDevice) {
  REQUIRE_CUDA();
  for (int stage : {2, 3}) {
    parallel::ShardedConfig sc;
    sc.zero_stage = stage;
    auto device = engine_run(sc, "adamw", 6);
    sc.cpu_offload = true;
    auto offload = engine_run(sc, "cpu_adam", 6);
    EXPECT_LT(offload.losses.back(), offload.losses.front()) << "stage " << stage;
    for (size_t i = 0; i < device.losses.size(); ++i)
      EXPECT_NEAR(offload.losses[i], device.losses[i], 1e-3 * device.losses[i])
          << "stage " << stage << " step " << i;
    EXPECT_GT(offload.at_rest.host, 0);
  }
}

// LibTorch's fused multi-tensor AdamW agrees with the op-by-op reference (the
// same update) to fp32 rounding, with decay and no-decay runs in one shard.
TEST(Gpu, FusedAdamWMatchesTheReference) {
  REQUIRE_CUDA();
  if (!parallel::AdamW::fused_available(torch::Device(torch::kCUDA, 0)))
    GTEST_SKIP() << "LibTorch " << TORCH_VERSION << " has no fused AdamW";
  auto opts = torch::TensorOptions().device(torch::kCUDA);
  const int64_t n = 300007;
  std::vector<parallel::ParamSegment> segs = {{0, 1000, false, false, 1000, "bias"},
                                              {1000, 200000, true, false, 199000, "w1"},
                                              {200000, 200100, false, false, 100, "norm"},
                                              {200100, n, true, false, n - 200100, "w2"}};
  parallel::OptimizerConfig c;
  c.lr = 1e-2;
  c.weight_decay = 0.1;
  c.fused = true;
  parallel::AdamW fused(c);
  c.fused = false;
  parallel::AdamW ref(c);
  fused.set_segments(segs);
  ref.set_segments(segs);
  torch::manual_seed(1);
  auto p0 = torch::randn({n}, opts);
  auto pf = p0.clone(), pr = p0.clone();
  for (int step = 0; step < 5; ++step) {
    auto g = torch::randn({n}, opts) * (step + 1);
    fused.step(pf, g);
    ref.step(pr, g);
  }
  EXPECT_LT(rel(pf - p0, pr - p0), 1e-5);  // the update itself, not just the parameters
  EXPECT_LT(rel(fused.exp_avg_sq(), ref.exp_avg_sq()), 1e-6);
  EXPECT_LT(rel(fused.exp_avg(), ref.exp_avg()), 1e-6);
  // no decay in the no-decay runs: their change is the Adam step alone
  EXPECT_LT(rel(pf.narrow(0, 0, 1000), pr.narrow(0, 0, 1000)), 1e-6);
}

// A copy on the copy stream sees what the compute stream wrote before it, and
// the compute stream, told to wait, sees what the copy brought.
TEST(Gpu, CopyStreamOrdersTransfersWithCompute) {
  REQUIRE_CUDA();
  torch::Device dev(torch::kCUDA, 0);
  parallel::CopyStream copier(dev);
  ASSERT_TRUE(copier.async());
  auto opts = torch::TensorOptions().device(dev);
  auto a = torch::randn({2048, 2048}, opts);
  auto x = torch::zeros({2048, 2048}, opts);
  for (int i = 0; i < 20; ++i) x = x + a.matmul(a).mul_(1e-3);  // queued work that writes x
  auto host = torch::empty({2048, 2048}, torch::TensorOptions().pinned_memory(true));
  auto down = copier.copy(host, x);
  parallel::CopyStream::host_waits(down);
  EXPECT_TRUE(torch::equal(host, x.cpu()));
  auto src = torch::randn({1 << 22}).pin_memory();
  auto dst = torch::empty({1 << 22}, opts);
  auto up = copier.copy(dst, src);
  copier.compute_waits(up);
  EXPECT_TRUE(torch::equal(dst.cpu(), src));
}

TEST(Gpu, DeviceMemoryFromTheCachingAllocator) {
  REQUIRE_CUDA();
  torch::cuda::synchronize();
  auto before = parallel::cuda_memory(0);
  ASSERT_TRUE(before.has_value());
  EXPECT_GT(before->total, int64_t(1) << 30);
  EXPECT_GT(before->free, 0);
  parallel::reset_cuda_peak(0);
  const int64_t bytes = int64_t(256) << 20;
  {
    auto t = torch::empty({bytes / 4}, torch::TensorOptions().device(torch::kCUDA));
    auto during = parallel::cuda_memory(0);
    EXPECT_GE(during->allocated - before->allocated, bytes);
    EXPECT_GE(during->reserved, during->allocated);
    EXPECT_GE(during->peak_allocated, during->allocated);
  }
  auto after = parallel::cuda_memory(0);
  EXPECT_LT(after->allocated, before->allocated + bytes);
  EXPECT_GE(after->peak_allocated - before->allocated, bytes);  // the peak remembers
  parallel::reset_cuda_peak(0);
  EXPECT_LT(parallel::cuda_memory(0)->peak_allocated, before->allocated + bytes);
  EXPECT_FALSE(parallel::cuda_memory(1000).has_value());
}

// Generation's path: a prefill and single-token steps through the KV cache,
// with fused attention (SDPA with the cache's mask) and with the written-out math.
TEST(Gpu, FusedAttentionWithKvCacheMatchesTheMathPath) {
  REQUIRE_CUDA();
  if (!model::fused_attention_available()) GTEST_SKIP() << "LibTorch has no SDPA";
  torch::manual_seed(7);
  model::GPT m(small());
  m->to(torch::kCUDA);
  m->eval();
  torch::NoGradGuard ng;
  auto ids =
      torch::randint(512, {2, 20}, torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
  auto run = [&](model::AttentionPath path) {
    model::KVCache cache(32);
    model::ForwardOptions o;
    o.cache = &cache;
    o.attention = path;
    std::vector<torch::Tensor> logits{m->forward(ids.narrow(1, 0, 12), o)};
    for (int64_t t = 12; t < 20; ++t) logits.push_back(m->forward(ids.narrow(1, t, 1), o));
    return torch::cat(logits, 1);  // (B, 20, V)
  };
  auto fused = run(model::AttentionPath::kFused), math = run(model::AttentionPath::kMath);
  EXPECT_LT(rel(fused, math), 1e-4);
  // and the cache gives what one full forward gives
  model::ForwardOptions full;
  full.attention = model::AttentionPath::kFused;
  EXPECT_LT(rel(fused, m->forward(ids, full)), 1e-4);
}

// Two ranks sharing one GPU (NCCL refuses that): MpiGroup stages CUDA tensors
// through pinned host memory, so every collective works on device tensors,
// ordered after the kernels that produced them.
TEST(GpuMpi, CollectivesOnCudaTensorsThroughHostMemory) {
  REQUIRE_CUDA();
  if (!parallel::NcclGroup::compiled()) GTEST_SKIP() << "built without CUDA";
  parallel::MpiGroup g(MPI_COMM_WORLD);
  const int p = g.size(), r = g.rank();
  auto opts = torch::TensorOptions().device(torch::kCUDA);
  const int64_t n = (1 << 20) + 3;
  auto t = torch::zeros({n}, opts);
  auto a = torch::randn({1024, 1024}, opts);
  for (int i = 0; i < 10; ++i) t.add_(a.matmul(a).sum().mul(0).add(1.0 * (r + 1) / 10));
  g.all_reduce(t, parallel::ReduceOp::kSum);
  EXPECT_NEAR(t.min().item<double>(), p * (p + 1) / 2.0, 1e-4);
  EXPECT_NEAR(t.max().item<double>(), p * (p + 1) / 2.0, 1e-4);
  auto bf = torch::full({77}, r + 1.0, opts.dtype(torch::kBFloat16));
  g.all_reduce(bf, parallel::ReduceOp::kAvg);
  EXPECT_NEAR(bf.to(torch::kFloat).mean().item<double>(), (p + 1) / 2.0, 1e-2);
  // uneven reduce-scatter and in-place all-gather: ZeRO's pair
  auto off = parallel::split_offsets(n, p);
  auto whole = torch::arange(n, opts.dtype(torch::kFloat));
  auto piece = torch::empty({off[r + 1] - off[r]}, opts);
  g.reduce_scatter(piece, whole * (r + 1), parallel::ReduceOp::kAvg);
  EXPECT_LT(rel(piece, whole.slice(0, off[r], off[r + 1]) * ((p + 1) / 2.0)), 1e-6);
  auto gathered = torch::full({n}, -1.0, opts);
  gathered.slice(0, off[r], off[r + 1]).copy_(whole.slice(0, off[r], off[r + 1]));
  g.all_gather(gathered, gathered.slice(0, off[r], off[r + 1]));
  EXPECT_TRUE(torch::equal(gathered, whole));
  auto b = torch::full({1000}, static_cast<double>(r), opts);
  g.broadcast(b, p - 1);
  EXPECT_EQ(b.sum().item<double>(), 1000.0 * (p - 1));
  // a result read by another stream right after wait()
  auto w = g.all_reduce_async(t, parallel::ReduceOp::kMax);
  w->wait();
  EXPECT_NEAR(t.max().item<double>(), p * (p + 1) / 2.0, 1e-4);
}
