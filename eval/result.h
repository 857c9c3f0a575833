// What running a task on a model produces, and how results print: the table of
// `shardlm eval run`, its JSON, and the comparison report of `eval compare`
// (Markdown + JSON, paired bootstrap per metric). Torch-free.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/stats.h"

namespace shardlm::eval {

struct MetricResult {
  std::string name;  // "perplexity", "acc", "bleu", ...
  double value = 0;  // over all items
  Interval ci;       // bootstrap 95% interval (ci.valid false: none)
  bool higher_is_better = true;
  Decomposable data;  // per-item statistics (empty: not resampled, e.g. distinct-n)
};

struct TaskResult {
  std::string name, kind;
  int64_t items = 0;  // scored units: texts, rows, questions, prompts
  double tokens = 0;  // perplexity: tokens scored (0 for other kinds)
  double seconds = 0;
  std::vector<MetricResult> metrics;
  // Per item, for people to read: {"prompt", "output", ("references" | "answers"), ...}.
  nlohmann::json samples = nlohmann::json::array();
  // perplexity: next-token accuracy by position and calibration (TokenDetail::to_json).
  nlohmann::json detail;

  const MetricResult* metric(const std::string& name) const;
};

struct ModelResults {
  std::string label;  // what the report calls the model ("a", or its path)
  std::string path;
  std::vector<TaskResult> tasks;
};

// {"model", "suite", "tasks": [{"name", "kind", "items", "seconds", "metrics":
// {name: {"value", "ci95": [lo, hi] | null, "higher_is_better"}}, "samples",
// "detail" (perplexity tasks)}]}
nlohmann::json results_json(const ModelResults& r, const std::string& suite);
// A plain-text table: task, metric, value, 95% CI.
std::string results_table(const ModelResults& r);

struct CompareOptions {
  BootstrapOptions bootstrap;
  int samples_per_task = 3;  // generated samples shown side by side
  // A winner is marked only on tasks with at least this many items: a percentile
  // bootstrap over a handful of items is too coarse to trust.
  int64_t min_items_for_winner = 10;
};
// The comparison report: per task a Markdown table (one row per metric, one
// column per model with value and 95% CI); with two or more models the first is
// the baseline and every other gets a paired-bootstrap difference, and a winner
// is marked (**bold**) only where the paired intervals against every other model
// exclude 0 and the task has at least min_items_for_winner items. Generated samples
// follow side by side. Throws DataError when the models ran different tasks.
std::string compare_markdown(const std::vector<ModelResults>& models, const std::string& suite,
                             const CompareOptions& o = {});
nlohmann::json compare_json(const std::vector<ModelResults>& models, const std::string& suite,
                            const CompareOptions& o = {});

}  // namespace shardlm::eval
