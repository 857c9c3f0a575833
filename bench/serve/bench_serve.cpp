// `shardlm serve` under load, static batching vs continuous batching in one run.
// Requests arrive as a Poisson process at each of several rates; prompt and
// output lengths are drawn from fixed distributions with a fixed seed, so both
// schedulers get exactly the same requests at the same times. Each request is a
// streamed greedy /v1/completions (token-id prompt, ignore_eos, response cache
// off) sent by its own client thread at its arrival time; the client notes when
// each chunk arrives. Per scheduler and rate: output tokens/s, requests/s,
// time to first token and time per output token (p50, p99) and end-to-end p99.
// Then the prefix scenario: 80% of the requests start with one shared 64-token
// prefix; the prompt tokens the model computed (shardlm_serve_prompt_tokens_
// computed_total) are compared with and without prefix caching (and static).
// Model: the CPU benchmark model (4 layers, 4 heads, width 256, vocabulary
// 4096) with random weights; a tokenizer is trained on --corpus only to serve
// ids as text.
//   bench_serve --corpus FILE [--rates 2,4,8] [--requests 40] [--threads 2]
//               [--max-batch 16] [--seed 1] [--prefix-rate 4]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "data/tokenizer.h"
#include "model/safetensors.h"
#include "serve/client.h"
#include "serve/server.h"

using namespace shardlm;
namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string corpus;
  std::vector<double> rates = {2, 4, 8};
  int requests = 40, threads = 2, max_batch = 16;
  uint64_t seed = 1;
  double prefix_rate = 4;
};

std::vector<double> parse_list(const std::string& s) {
  std::vector<double> v;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) v.push_back(std::stod(x));
  return v;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--corpus")
      a.corpus = v;
    else if (k == "--rates")
      a.rates = parse_list(v);
    else if (k == "--requests")
      a.requests = std::stoi(v);
    else if (k == "--threads")
      a.threads = std::stoi(v);
    else if (k == "--max-batch")
      a.max_batch = std::stoi(v);
    else if (k == "--seed")
      a.seed = std::stoull(v);
    else if (k == "--prefix-rate")
      a.prefix_rate = std::stod(v);
    else
      throw std::runtime_error("unknown option " + k);
  }
  if (a.corpus.empty()) throw std::runtime_error("--corpus FILE is required");
  return a;
}

struct Request {
  double at = 0;  // seconds after the start
  std::vector<int64_t> prompt;
  int64_t max_tokens = 0;
};

// The workload: Poisson arrivals at `rate`; prompts of 16-192 tokens, outputs of
// 8-128 tokens, uniform; with `shared` > 0 that fraction starts with one common
// 64-token prefix.
std::vector<Request> workload(uint64_t seed, int n, double rate, double shared) {
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate);
  std::uniform_int_distribution<int64_t> plen(16, 192), olen(8, 128), id(10, 4000);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<int64_t> prefix(64);
  for (auto& t : prefix) t = id(rng);
  std::vector<Request> out;
  double t = 0;
  for (int i = 0; i < n; ++i) {
    Request r;
    t += gap(rng);
    r.at = t;
    const int64_t len = plen(rng);  // tokens after the shared prefix, when there is one
    if (u(rng) < shared) r.prompt = prefix;
    const int64_t target = static_cast<int64_t>(r.prompt.size()) + len;
    while (static_cast<int64_t>(r.prompt.size()) < target) r.prompt.push_back(id(rng));
    r.max_tokens = olen(rng);
    out.push_back(std::move(r));
  }
  return out;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * (v.size() - 1) + 0.5));
  return v[i];
}

