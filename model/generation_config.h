// GenerationConfig: how model::Generator turns next-token distributions into
// text (strategy, truncation, penalties, stopping, seed). Torch-free, so the CLI,
// the server and a run's TOML ([generate] section) read it without LibTorch.
// docs/generation.md explains each option and when to use it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"

namespace shardlm::model {

struct GenerationConfig {
  // ---- strategy: "greedy" (argmax), "sample" (draw from the processed
  // distribution) or "beam" (beam search; deterministic)
  std::string strategy = "greedy";
  int64_t max_new_tokens = 64;
  // How many sequences per prompt: independent samples ("sample") or the n best
  // hypotheses ("beam", at most num_beams). "greedy" gives exactly one.
  int64_t num_return_sequences = 1;

  // ---- sampling ("sample" only; beam search and greedy ignore them)
  double temperature = 1.0;  // logits / temperature; 0 means greedy
  int64_t top_k = 0;         // keep the k most probable tokens; 0 = off
  double top_p = 1.0;        // keep the smallest set of mass >= top_p; 1 = off
  double min_p = 0.0;        // keep tokens with p >= min_p * p_max; 0 = off

  // ---- penalties (every strategy), applied to the logits before anything else
  double repetition_penalty =
      1.0;  // tokens already in prompt or output: logit / r if > 0, * r if < 0
  double frequency_penalty = 0.0;  // logit -= f * (times generated so far)
  double presence_penalty = 0.0;   // logit -= p * (generated at least once)

  // ---- beam search
  int64_t num_beams = 4;
  double length_penalty = 1.0;  // score = sum log p / length^length_penalty
  // true: a prompt is done once num_beams hypotheses are finished. false: go on
  // while a running beam could still beat the worst finished one (exact bound).
  bool early_stopping = true;

  // ---- stopping: a row ends at the first of these (the stopping token is kept)
  std::vector<int64_t> eos_ids;                            // any of these ids
  std::vector<std::vector<int64_t>> stop_token_sequences;  // output ends with one
  std::vector<std::string> stop_strings;  // decoded output contains one (needs a decoder)

  // ---- reproducibility and implementation
  int64_t seed = -1;      // >= 0: every generate() call draws from this seed; -1: a random seed
  bool use_cache = true;  // KV cache; false recomputes the whole sequence each step
  int64_t pad_id = 0;     // fills left padding and finished rows (always masked)

  // Reads the [generate] section; every key defaults to the value above
  // (stop_token_sequences is not a TOML key: ids go in eos_ids).
  static GenerationConfig from(const core::ConfigSection& s);
  // Throws ConfigError naming the first field that is wrong and what was expected.
  void validate() const;
  nlohmann::json to_json() const;

  bool sampling() const { return strategy == "sample" && temperature > 0; }
  bool beam() const { return strategy == "beam"; }
  bool has_penalties() const {
    return repetition_penalty != 1.0 || frequency_penalty != 0.0 || presence_penalty != 0.0;
  }
};

}  // namespace shardlm::model
