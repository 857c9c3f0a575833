// Size and speed of compressed models: the CPU benchmark model (4 layers, 4 heads,
// width 256, vocabulary 4096, context 128) in fp32 (the baseline, measured in the
// same run), INT8 and INT4 (group 64) run dequantised-at-load and on-the-fly, and
// 50 % of the MLP neurons pruned, and INT8 with the embeddings quantised too. Each variant: weights
// file size (counter file_MB, the directory compress writes) and greedy generation at batch 1 with
// the KV cache, 112 new tokens after a 16-token prompt (counter tokens/s).
// Threads: $OMP_NUM_THREADS (else LibTorch's default).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <unistd.h>
#include <filesystem>

#include "bench/model/bench_config.h"
#include "compress/io.h"
#include "compress/prune.h"
#include "compress/quantize.h"
#include "model/generate.h"
#include "model/safetensors.h"

using namespace shardlm::model;
namespace mc = shardlm::model::compress;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kPrompt = 16, kNew = 112;
const char* kNames[] = {"fp32",
                        "int8 dequantized",
                        "int8 on_the_fly",
                        "int4/64 dequantized",
                        "int4/64 on_the_fly",
                        "pruned neurons 50%",
                        "int8 + embeddings, dequantized"};

// The model of variant v and the bytes of its weights file.
GPT make_variant(int v, double* file_mb) {
  torch::manual_seed(0);
  GPT base(bench::bench_config());
  base->eval();
  const fs::path dir =
      fs::temp_directory_path() /
      ("shardlm_bench_compress_" + std::to_string(::getpid()) + "_" + std::to_string(v));
  GPT out = base;
  if (v == 0) {
    save_safetensors(base, dir.string());
  } else if (v <= 4 || v == 6) {
    mc::QuantConfig q;
    q.method = (v <= 2 || v == 6) ? "int8" : "int4";
    q.embeddings = v == 6;
    q.group_size = 64;
    mc::QuantizedModel qm = mc::quantize(base, q);
    mc::save_quantized(qm, dir.string());
    mc::install_runtime(qm, (v == 2 || v == 4) ? "on_the_fly" : "dequantized");
    out = qm.model;
  } else {
    mc::PruneConfig p;
    p.method = "neurons";
    p.sparsity = 0.5;
    out = mc::prune(base, p).model;
    save_safetensors(out, dir.string());
  }
  *file_mb = static_cast<double>(mc::weights_file_bytes(dir.string())) / 1e6;
  fs::remove_all(dir);
  out->eval();
  return out;
}

void BM_CompressedGenerate(benchmark::State& state) {
  const int v = static_cast<int>(state.range(0));
  double file_mb = 0;
  GPT m = make_variant(v, &file_mb);
  GenerationConfig g;
  g.max_new_tokens = kNew;
  Generator gen(m, g);
  torch::Tensor ids = torch::randint(0, 4096, {kPrompt}, torch::kLong);
  std::vector<std::vector<int64_t>> prompt{
      std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + kPrompt)};
  int64_t produced = 0;
  for (auto _ : state) produced += gen.generate(prompt).new_tokens;
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(produced), benchmark::Counter::kIsRate);
  state.counters["file_MB"] = file_mb;
  state.SetLabel(kNames[v]);
}
BENCHMARK(BM_CompressedGenerate)
    ->DenseRange(0, 6)
    ->ArgName("variant")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