// One run: a fresh server with `sched`, every request of `reqs` at its time.
json run(const std::string& dir, const Args& a, const std::string& sched, bool prefix_caching,
         const std::vector<Request>& reqs) {
  serve::ServeConfig cfg;
  cfg.port = 0;
  cfg.scheduler = sched;
  cfg.max_batch = a.max_batch;
  cfg.batch_wait_ms = 5;
  cfg.max_queue = 100000;
  cfg.cache_entries = 0;  // every request reaches the model
  cfg.prefix_caching = prefix_caching;
  cfg.io_threads = 2;
  auto metrics = std::make_shared<serve::ServeMetrics>();
  serve::EngineConfig ec = serve::engine_config(cfg);
  ec.threads = a.threads;
  auto engine = std::make_shared<serve::Engine>(dir, "", ec, metrics);
  serve::Server server(cfg, engine, metrics);
  server.start();
  const uint16_t port = server.port();

  struct Result {
    double ttft = 0, end = 0, done_at = 0;
    int64_t tokens = 0;
  };
  const auto t0 = Clock::now();
  std::vector<std::future<Result>> futs;
  for (const Request& r : reqs)
    futs.push_back(std::async(std::launch::async, [&, r] {
      std::this_thread::sleep_until(t0 + std::chrono::duration<double>(r.at));
      json body = {{"prompt", r.prompt}, {"max_tokens", r.max_tokens},
                   {"temperature", 0},   {"ignore_eos", true},
                   {"stream", true},     {"stream_options", {{"include_usage", true}}}};
      auto res = serve::client::http_request(port, "POST", "/v1/completions", body.dump());
      if (res.status != 200) throw std::runtime_error("HTTP " + std::to_string(res.status));
      Result out;
      out.done_at = std::chrono::duration<double>(Clock::now() - t0).count();
      out.end = res.chunk_seconds.empty() ? 0 : res.chunk_seconds.back();
      // The first chunk with text is the first token (chunks are one event each).
      for (size_t i = 0; i < res.chunks.size(); ++i)
        if (res.chunks[i].find("\"text\":\"") != std::string::npos &&
            res.chunks[i].find("\"text\":\"\"") == std::string::npos) {
          out.ttft = res.chunk_seconds[i];
          break;
        }
      for (const auto& e : serve::client::sse_events(res.body))
        if (e.find("\"usage\"") != std::string::npos)
          out.tokens = json::parse(e)["usage"]["completion_tokens"].get<int64_t>();
      return out;
    }));
  std::vector<double> ttft, tpot, e2e;
  int64_t tokens = 0;
  double last = 0;
  for (auto& f : futs) {
    Result r = f.get();
    ttft.push_back(r.ttft);
    if (r.tokens > 1) tpot.push_back((r.end - r.ttft) / static_cast<double>(r.tokens - 1));
    e2e.push_back(r.end);
    tokens += r.tokens;
    last = std::max(last, r.done_at);
  }
  const double span = last - reqs.front().at;
  int64_t prompt_tokens = 0;
  for (const auto& r : reqs) prompt_tokens += static_cast<int64_t>(r.prompt.size());
  json out = {{"scheduler", sched},
              {"prefix_caching", prefix_caching},
              {"requests", reqs.size()},
              {"output_tokens", tokens},
              {"seconds", span},
              {"tokens_per_s", static_cast<double>(tokens) / span},
              {"requests_per_s", static_cast<double>(reqs.size()) / span},
              {"ttft_p50", pct(ttft, 50)},
              {"ttft_p99", pct(ttft, 99)},
              {"tpot_p50", pct(tpot, 50)},
              {"tpot_p99", pct(tpot, 99)},
              {"e2e_p99", pct(e2e, 99)},
              {"prompt_tokens", prompt_tokens},
              {"prompt_tokens_computed", metrics->prompt_tokens_computed.load()},
              {"steps", metrics->batches.load()}};
  server.stop();
  return out;
}

