// Runs a suite's tasks on one model: loads the model and its tokenizer, scores
// each task (lm_metrics.h, bleu.h, text_metrics.h) and attaches a bootstrap 95%
// interval to every metric that is a function of per-item statistics.
// `shardlm eval run` prints what this returns; `eval compare` runs it per model.
#pragma once

#include <torch/torch.h>

#include <string>

#include "data/tokenizer.h"
#include "eval/result.h"
#include "eval/suite.h"
#include "model/gpt.h"

namespace shardlm::eval {

struct EvalModel {
  std::string path;   // what was passed (directory, .safetensors, run dir)
  std::string label;  // the report's name for it
  model::GPT model{nullptr};
  data::Tokenizer tok;
  std::string tokenizer_path;
  torch::Device device = torch::kCPU;
};

// load::load_model(path) with its tokenizer (`tokenizer`, else the one found
// beside the model). ConfigError when there is none or it does not fit the
// model's vocabulary.
EvalModel load_eval_model(const std::string& path, const std::string& tokenizer = "",
                          torch::Device device = torch::kCPU);

// One task. Throws DataError naming file:line for a malformed task file.
TaskResult run_task(const TaskConfig& task, EvalModel& m, const BootstrapOptions& bs);
// Every task of the suite, in order; `log` (may be empty) hears one line per task.
ModelResults run_suite(const SuiteConfig& suite, EvalModel& m,
                       const std::function<void(const std::string&)>& log = {});

}  // namespace shardlm::eval
