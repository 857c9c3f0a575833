// Generation speed of the CPU benchmark model (4 layers, 4 heads, width 256,
// vocabulary 4096, context 128): greedy decoding of 112 new tokens after a
// 16-token prompt, with the KV cache (one position per step) and without it (the
// whole sequence recomputed each step), batch 1 and batch 8, in the same run.
// Threads: $OMP_NUM_THREADS (else LibTorch's default). Counter: new tokens/s.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>

#include "bench/model/bench_config.h"
#include "model/generate.h"

using namespace shardlm::model;
using shardlm::model::bench::bench_config;

namespace {

constexpr int64_t kPrompt = 16, kNew = 112;

// Args: batch, cache (1) or recompute (0).
void BM_Generate(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const bool cache = state.range(1) == 1;
  torch::manual_seed(0);
  GPT m(bench_config());
  GenerationConfig g;
  g.max_new_tokens = kNew;
  g.use_cache = cache;
  Generator gen(m, g);
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t b = 0; b < batch; ++b) {
    torch::Tensor ids = torch::randint(0, 4096, {kPrompt}, torch::kLong);
    prompts.emplace_back(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + kPrompt);
  }
  int64_t produced = 0;
  for (auto _ : state) {
    GenerationOutput out = gen.generate(prompts);
    produced += out.new_tokens;
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(produced), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(cache ? "KV cache" : "recompute") + ", batch " +
                 std::to_string(batch));
}
BENCHMARK(BM_Generate)
    ->ArgsProduct({{1, 8}, {1, 0}})
    ->ArgNames({"batch", "cache"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

// SHARDLM_PROFILE=trace.json: one cached generation at batch 1 under LibTorch's
// profiler (a chrome://tracing file, per-op times), then exit.
void profile(const char* path) {
  torch::manual_seed(0);
  GenerationConfig g;
  g.max_new_tokens = kNew;
  Generator gen(GPT(bench_config()), g);
  std::vector<std::vector<int64_t>> prompt{std::vector<int64_t>(kPrompt, 7)};
  gen.generate(prompt);
  torch::autograd::profiler::RecordProfile guard(path);
  gen.generate(prompt);
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