void print(const json& r, double rate) {
  std::printf(
      "%-10s rate %5.1f/s  %7.1f tok/s %5.2f req/s  TTFT p50 %6.3f p99 %6.3f s  TPOT p50 %6.4f "
      "p99 %6.4f s  e2e p99 %6.2f s  prefill computed %lld of %lld\n",
      r["scheduler"].get<std::string>().c_str(), rate, r["tokens_per_s"].get<double>(),
      r["requests_per_s"].get<double>(), r["ttft_p50"].get<double>(), r["ttft_p99"].get<double>(),
      r["tpot_p50"].get<double>(), r["tpot_p99"].get<double>(), r["e2e_p99"].get<double>(),
      static_cast<long long>(r["prompt_tokens_computed"].get<uint64_t>()),
      static_cast<long long>(r["prompt_tokens"].get<int64_t>()));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  torch::set_num_threads(a.threads);
  std::ifstream in(a.corpus);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str().substr(0, 1 << 20);
  if (text.empty()) throw std::runtime_error(a.corpus + ": empty or missing");

  const std::string dir =
      (fs::temp_directory_path() / ("shardlm_bench_serve_" + std::to_string(::getpid()))).string();
  data::TokenizerTrainOptions o;
  o.vocab_size = 4096;
  o.progress = false;
  data::Tokenizer tok = data::train_tokenizer_on_texts(o, {text});
  model::ModelConfig c;
  c.vocab_size = 4096;
  c.context_length = 512;
  c.n_layer = 4;
  c.n_head = 4;
  c.d_model = 256;
  c.positional = "rope";
  torch::manual_seed(0);
  model::GPT m(c);
  model::save_safetensors(m, dir);
  tok.save(dir + "/tokenizer.json");

  json all = json::array();
  for (double rate : a.rates) {
    const auto reqs = workload(a.seed, a.requests, rate, 0);
    json st = run(dir, a, "static", false, reqs);
    print(st, rate);
    json co = run(dir, a, "continuous", true, reqs);
    print(co, rate);
    std::printf(
        "  ratio tokens/s continuous / static: %.2fx; TTFT p99 %.2fx lower; e2e p99 %.2fx lower\n",
        co["tokens_per_s"].get<double>() / st["tokens_per_s"].get<double>(),
        st["ttft_p99"].get<double>() / std::max(1e-9, co["ttft_p99"].get<double>()),
        st["e2e_p99"].get<double>() / std::max(1e-9, co["e2e_p99"].get<double>()));
    all.push_back({{"rate", rate}, {"static", st}, {"continuous", co}});
  }
  // The prefix scenario: 80% share a 64-token prefix.
  const auto reqs = workload(a.seed + 1, a.requests, a.prefix_rate, 0.8);
  int64_t shared = 0, total = 0;
  for (const auto& r : reqs) total += static_cast<int64_t>(r.prompt.size());
  {
    // The prefix: the first 64 tokens that most prompts start with.
    std::map<std::vector<int64_t>, int> heads;
    for (const auto& r : reqs)
      ++heads[std::vector<int64_t>(r.prompt.begin(), r.prompt.begin() + 64)];
    int most = 0;
    for (const auto& [h, k] : heads) most = std::max(most, k);
    shared = int64_t{64} * most;
  }
  json off = run(dir, a, "continuous", false, reqs);
  print(off, a.prefix_rate);
  json on = run(dir, a, "continuous", true, reqs);
  print(on, a.prefix_rate);
  const double fell = 1.0 - static_cast<double>(on["prompt_tokens_computed"].get<uint64_t>()) /
                                static_cast<double>(off["prompt_tokens_computed"].get<uint64_t>());
  std::printf(
      "prefix: %lld of %lld prompt tokens (%.1f%%) are the shared prefix (its first occurrence "
      "must be computed); prefill computed fell by %.1f%% with prefix caching (%llu vs %llu "
      "tokens); goal >= the shared fraction\n",
      static_cast<long long>(shared), static_cast<long long>(total),
      100.0 * static_cast<double>(shared) / static_cast<double>(total), 100.0 * fell,
      static_cast<unsigned long long>(on["prompt_tokens_computed"].get<uint64_t>()),
      static_cast<unsigned long long>(off["prompt_tokens_computed"].get<uint64_t>()));
  all.push_back({{"prefix",
                  {{"shared_tokens", shared},
                   {"prompt_tokens", total},
                   {"without_prefix_caching", off},
                   {"with_prefix_caching", on}}}});
  std::printf("%s\n", all.dump().c_str());
  fs::remove_all(dir);
  return 0;
}
