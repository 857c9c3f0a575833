// Validation during training: the same batches of the validation split every
// time, the metrics of runtime::evaluate, early stopping on them, and the run's
// validation record (RUN_DIR/validation.jsonl, validation_report.{json,txt},
// written by rank 0).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/env.h"
#include "data/loader.h"
#include "runtime/early_stopping.h"
#include "runtime/engine.h"
#include "runtime/evaluate.h"
#include "runtime/train_config.h"

namespace shardlm::runtime {

class Validator {
 public:
  // Opens the validation split (`val.split`) with the training data's settings.
  Validator(const ValidationConfig& val, const data::LoaderConfig& train_data, const core::Env& env,
            std::string run_dir);

  struct Outcome {
    EvalResult result;
    bool best = false;  // a new best of the early-stopping metric
  };
  // Collective: evaluates the model at `step` (ZeRO-3 units gathered by the
  // engine), updates early stopping, appends to validation.jsonl (rank 0).
  Outcome run(int64_t step, model::GPT& model, Engine& engine, parallel::ProcessGroup& group,
              torch::Device device, c10::ScalarType amp);

  EarlyStopping& early_stopping() { return early_; }
  bool should_stop() const { return early_.should_stop(); }
  int64_t last_step() const { return last_step_; }
  std::optional<double> last_loss() const { return last_loss_; }
  // The early stop's line for the log.
  std::string stop_reason(int64_t step) const;

  // validation_report.json / .txt from validation.jsonl, with `summary` (rank
  // 0); returns the table.
  std::string write_report(const nlohmann::json& summary) const;

 private:
  ValidationConfig cfg_;
  core::Env env_;
  std::string run_dir_;
  std::unique_ptr<data::Loader> loader_;
  data::LoaderState start_;
  EarlyStopping early_;
  int64_t last_step_ = -1;
  std::optional<double> last_loss_;
};

}  // namespace shardlm::runtime
