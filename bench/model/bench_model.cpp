// Forward+backward of the CPU benchmark model (4 layers, 4 heads, width 256,
// T=128, batch 8, vocabulary 4096): logits, mean cross entropy, backward, grads
// dropped (as zero_grad(set_to_none) does). Threads: $OMP_NUM_THREADS (else
// LibTorch's default). bench/model/side_by_side.py runs this next to PyTorch.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>

#include "model/gpt.h"

using namespace shardlm::model;

namespace {

ModelConfig bench_config() {
  ModelConfig c;
  c.vocab_size = 4096;
  c.context_length = 128;
  c.n_layer = 4;
  c.n_head = 4;
  c.d_model = 256;
  return c;
}

constexpr int64_t kBatch = 8, kT = 128;

void drop_grads(GPT& m) {
  for (auto& p : m->parameters()) p.mutable_grad() = torch::Tensor();
}

void BM_ForwardBackward(benchmark::State& state) {
  torch::manual_seed(0);
  GPT m(bench_config());
  m->train();
  torch::Tensor ids = torch::randint(0, 4096, {kBatch, kT}, torch::kLong);
  torch::Tensor targets = torch::randint(0, 4096, {kBatch, kT}, torch::kLong);
  const bool bf16 = state.range(0) == 1;
  for (auto _ : state) {
    torch::Tensor l;
    {
      AutocastGuard autocast(torch::kCPU, torch::kBFloat16, bf16);
      l = loss(m->forward(ids), targets);
    }
    l.backward();
    drop_grads(m);
  }
  state.counters["tokens/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kBatch * kT), benchmark::Counter::kIsRate);
  state.SetLabel(bf16 ? "autocast bf16" : "fp32");
}
BENCHMARK(BM_ForwardBackward)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_ForwardEval(benchmark::State& state) {
  torch::manual_seed(0);
  GPT m(bench_config());
  m->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor ids = torch::randint(0, 4096, {kBatch, kT}, torch::kLong);
  for (auto _ : state) benchmark::DoNotOptimize(m->forward(ids));
}
BENCHMARK(BM_ForwardEval)->Unit(benchmark::kMillisecond);

// SHARDLM_PROFILE=trace.json: three fp32 train steps under LibTorch's profiler
// (a chrome://tracing file, per-op times), then exit.
void profile(const char* path) {
  torch::manual_seed(0);
  GPT m(bench_config());
  m->train();
  torch::Tensor ids = torch::randint(0, 4096, {kBatch, kT}, torch::kLong);
  torch::Tensor targets = torch::randint(0, 4096, {kBatch, kT}, torch::kLong);
  auto step = [&] {
    loss(m->forward(ids), targets).backward();
    drop_grads(m);
  };
  step();
  torch::autograd::profiler::RecordProfile guard(path);
  for (int i = 0; i < 3; ++i) step();
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* n = std::getenv("OMP_NUM_THREADS")) at::set_num_threads(std::atoi(n));
  if (const char* path = std::getenv("SHARDLM_PROFILE")) {
    profile(path);
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
