// Side by side in one run: requests/s and tokens/s of the HTTP server for C
// concurrent greedy completions with --max-batch 1 (every request decoded alone:
// the baseline) and with --max-batch B (batched), on the CPU benchmark model
// (4 layers, 4 heads, width 256, vocabulary 4096, random weights) and a BPE
// tokenizer trained on --corpus. Prints one JSON line per setting and the ratio.
//   bench_serve --corpus .cache/corpus/english.txt [--concurrency 32]
//               [--max-tokens 64] [--batch 8] [--threads 2] [--rounds 2]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include <unistd.h>

#include "data/tokenizer.h"
#include "model/safetensors.h"
#include "serve/client.h"
#include "serve/server.h"

using namespace shardlm;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Args {
  std::string corpus;
  int concurrency = 32, max_tokens = 64, batch = 8, threads = 2, rounds = 2;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--corpus")
      a.corpus = v;
    else if (k == "--concurrency")
      a.concurrency = std::stoi(v);
    else if (k == "--max-tokens")
      a.max_tokens = std::stoi(v);
    else if (k == "--batch")
      a.batch = std::stoi(v);
    else if (k == "--threads")
      a.threads = std::stoi(v);
    else if (k == "--rounds")
      a.rounds = std::stoi(v);
    else
      throw std::runtime_error("unknown option " + k);
  }
  if (a.corpus.empty()) throw std::runtime_error("--corpus FILE is required");
  return a;
}

// requests/s and tokens/s of `c` concurrent requests on a fresh server (best of rounds).
json measure(const std::string& dir, const Args& a, int max_batch,
             const std::vector<std::string>& prompts) {
  json best;
  for (int round = 0; round < a.rounds; ++round) {
    auto metrics = std::make_shared<serve::ServeMetrics>();
    serve::EngineConfig ec;
    ec.max_batch = max_batch;
    ec.batch_wait_ms = 5;
    ec.threads = a.threads;
    auto engine = std::make_shared<serve::Engine>(dir, "", ec, metrics);
    serve::ServeConfig cfg;
    cfg.port = 0;
    cfg.max_batch = max_batch;
    cfg.cache_entries = 0;  // every request reaches the model
    serve::Server server(cfg, engine, metrics);
    server.start();
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::future<int64_t>> futs;
    for (int i = 0; i < a.concurrency; ++i)
      futs.push_back(std::async(std::launch::async, [&, i] {
        json body = {{"prompt", prompts[i % prompts.size()]},
                     {"max_tokens", a.max_tokens},
                     {"temperature", 0},
                     {"ignore_eos", true}};
        auto r = serve::client::http_request(server.port(), "POST", "/v1/completions", body.dump());
        if (r.status != 200) throw std::runtime_error("HTTP " + std::to_string(r.status) + r.body);
        return json::parse(r.body)["usage"]["completion_tokens"].get<int64_t>();
      }));
    int64_t tokens = 0;
    for (auto& f : futs) tokens += f.get();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    json r = {{"max_batch", max_batch},
              {"requests", a.concurrency},
              {"tokens", tokens},
              {"seconds", s},
              {"requests_per_s", a.concurrency / s},
              {"tokens_per_s", static_cast<double>(tokens) / s},
              {"batches", metrics->batches.load()},
              {"mean_batch",
               static_cast<double>(metrics->batch_rows) / std::max<uint64_t>(1, metrics->batches)}};
    server.stop();
    if (best.is_null() || r["tokens_per_s"] > best["tokens_per_s"]) best = r;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  torch::set_num_threads(a.threads);
  std::ifstream in(a.corpus);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str().substr(0, 3 << 20);
  if (text.empty()) throw std::runtime_error(a.corpus + ": empty or missing");

  const std::string dir =
      (fs::temp_directory_path() / ("shardlm_bench_serve_" + std::to_string(::getpid()))).string();
  data::TokenizerTrainOptions o;
  o.vocab_size = 4096;
  o.progress = false;
  data::Tokenizer tok = data::train_tokenizer_on_texts(o, {text});
  model::ModelConfig c;
  c.vocab_size = 4096;
  c.context_length = 128;
  c.n_layer = 4;
  c.n_head = 4;
  c.d_model = 256;
  torch::manual_seed(0);
  model::GPT m(c);
  model::save_safetensors(m, dir);
  tok.save(dir + "/tokenizer.json");

  // Prompts: lines of the corpus, 4 to 40 tokens long.
  std::vector<std::string> prompts;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line) && prompts.size() < 256;) {
    const size_t n = tok.encode(line).size();
    if (n >= 4 && n <= 40) prompts.push_back(line);
  }
  const json base = measure(dir, a, 1, prompts);
  std::printf("%s\n", base.dump().c_str());
  const json ours = measure(dir, a, a.batch, prompts);
  std::printf("%s\n", ours.dump().c_str());
  std::printf("ratio tokens/s %.2fx (max_batch %d vs 1, %d concurrent, %d new tokens each)\n",
              ours["tokens_per_s"].get<double>() / base["tokens_per_s"].get<double>(), a.batch,
              a.concurrency, a.max_tokens);
  fs::remove_all(dir);
  return 0;
}
