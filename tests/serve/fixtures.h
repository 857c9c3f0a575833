// Fixtures of the serve tests: a tiny model and tokenizer on disk, an
// in-process server on a free port, model::Generator's answer alone to compare
// with, and a Prometheus reader. Header-only; each test file includes it once.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <future>
#include <regex>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>
#include <csignal>

#include "data/tokenizer.h"
#include "load/model_bundle.h"
#include "model/generate.h"
#include "model/safetensors.h"
#include "serve/client.h"
#include "serve/server.h"

namespace serve_test {

using namespace shardlm;
using namespace shardlm::serve;
using shardlm::serve::client::http_request;
using shardlm::serve::client::HttpResult;
using json = nlohmann::json;
namespace fs = std::filesystem;

// ---- fixtures ---------------------------------------------------------------------------------

inline std::string corpus() {
  std::string s;
  const char* words[] = {"the", "cat",  "sat",  "on", "a",    "mat", "dog",  "ran",   "to", "old",
                         "man", "bird", "sang", "in", "tree", "and", "then", "slept", "by", "fire"};
  uint32_t x = 7;
  for (int i = 0; i < 3000; ++i) {
    x = x * 1103515245u + 12345u;
    s += words[(x >> 16) % 20];
    s += (i % 11 == 10) ? ".\n" : " ";
  }
  return s;
}

// A model directory (model.safetensors, config.json, tokenizer.json): `layers` x
// `width`, context `ctx`, random weights (init_std 0.1 keeps the top tokens apart,
// so greedy argmax is stable across batch shapes). Deterministic, so it is made
// once per build tree (in a temporary directory renamed into place: test
// processes may race) and reused.
inline std::string make_model(const std::string& name, int64_t layers, int64_t width, int64_t ctx,
                              int64_t extra_vocab = 0) {
  const std::string dir = std::string(SHARDLM_TEST_TMP) + "/serve_" + name;
  if (fs::exists(dir + "/tokenizer.json")) return dir;
  const std::string tmp = dir + ".tmp" + std::to_string(::getpid());
  fs::remove_all(tmp);
  data::TokenizerTrainOptions o;
  o.vocab_size = 300;
  o.threads = 1;
  o.progress = false;
  data::Tokenizer tok = data::train_tokenizer_on_texts(o, {corpus()});
  model::ModelConfig c;
  c.vocab_size = static_cast<int64_t>(tok.vocab_size()) + extra_vocab;  // padded past the tokenizer
  c.context_length = ctx;
  c.n_layer = layers;
  c.n_head = 2;
  c.d_model = width;
  c.positional = "rope";
  c.init_std = 0.1;
  torch::manual_seed(1);
  model::GPT m(c);
  model::save_safetensors(m, tmp);
  tok.save(tmp + "/tokenizer.json");
  std::error_code ec;
  fs::rename(tmp, dir, ec);  // another process may have won the race: fine
  if (ec) fs::remove_all(tmp);
  return dir;
}

inline const std::string& small_model() {
  static const std::string dir = make_model("small", 2, 32, 128);
  return dir;
}

// A server over small_model() on a free port, with its own engine and metrics.
struct Running {
  std::shared_ptr<ServeMetrics> metrics = std::make_shared<ServeMetrics>();
  std::shared_ptr<Engine> engine;
  std::unique_ptr<Server> server;
  explicit Running(ServeConfig cfg = {}, const std::string& dir = small_model()) {
    cfg.port = 0;
    engine = std::make_shared<Engine>(dir, "", engine_config(cfg), metrics);
    server = std::make_unique<Server>(cfg, engine, metrics);
    server->start();
  }
  uint16_t port() const { return server->port(); }
  HttpResult post(const std::string& path, const json& body) const {
    return http_request(port(), "POST", path, body.dump());
  }
};

// `s` as it reads after a trip through the server's JSON: invalid UTF-8 (a random
// model's byte tokens) becomes U+FFFD.
inline std::string valid_utf8(const std::string& s) {
  return json::parse(serve::dump(json(s))).get<std::string>();
}

// What model::Generator gives alone for `prompt` (greedy unless cfg says), as the
// server reports it: the text without the EOS token's, and the finish reason.
struct Expected {
  std::string text, finish;
  int64_t tokens = 0;
};
inline Expected generate_alone(const std::string& prompt, model::GenerationConfig cfg) {
  load::ModelBundle im = load::load_model(small_model());
  data::Tokenizer tok = std::move(im.tokenizer.value());
  cfg.eos_ids = {static_cast<int64_t>(*tok.eos_id())};
  cfg.pad_id = *tok.pad_id();
  model::Generator gen(im.model, cfg);
  auto ids32 = tok.encode(prompt);
  const auto seq = gen.generate({std::vector<int64_t>(ids32.begin(), ids32.end())}).sequences[0][0];
  std::vector<uint32_t> out;
  for (int64_t t : seq.tokens)
    if (t != cfg.eos_ids[0]) out.push_back(static_cast<uint32_t>(t));
  Expected e;
  e.text = valid_utf8(tok.decode_bytes(out));
  e.finish = seq.finish == model::FinishReason::kEos ? "stop" : "length";
  e.tokens = static_cast<int64_t>(seq.tokens.size());
  return e;
}

inline model::GenerationConfig greedy(int64_t n) {
  model::GenerationConfig g;
  g.max_new_tokens = n;
  return g;
}

// Sends the greedy requests (prompts[i], max_tokens[i]) at once and checks that
// each answer is what model::Generator gives for that prompt alone: batching
// must not change a row's text. Returns the parsed responses.
inline std::vector<json> expect_concurrent_greedy_equals_alone(
    Running& s, const std::vector<std::string>& prompts, const std::vector<int64_t>& max_tokens) {
  std::vector<std::future<HttpResult>> futs;
  for (size_t i = 0; i < prompts.size(); ++i)
    futs.push_back(std::async(std::launch::async, [&, i] {
      return s.post("/v1/completions",
                    {{"prompt", prompts[i]}, {"max_tokens", max_tokens[i]}, {"temperature", 0}});
    }));
  std::vector<json> out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    HttpResult r = futs[i].get();
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200) continue;
    const Expected want = generate_alone(prompts[i], greedy(max_tokens[i]));
    json j = json::parse(r.body);
    EXPECT_EQ(j["choices"][0]["text"], want.text) << prompts[i];
    EXPECT_EQ(j["choices"][0]["finish_reason"], want.finish) << prompts[i];
    EXPECT_EQ(j["usage"]["completion_tokens"], want.tokens) << prompts[i];
    out.push_back(std::move(j));
  }
  return out;
}

