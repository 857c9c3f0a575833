// ContinuousBatcher: the engine's continuous scheduler end to end. Jobs become
// sequences (one per choice) in a Scheduler over a BlockPool; step() runs one
// model step over the planned chunks (PagedKV), then chooses the next token of
// every sequence whose chunk reached its end, each with its own generator
// (seeded by the request: choice 0 from the seed, choice i from a seed mixed
// from (seed, i)), its own sampling
// parameters and penalties, through model::choose_tokens / apply_penalties, so
// a sequence's tokens never depend on what else is in the step. It applies
// EOS, stop strings (model::TextStream), max_tokens and cancellation, reports
// text and logprobs through the job's callbacks and updates the metrics. Runs
// on the engine's thread only; internal to serve (engine.cpp owns it).
#pragma once

#include <memory>
#include <string>

#include "data/tokenizer.h"
#include "model/generate.h"
#include "model/gpt.h"
#include "serve/engine.h"
#include "serve/metrics.h"

namespace shardlm::serve {

// How a request's tokens are chosen, as model::GenerationConfig says it: the
// strategy (greedy when the temperature is 0), temperature, top-k/p, min-p and
// the penalties. Both schedulers start from it; the caller adds the limits,
// the seed and the stop tokens.
model::GenerationConfig sampling_config(const SamplingParams& p);

class ContinuousBatcher {
 public:
  // Sizes the KV pool (cfg.kv_blocks, or max_batch full contexts); ConfigError
  // when it cannot hold one full context.
  ContinuousBatcher(model::GPT model, const data::Tokenizer& tok, const EngineConfig& cfg,
                    std::shared_ptr<ServeMetrics> metrics);
  ~ContinuousBatcher();
  ContinuousBatcher(const ContinuousBatcher&) = delete;
  ContinuousBatcher& operator=(const ContinuousBatcher&) = delete;

  // Takes a job: its sequences wait in the scheduler.
  void add(Job job);
  // No sequence waiting or running.
  bool idle() const;
  // Ends cancelled jobs, then plans and runs one step and handles its tokens.
  void step();
  // Ends every job: on_done with `error`, every block released.
  void cancel_all(const std::string& error);

  int block_size() const;
  int num_blocks() const;
  int64_t kv_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardlm::serve
