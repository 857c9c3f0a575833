// One optimizer step over 100M fp32 parameters on the CPU, in one run:
//   CpuAdam (fused AVX2 kernel, one pass)  vs  torch::optim::AdamW (LibTorch ops).
// Both use LibTorch's intra-op threads; by default all cores
// (--threads=N to choose). The time per step is what ZeRO-Offload's CPU step costs.
//   build/bench/parallel/bench_cpu_adam [--threads=N] [--numel=N]
#include <benchmark/benchmark.h>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cstring>
#include <thread>

#include "parallel/adam8bit.h"
#include "parallel/cpu_adam.h"
#include "parallel/kernels/adam_cpu.h"

namespace {

int64_t g_numel = 100'000'000;

shardlm::parallel::OptimizerConfig config(const char* name) {
  shardlm::parallel::OptimizerConfig c;
  c.name = name;
  c.lr = 1e-3;
  c.weight_decay = 0.1;
  return c;
}

void report(benchmark::State& state, int64_t n) {
  state.counters["threads"] = at::get_num_threads();
  state.counters["params/s"] =
      benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
  // Bytes a fused step must move: read p, g, m, v, write p, m, v.
  state.counters["GB/s(28B/param)"] = benchmark::Counter(
      28.0 * n, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_CpuAdam(benchmark::State& state) {
  auto p = torch::randn({g_numel}), g = torch::randn({g_numel}) * 0.01;
  shardlm::parallel::CpuAdam opt(config("cpu_adam"));
  opt.step(p, g);  // allocates and touches the state
  for (auto _ : state) opt.step(p, g);
  state.SetLabel(shardlm::parallel::kernels::adam_uses_avx2() ? "avx2+fma" : "scalar");
  report(state, g_numel);
}

void BM_TorchAdamW(benchmark::State& state) {
  auto p = torch::randn({g_numel}).requires_grad_(true);
  p.mutable_grad() = torch::randn({g_numel}) * 0.01;
  torch::optim::AdamW opt({p}, torch::optim::AdamWOptions(1e-3).weight_decay(0.1));
  opt.step();
  for (auto _ : state) opt.step();
  report(state, g_numel);
}

void BM_Adam8bitCpu(benchmark::State& state) {
  auto p = torch::randn({g_numel}), g = torch::randn({g_numel}) * 0.01;
  shardlm::parallel::Adam8bit opt(config("adam8bit"));
  opt.step(p, g);
  for (auto _ : state) opt.step(p, g);
  report(state, g_numel);
}

}  // namespace

BENCHMARK(BM_CpuAdam)->Iterations(10)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TorchAdamW)->Iterations(5)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Adam8bitCpu)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0)
      threads = std::atoi(argv[i] + 10);
    else if (std::strncmp(argv[i], "--numel=", 8) == 0)
      g_numel = std::atoll(argv[i] + 8);
    else
      rest.push_back(argv[i]);
  }
  at::set_num_threads(threads);
  int rc = static_cast<int>(rest.size());
  benchmark::Initialize(&rc, rest.data());
  benchmark::AddCustomContext("threads", std::to_string(at::get_num_threads()));
  benchmark::AddCustomContext("numel", std::to_string(g_numel));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
