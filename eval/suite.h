// An evaluation suite: one TOML file naming the tasks to run on a model.
// Torch-free (read by `shardlm eval run` / `eval compare` before any model loads).
//
//   [suite]
//   name = "smoke"
//   tasks = ["text_ppl", "facts"]      # run in this order
//   bootstrap = 1000                   # resamples for the 95% intervals
//   seed = 1234
//
//   [task.text_ppl]
//   kind = "perplexity"                # perplexity | choice | factual | generation
//   files = ["text.txt"]               # raw text ...   (or data = "<prepared dir>", split = "val")
//
//   [task.facts]
//   kind = "factual"
//   file = "facts.jsonl"
//   [task.facts.generate]              # model::GenerationConfig keys (docs/generation.md)
//   max_new_tokens = 16
//
// Relative paths are relative to the suite file's directory. A [task.*] table
// not named in `tasks` is read and checked but not run. Every key is
// checked: a typo or a key that the task's kind does not use is a ConfigError
// naming the file and line; docs/evaluation.md lists the keys of each kind.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "eval/bleu.h"
#include "model/generation_config.h"

namespace shardlm::eval {

struct TaskConfig {
  std::string name;  // the [task.<name>] table
  std::string kind;  // perplexity | choice | factual | generation

  // perplexity over a prepared dataset (data + split) ...
  std::string data;
  std::string split = "val";
  int64_t batch_size = 8;
  int64_t seq_len = 0;      // 0: the model's context_length
  int64_t max_batches = 0;  // 0: one pass over the split
  // ... or over raw text files (sliding window)
  std::vector<std::string> files;
  int64_t window = 0;      // tokens per forward; 0: the model's context_length
  int64_t stride = 0;      // new tokens scored per window; 0: window / 2
  bool prefix_eos = true;  // condition the first token on EOS, so every token counts

  // choice, factual, generation: a JSONL file (formats in docs/evaluation.md)
  std::string file;
  int64_t limit = 0;  // 0: every line
  // factual, generation: how to generate (greedy by default)
  model::GenerationConfig generate;
  // generation: which metrics (bleu, chrf need "references" in every line)
  std::vector<std::string> metrics;
  BleuConfig bleu;

  static TaskConfig from(const core::ConfigSection& s);  // name is set by the caller
  void validate() const;
};

struct SuiteConfig {
  std::string name = "suite";
  std::string file;  // the TOML it came from
  std::vector<TaskConfig> tasks;
  int bootstrap = 1000;
  int64_t seed = 1234;

  // Parses and validates `path` (+ `key=value` overrides); relative task paths
  // are resolved against its directory. ConfigError names the file, the key and
  // what was expected (an unknown kind, a missing file, an unknown key).
  static SuiteConfig load(const std::string& path, const std::vector<std::string>& overrides = {});
};

}  // namespace shardlm::eval
