// Step time of ShardedModel at ZeRO-3 against DDP (stage 0) on the same model
// and global batch, in one run under mpiexec (2 ranks for RESULTS.md). The
// model: an MLP of 8 Linear(1024, 1024) units (8.4M parameters), batch 64.
// Also ZeRO-3 with CPU offload and layer streaming (offload_params), with the
// peak of model states on the compute device during a step.
//   mpiexec -n 2 build/bench/parallel/bench_sharded_step
#include <benchmark/benchmark.h>
#include <mpi.h>

#include <torch/torch.h>

#include "bench/parallel/mpi_bench.h"
#include "core/env.h"
#include "parallel/mpi_group.h"
#include "parallel/sharded_model.h"

namespace {

using namespace shardlm::parallel;
std::shared_ptr<MpiGroup> g_group;
constexpr int kWidth = 1024, kDepth = 8, kBatch = 64;

struct Mlp : torch::nn::Module {
  std::vector<torch::nn::Linear> layers;
  Mlp() {
    for (int i = 0; i < kDepth; ++i)
      layers.push_back(register_module("l" + std::to_string(i), torch::nn::Linear(kWidth, kWidth)));
  }
};

void BM_ShardedStep(benchmark::State& state) {
  torch::manual_seed(0);
  auto m = std::make_shared<Mlp>();
  std::vector<std::shared_ptr<torch::nn::Module>> units;
  for (auto& l : m->layers) units.push_back(l.ptr());
  ShardedConfig sc;
  sc.zero_stage = state.range(0);
  sc.cpu_offload = state.range(1) != 0;
  sc.offload_params = state.range(2) != 0;
  OptimizerConfig oc;
  oc.name = sc.cpu_offload ? "cpu_adam" : "adamw";
  ShardedModel model(m, units, g_group, sc, oc);
  const int local = kBatch / g_group->size();
  auto x = torch::randn({local, kWidth}), y = torch::randn({local, kWidth});
  auto one_step = [&] {
    model.begin_micro_batch(true);
    auto h = x;
    for (size_t i = 0; i < m->layers.size(); ++i)
      h = model.run_unit(i, h,
                         [&](const torch::Tensor& t) { return torch::relu(m->layers[i](t)); });
    torch::mse_loss(h, y).backward();
    model.step(1.0);
  };
  one_step();
  g_group->stats().reset();
  model.reset_peak_memory();
  for (auto _ : state) one_step();
  state.counters["ranks"] = g_group->size();
  state.counters["MB_sent/step"] =
      g_group->stats().total_all().wire_bytes / 1e6 / static_cast<double>(state.iterations());
  state.counters["model_state_MB"] = model.memory().total() / 1e6;
  const auto peak = model.peak_memory();
  state.counters["device_peak_MB"] = (peak.params + peak.grads + peak.optimizer) / 1e6;
  state.SetLabel(std::string("zero") + std::to_string(sc.zero_stage) +
                 (sc.cpu_offload ? "+offload" : "") + (sc.offload_params ? "+stream" : ""));
}

}  // namespace

BENCHMARK(BM_ShardedStep)
    ->Args({0, 0, 0})
    ->Args({3, 0, 0})
    ->Args({3, 1, 0})
    ->Args({3, 1, 1})
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

int main(int argc, char** argv) {
  shardlm::core::MpiSession mpi(&argc, &argv);
  g_group = std::make_shared<MpiGroup>();
  benchmark::Initialize(&argc, argv);
  shardlm::bench::run_on_all_ranks();
  benchmark::Shutdown();
  g_group.reset();
  return 0;
}
