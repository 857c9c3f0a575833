// Validator (see validator.h).
#include "runtime/validator.h"

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "core/fs.h"

namespace shardlm::runtime {

namespace fs = std::filesystem;

Validator::Validator(const ValidationConfig& val, const data::LoaderConfig& train_data,
                     const core::Env& env, std::string run_dir)
    : cfg_(val), env_(env), run_dir_(std::move(run_dir)), early_(val.early_stopping) {
  data::LoaderConfig vcfg = train_data;
  vcfg.split = val.split;
  vcfg.shuffle = false;
  vcfg.prefetch = 2;
  loader_ = std::make_unique<data::Loader>(vcfg, env.rank, env.world_size);
  start_ = loader_->state();
}

Validator::Outcome Validator::run(int64_t step, model::GPT& model, Engine& engine,
                                  parallel::ProcessGroup& group, torch::Device device,
                                  c10::ScalarType amp) {
  last_step_ = step;
  loader_->load_state(start_);  // the same batches every time
  engine.gather_all();          // ZeRO-3: the root unit's parameters
  Outcome out;
  EvalResult& r = out.result;
  r = evaluate(model, *loader_, cfg_.batches, &group, device, amp, engine.block_runner(false));
  last_loss_ = r.loss;
  const std::string& metric = cfg_.early_stopping.metric;
  double value = metric == "val_acc" ? r.top1 : metric == "val_ppl" ? r.perplexity : r.loss;
  out.best = early_.update(step, value);
  if (env_.is_root()) {
    nlohmann::json row = {{"step", step},    {"loss", r.loss}, {"perplexity", r.perplexity},
                          {"top1", r.top1},  {"top5", r.top5}, {"tokens", r.tokens},
                          {"best", out.best}};
    std::ofstream(fs::path(run_dir_) / "validation.jsonl", std::ios::app) << row.dump() << "\n";
  }
  return out;
}

std::string Validator::stop_reason(int64_t step) const {
  return fmt::format(
      "early stopping at step {}: no improvement of {} by more than {} in {} validations (best "
      "{:.4f} at step {})",
      step, cfg_.early_stopping.metric, cfg_.early_stopping.min_delta,
      early_.validations_without_improvement(), early_.best(), early_.best_step());
}

std::string Validator::write_report(const nlohmann::json& summary) const {
  if (!env_.is_root()) return {};
  nlohmann::json rows = nlohmann::json::array();
  std::ifstream in(fs::path(run_dir_) / "validation.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  nlohmann::json report = summary;
  report["validations"] = rows;
  core::write_file_atomic<core::DataError>((fs::path(run_dir_) / "validation_report.json").string(),
                                           report.dump(2) + "\n");
  std::string table =
      "  step |   loss   |   ppl    | top-1  | top-5\n  "
      "------+----------+----------+--------+-------\n";
  for (const auto& r : rows)
    table += fmt::format("  {:>5} | {:8.4f} | {:8.2f} | {:5.1f}% | {:5.1f}%{}\n",
                         r["step"].get<int64_t>(), r["loss"].get<double>(),
                         r["perplexity"].get<double>(), 100 * r["top1"].get<double>(),
                         100 * r["top5"].get<double>(), r["best"].get<bool>() ? "  best" : "");
  core::write_file_atomic<core::DataError>((fs::path(run_dir_) / "validation_report.txt").string(),
                                           table);
  return table;
}

}  // namespace shardlm::runtime
