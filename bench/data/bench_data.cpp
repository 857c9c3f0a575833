// data/ micro-benchmarks: text cleaning (MB/s), random window reads from a shard,
// and the Loader's batches (tokens/s) in packed and documents mode.
//
// The dataset: $SHARDLM_BENCH_DATA (a prepared directory, e.g. the real corpus
// from run_bench.sh), else a synthetic one of 4M random tokens written to /tmp.
// The text for cleaning: $SHARDLM_BENCH_TEXT, else .cache/corpus/english.txt,
// else generated text.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "data/loader.h"
#include "data/manifest.h"
#include "data/shard.h"
#include "data/text_clean.h"

using namespace shardlm::data;
namespace fs = std::filesystem;

namespace {

// ---- inputs -------------------------------------------------------------------------

std::string dataset_dir() {
  if (const char* d = std::getenv("SHARDLM_BENCH_DATA")) return d;
  static std::string dir = [] {
    std::string d = (fs::temp_directory_path() / "shardlm_bench_data").string();
    if (Manifest::exists(d)) return d;
    fs::create_directories(d);
    std::mt19937 rng(1);
    std::uniform_int_distribution<uint32_t> tok(0, 4095), len(20, 600);
    Manifest m;
    m.dir = d;
    m.tokenizer_hash = "synthetic";
    m.vocab_size = 4096;
    m.eos_id = 0;
    ShardWriterOptions o;
    o.vocab_size = 4096;
    o.tokenizer_hash = "synthetic";
    o.split = "train";
    for (int s = 0; s < 4; ++s) {
      std::string name = "train-0000" + std::to_string(s) + ".h5";
      ShardWriter w((fs::path(d) / name).string(), o);
      while (w.tokens() < (1u << 20)) {
        std::vector<uint32_t> doc(len(rng));
        for (auto& t : doc) t = tok(rng);
        w.add(doc);
      }
      auto info = w.close(name);
      m.splits["train"].tokens += info.tokens;
      m.splits["train"].docs += info.docs;
      m.splits["train"].shards.push_back(info);
    }
    m.save(d);
    return d;
  }();
  return dir;
}

std::string text_sample() {
  const char* p = std::getenv("SHARDLM_BENCH_TEXT");
  std::string path = p ? p : ".cache/corpus/english.txt";
  std::ifstream in(path, std::ios::binary);
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string s;
  for (int i = 0; s.size() < (8u << 20); ++i)
    s += "In the beginning   was the word,\tand the word was " + std::to_string(i) + ".\r\n\n";
  return s;
}

// ---- cleaning -----------------------------------------------------------------------

void BM_CleanText(benchmark::State& state) {
  static const std::string text = text_sample();
  // Paragraph-sized documents, as prepare sees them.
  std::vector<std::string> docs;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find("\n\n", pos);
    end = end == std::string::npos ? text.size() : end + 2;
    docs.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  CleanConfig cfg;
  for (auto _ : state) {
    CleanStats st;
    for (auto d : docs) benchmark::DoNotOptimize(clean_text(d, cfg, st));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_CleanText)->Unit(benchmark::kMillisecond);

// ---- shard reads ------------------------------------------------------------------------

void BM_ShardRandomWindows(benchmark::State& state) {
  auto m = Manifest::load(dataset_dir());
  ShardReader r((fs::path(m.dir) / m.split("train").shards[0].file).string());
  const uint64_t T = static_cast<uint64_t>(state.range(0)) + 1;
  std::mt19937_64 rng(3);
  std::vector<uint32_t> buf(T);
  for (auto _ : state) {
    r.read(rng() % (r.tokens() - T), T, buf.data());
    benchmark::DoNotOptimize(buf.data());
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations() * (T - 1)),
                                                  benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ShardRandomWindows)->Arg(128)->Arg(1024);

// ---- loader -------------------------------------------------------------------------------

// Batches of (8, 128) as the CPU benchmark model consumes them; the consumer does
// nothing else, so this is the loader's ceiling.
void BM_Loader(benchmark::State& state, const char* mode, int64_t prefetch) {
  LoaderConfig c;
  c.path = dataset_dir();
  c.mode = mode;
  c.batch_size = 8;
  c.seq_len = state.range(0);
  c.prefetch = prefetch;
  Loader l(c, 0, 1);
  int64_t tokens = 0;
  for (auto _ : state) {
    Batch b = l.next();
    tokens += b.tokens;
    benchmark::DoNotOptimize(b.input_ids.data_ptr());
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.counters["wait_ms"] =
      l.stats().wait_seconds * 1e3 / static_cast<double>(state.iterations());
  state.counters["padding"] = l.stats().padding_fraction();
}
BENCHMARK_CAPTURE(BM_Loader, packed_prefetch4, "packed", 4)->Arg(128)->Arg(1024)->UseRealTime();
BENCHMARK_CAPTURE(BM_Loader, packed_sync, "packed", 0)->Arg(128)->UseRealTime();
BENCHMARK_CAPTURE(BM_Loader, documents_prefetch4, "documents", 4)
    ->Arg(128)
    ->Arg(1024)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Loader, documents_sync, "documents", 0)->Arg(128)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
