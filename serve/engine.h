// Engine: the one inference thread that owns the model. Requests (Jobs) wait in
// a bounded queue; two schedulers run them (EngineConfig::scheduler):
//   - "continuous" (default): serve/continuous.h. Every decode step admits
//     waiting requests into the running batch within a token budget (long
//     prompts in chunks) and retires finished ones; keys and values live in a
//     paged, bounded KV cache whose full blocks are shared between requests with
//     the same prefix (serve/scheduler.h, serve/block_pool.h, serve/paged_kv.h).
//     Each choice samples from its own generator, so a seeded request gives the
//     same tokens whatever else runs beside it.
//   - "static": the thread takes the oldest request, waits up to batch_wait_ms
//     for more with the same SamplingParams::batch_key() until max_batch rows,
//     and decodes them together with model::Generator until the last row ends.
// Per-row limits (max_tokens, stop strings through model::TextStream, EOS,
// cancellation) are applied here. This header is torch-free so that the HTTP
// layer compiles without LibTorch; engine.cpp and continuous.cpp hold the model.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "serve/metrics.h"
#include "serve/protocol.h"

namespace shardlm::serve {

struct EngineConfig {
  std::string scheduler = "continuous";  // or "static" (batch by batch, model::Generator)
  int max_batch = 8;      // rows per batch (static); sequences running at once (continuous)
  int batch_wait_ms = 5;  // static: how long the first job waits for others
  int max_queue = 256;    // jobs waiting; submit() refuses more
  // ---- continuous: the paged KV cache and the step budget
  int block_size = 16;                   // tokens per KV block
  int kv_blocks = 0;                     // blocks in the pool; 0 = max_batch full contexts
  int64_t max_num_batched_tokens = 512;  // tokens computed per step (prefill chunks + decodes)
  bool prefix_caching = true;            // share full prompt blocks between requests
  std::string device = "cpu";
  int threads = 0;  // LibTorch intra-op threads; 0 = its default
};

// The batching and KV-cache settings of `cfg` for the engine (device and threads
// are the caller's).
inline EngineConfig engine_config(const ServeConfig& cfg) {
  EngineConfig e;
  e.scheduler = cfg.scheduler;
  e.max_batch = cfg.max_batch;
  e.batch_wait_ms = cfg.batch_wait_ms;
  e.max_queue = cfg.max_queue;
  e.block_size = cfg.block_size;
  e.kv_blocks = cfg.kv_blocks;
  e.max_num_batched_tokens = cfg.max_num_batched_tokens;
  e.prefix_caching = cfg.prefix_caching;
  return e;
}

struct ModelInfo {
  std::string source;     // the weights file
  std::string format;     // "safetensors", "checkpoint", ...
  std::string tokenizer;  // the tokenizer file
  nlohmann::json config;
  int64_t parameters = 0;
  int64_t context_length = 0;
  int64_t vocab_size = 0;
  std::string scheduler;  // "continuous" or "static"
  int block_size = 0;     // continuous: the KV cache's blocks
  int kv_blocks = 0;
  int64_t kv_bytes = 0;          // the pool's keys and values (every layer)
  nlohmann::json chat_template;  // serve/chat.h: the model's, or the default for base models
};

struct ChoiceOutput {
  std::string text;
  std::string finish_reason;           // "stop" or "length"
  int64_t tokens = 0;                  // tokens generated for it (an EOS included)
  std::vector<TokenLogprob> logprobs;  // when the job asked: one per token of `text`
};

struct JobResult {
  std::vector<ChoiceOutput> choices;  // prompt-major: prompt p, sample s at p * n + s
  int64_t completion_tokens = 0;
  int64_t seed = -1;          // what sampling drew from (continuous: choice 0's; see continuous.h)
  int64_t cached_tokens = 0;  // prompt tokens whose KV came from the prefix cache
  int64_t computed_tokens = 0;  // tokens the model computed (prefill and decode, every choice)
  std::string error;            // non-empty: generation failed (the server answers 500)
};

struct Job {
  std::vector<std::vector<int64_t>> prompts;  // token ids, non-empty, ids < vocab
  int64_t n = 1;
  SamplingParams params;
  // Called on the inference thread with each choice's new text as soon as it is
  // final (whole UTF-8 characters, never part of a stop string) and, when
  // params.logprobs >= 0, the tokens that text completes (text may then be ""
  // while a token's entry is not). May be empty.
  std::function<void(size_t choice, const std::string& text,
                     const std::vector<TokenLogprob>& logprobs)>
      on_text;
  // Called exactly once on the inference thread (or in stop() for jobs never run).
  std::function<void(JobResult)> on_done;
  // Set from any thread to end the job's rows at their next token.
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
  std::chrono::steady_clock::time_point submitted;  // set by Engine::submit (time to first token)

  int64_t rows() const { return static_cast<int64_t>(prompts.size()) * n; }
};

class Engine {
 public:
  // Loads the model and its tokenizer with load::load_model (a training
  // checkpoint, a safetensors or quantised model; `tokenizer_path`, or "" for the
  // one beside the model) and starts the inference thread. Throws
  // CheckpointError / ConfigError / DataError naming the path or field.
  Engine(const std::string& model_path, const std::string& tokenizer_path, EngineConfig cfg,
         std::shared_ptr<ServeMetrics> metrics);
  ~Engine();  // stop(false)
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a job; false when max_queue jobs are waiting or the engine is stopping
  // (the caller answers 503; on_done is not called).
  bool submit(Job job);
  // drain = true: finishes every queued and running job, then joins the thread.
  // drain = false: the running batch ends at its next token and queued jobs get
  // on_done with an error. Idempotent.
  void stop(bool drain);

  const ModelInfo& info() const;
  const data::Tokenizer& tokenizer() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardlm::serve
