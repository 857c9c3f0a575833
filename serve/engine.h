// Engine: the one inference thread that owns the model. Requests (Jobs) wait in a
// bounded queue; the thread takes the oldest, waits up to batch_wait_ms for more
// with the same SamplingParams::batch_key() until max_batch rows are gathered,
// and decodes them together with model::Generator (KV cache, left-padded rows of
// different lengths). Per-row limits that Generator applies batch-wide are
// applied here through its token callback: each row's max_tokens, stop strings
// (model::TextStream) and cancellation. This header is torch-free so that the
// HTTP layer compiles without LibTorch; engine.cpp holds the model.
#pragma once

#include <atomic>
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
  int max_batch = 8;      // rows per batch
  int batch_wait_ms = 5;  // how long the first job waits for others
  int max_queue = 256;    // jobs waiting; submit() refuses more
  std::string device = "cpu";
  int threads = 0;  // LibTorch intra-op threads; 0 = its default
};

// The batching settings of `cfg` (max_batch, batch_wait_ms, max_queue) for the engine.
inline EngineConfig engine_config(const ServeConfig& cfg) {
  EngineConfig e;
  e.max_batch = cfg.max_batch;
  e.batch_wait_ms = cfg.batch_wait_ms;
  e.max_queue = cfg.max_queue;
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
};

struct ChoiceOutput {
  std::string text;
  std::string finish_reason;  // "stop" or "length"
  int64_t tokens = 0;         // tokens generated for it (an EOS included)
};

struct JobResult {
  std::vector<ChoiceOutput> choices;  // prompt-major: prompt p, sample s at p * n + s
  int64_t completion_tokens = 0;
  std::string error;  // non-empty: generation failed (the server answers 500)
};

struct Job {
  std::vector<std::vector<int64_t>> prompts;  // token ids, non-empty, ids < vocab
  int64_t n = 1;
  SamplingParams params;
  // Called on the inference thread with each choice's new text as soon as it is
  // final (whole UTF-8 characters, never part of a stop string). May be empty.
  std::function<void(size_t choice, const std::string& text)> on_text;
  // Called exactly once on the inference thread (or in stop() for jobs never run).
  std::function<void(JobResult)> on_done;
  // Set from any thread to end the job's rows at their next token.
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);

  int64_t rows() const { return static_cast<int64_t>(prompts.size()) * n; }
};

class Engine {
 public:
  // Loads the model with load::load_model (a training checkpoint, a quantised or
  // safetensors model) and the tokenizer (`tokenizer_path`, or "" for the one
  // found beside the model, load::find_tokenizer), then
  // starts the inference thread. Throws CheckpointError / ConfigError / DataError
  // naming the path or field.
  Engine(const std::string& model_path, const std::string& tokenizer_path, EngineConfig cfg,
         std::shared_ptr<ServeMetrics> metrics);
  ~Engine();  // stop(false)
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a job; false when the queue is full or the engine is stopping (the
  // caller answers 503; on_done is not called).
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