#ifdef SHARDLM_BINARY
// `shardlm serve ARGS...` as a child process: its stdout is read line by line;
// start() returns once it printed its "listening on" line (or fails the test).
struct ServeProcess {
  pid_t pid = -1;
  FILE* out = nullptr;
  uint16_t port = 0;
  std::string first_line;
  bool terminated = false;

  // `env` ("NAME=VALUE" strings) is set in the child only.
  bool start(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    int fds[2];
    if (::pipe(fds) != 0) return false;
    pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      for (const std::string& e : env) ::putenv(const_cast<char*>(e.c_str()));
      std::vector<char*> argv{const_cast<char*>(SHARDLM_BINARY), const_cast<char*>("serve")};
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(SHARDLM_BINARY, argv.data());
      std::_Exit(127);
    }
    ::close(fds[1]);
    out = ::fdopen(fds[0], "r");
    first_line = next_line();
    std::smatch m;
    if (!std::regex_search(first_line, m, std::regex("listening on http://127.0.0.1:([0-9]+)"))) {
      ADD_FAILURE() << "shardlm serve did not start: " << first_line;
      return false;
    }
    port = static_cast<uint16_t>(std::stoi(m[1]));
    return true;
  }
  std::string next_line() {
    char line[1024];
    return out && std::fgets(line, sizeof line, out) ? std::string(line) : std::string();
  }
  // SIGTERM (unless already sent with terminate()), then the exit status
  // (waitpid's) and the rest of stdout.
  void terminate() {
    if (pid > 0 && !terminated) ::kill(pid, SIGTERM);
    terminated = true;
  }
  int stop(std::string* rest = nullptr) {
    if (pid <= 0) return -1;
    terminate();
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
    std::string text;
    for (std::string l = next_line(); !l.empty(); l = next_line()) text += l;
    if (rest) *rest = text;
    std::fclose(out);
    out = nullptr;
    return status;
  }
  ~ServeProcess() { stop(); }
};
#endif

inline double metric(const std::string& text, const std::string& name) {
  std::smatch m;
  const std::regex re("\n" + name + " ([0-9.e+-]+)");
  const std::string t = "\n" + text;
  return std::regex_search(t, m, re) ? std::stod(m[1]) : -1;
}

}  // namespace serve_test
