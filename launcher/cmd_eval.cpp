// `shardlm eval`: evaluate models and compare them (eval/).
//   eval run      a suite's tasks on one model: a table, or --json
//   eval compare  the suite on several models: report.md + report.json with
//                 paired-bootstrap intervals and samples side by side
//   eval rate     collect human ratings in the terminal (resumable)
//   eval ratings  summarise ratings (ratings.jsonl, or the Rate tab's SQLite
//                 database with --db, which --export writes as JSONL): mean
//                 scores, win rates, Bradley-Terry with intervals, Elo, agreement
//   eval bleu     corpus BLEU / chrF of a hypothesis file against reference files
// One process, no MPI. docs/evaluation.md describes metrics, suites and reports.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "eval/bleu.h"
#include "eval/jsonl.h"
#include "eval/ratings.h"
#include "eval/runner.h"
#include "launcher/app.h"
#include "launcher/section_flags.h"
#include "load/model_bundle.h"
#include "monitor/ratings_store.h"

namespace shardlm::launcher {

namespace {

// Progress goes to stderr: stdout carries the table or the JSON.
void progress(const std::string& s) {
  std::fprintf(stderr, "[shardlm eval] %s\n", s.c_str());
}

void write_file(const std::string& path, const std::string& text) {
  core::write_file_atomic<core::DataError>(path, text);
}

std::string dump(const nlohmann::json& j, int indent = 2) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

// ---- eval run ---------------------------------------------------------------------------------

// The [eval] section of `eval run`.
struct RunArgs {
  std::string model, tokenizer, suite, label, out, device = "cpu";
  std::vector<std::string> overrides;  // of the suite's keys
  bool json = false;
  int64_t threads = 0;

  static RunArgs from(const core::RunConfig& rc) {
    const core::ConfigSection s = rc.section("eval");
    RunArgs a;
    a.model = s.require<std::string>("model");
    a.suite = s.require<std::string>("suite");
    a.tokenizer = s.get("tokenizer", a.tokenizer);
    a.label = s.get("label", a.label);
    a.out = s.get("out", a.out);
    a.overrides = s.get("set", a.overrides);
    a.json = s.get("json", a.json);
    a.device = s.get("device", a.device);
    a.threads = s.get("threads", a.threads);
    rc.check_unknown_keys();
    return a;
  }
};

int run_eval(const RunArgs& a) {
  if (a.threads > 0) torch::set_num_threads(static_cast<int>(a.threads));
  const eval::SuiteConfig suite = eval::SuiteConfig::load(a.suite, a.overrides);
  eval::EvalModel m = eval::load_eval_model(a.model, a.tokenizer, load::parse_device(a.device));
  if (!a.label.empty()) m.label = a.label;
  const eval::ModelResults r = eval::run_suite(suite, m, progress);
  const nlohmann::json j = eval::results_json(r, suite.name);
  if (!a.out.empty()) write_file(a.out, dump(j) + "\n");
  write_out(a.json ? dump(j) + "\n" : eval::results_table(r));
  return 0;
}

// ---- eval compare -----------------------------------------------------------------------------

struct CompareArgs {
  std::vector<std::string> models, labels;
  std::string tokenizer, suite, out = "report.md", json_out, samples, device = "cpu";
  std::vector<std::string> overrides;
  int show = 3, threads = 0;
};

// Pairwise rating items (first two models) from every task with generated outputs.
void write_rating_samples(const std::string& path, const std::vector<eval::ModelResults>& rs) {
  std::string text;
  const auto& a = rs[0];
  const auto& b = rs[1];
  for (size_t t = 0; t < a.tasks.size(); ++t)
    for (size_t i = 0; i < a.tasks[t].samples.size(); ++i) {
      const auto& sa = a.tasks[t].samples[i];
      if (!sa.contains("output") || i >= b.tasks[t].samples.size()) continue;
      nlohmann::json item{{"id", fmt::format("{}:{}", a.tasks[t].name, i)},
                          {"prompt", sa.value("prompt", "")},
                          {"outputs",
                           {{{"model", a.label}, {"text", sa["output"]}},
                            {{"model", b.label}, {"text", b.tasks[t].samples[i]["output"]}}}}};
      text += item.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
  write_file(path, text);
}

int run_compare(const CompareArgs& a) {
  if (a.threads > 0) torch::set_num_threads(a.threads);
  SHARDLM_CHECK(a.models.size() >= 2, core::ConfigError,
                "--models needs at least two models (comma-separated), got {}", a.models.size());
  SHARDLM_CHECK(a.labels.empty() || a.labels.size() == a.models.size(), core::ConfigError,
                "--labels has {} names for {} models", a.labels.size(), a.models.size());
  const eval::SuiteConfig suite = eval::SuiteConfig::load(a.suite, a.overrides);
  const torch::Device device = load::parse_device(a.device);
  std::vector<eval::ModelResults> results;
  for (size_t i = 0; i < a.models.size(); ++i) {
    eval::EvalModel m = eval::load_eval_model(a.models[i], a.tokenizer, device);
    m.label = a.labels.empty() ? std::string(1, static_cast<char>('a' + i)) : a.labels[i];
    results.push_back(eval::run_suite(suite, m, progress));
  }
  eval::CompareOptions o;
  o.bootstrap.resamples = suite.bootstrap;
  o.bootstrap.seed = static_cast<uint64_t>(suite.seed);
  o.samples_per_task = a.show;
  write_file(a.out, eval::compare_markdown(results, suite.name, o));
  std::string json_out = a.json_out;
  if (json_out.empty()) {
    const auto dot = a.out.rfind('.');
    json_out = (dot == std::string::npos ? a.out : a.out.substr(0, dot)) + ".json";
  }
  write_file(json_out, dump(eval::compare_json(results, suite.name, o)) + "\n");
  if (!a.samples.empty()) write_rating_samples(a.samples, results);
  write_out(fmt::format("wrote {} and {}{}\n", a.out, json_out,
                        a.samples.empty() ? "" : " and " + a.samples));
  return 0;
}

// ---- eval rate / ratings ----------------------------------------------------------------------

struct RateArgs {
  eval::RatingOptions opts;
  std::string from_file;
  int64_t seed = 0;
};

int run_rate(RateArgs a) {
  a.opts.seed = static_cast<uint64_t>(a.seed);
  eval::RatingSessionResult r;
  if (!a.from_file.empty() && a.from_file != "-") {
    std::ifstream in(a.from_file);
    SHARDLM_CHECK(in, core::DataError, "cannot read answers from {}", a.from_file);
    r = eval::run_rating_session(a.opts, in, std::cout);
  } else {
    r = eval::run_rating_session(a.opts, std::cin, std::cout);
  }
  std::cout << fmt::format("\n{} rated now, {} rated before, {} skipped{}; answers in {}\n",
                           r.rated, r.already, r.skipped,
                           r.finished ? "" : " (not finished: run again to resume)", a.opts.out)
            << std::flush;
  return 0;
}

struct RatingsArgs {
  std::string ratings, db, export_to;
  bool json = false;
  int resamples = 1000;
};

int run_ratings(const RatingsArgs& a) {
  SHARDLM_CHECK(a.ratings.empty() != a.db.empty(), core::ConfigError,
                "eval ratings: pass --ratings FILE.jsonl or --db RUN_DIR/ratings.db (one of them)");
  eval::BootstrapOptions bs;
  bs.resamples = a.resamples;
  std::vector<eval::JsonLine> lines;
  if (!a.db.empty()) {
    // The Rate tab's votes, read while the monitor may still be writing (WAL).
    monitor::RatingsStore store(a.db, /*read_only=*/true);
    std::string text;
    size_t n = 0;
    for (const auto& row : store.export_votes()) {
      std::string line = row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      lines.push_back({nlohmann::json::parse(line), a.db, ++n});
      text += line + "\n";
    }
    if (a.export_to == "-")
      write_out(text);
    else if (!a.export_to.empty())
      write_file(a.export_to, text);
    if (!a.export_to.empty())
      progress(fmt::format("exported {} votes from {} to {}", n, a.db,
                           a.export_to == "-" ? "stdout" : a.export_to));
    if (a.export_to == "-") return 0;
  } else {
    SHARDLM_CHECK(a.export_to.empty(), core::ConfigError,
                  "eval ratings: --export writes the votes of --db as JSONL");
    lines = eval::read_jsonl(a.ratings, true);
  }
  const auto s = eval::summarize_ratings(lines, bs);
  write_out(a.json ? dump(s.to_json()) + "\n" : s.to_markdown());
  return 0;
}

// ---- eval bleu --------------------------------------------------------------------------------

struct BleuArgs {
  std::string hyp;
  std::vector<std::string> refs;
  eval::BleuConfig cfg;
  bool chrf = false, json = false;
};

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SHARDLM_CHECK(in, core::DataError, "cannot read {}", path);
  std::vector<std::string> lines;
  std::string l;
  while (std::getline(in, l)) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(l);
  }
  return lines;
}

int run_bleu(const BleuArgs& a) {
  a.cfg.validate();
  const auto hyps = read_lines(a.hyp);
  std::vector<std::vector<std::string>> refs(hyps.size());
  for (const auto& f : a.refs) {
    const auto lines = read_lines(f);
    SHARDLM_CHECK(lines.size() == hyps.size(), core::DataError,
                  "{} has {} lines but {} has {}: one reference line per hypothesis line", f,
                  lines.size(), a.hyp, hyps.size());
    for (size_t i = 0; i < lines.size(); ++i) refs[i].push_back(lines[i]);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto b = eval::corpus_bleu(hyps, refs, a.cfg);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json j{{"bleu", b.score},
                   {"precisions", b.precisions},
                   {"bp", b.bp},
                   {"hyp_len", b.sys_len},
                   {"ref_len", b.ref_len},
                   {"sentences", hyps.size()},
                   {"tokenize", a.cfg.tokenize},
                   {"smooth", a.cfg.smooth},
                   {"seconds", secs}};
  std::string text = b.to_string() + "\n";
  if (a.chrf) {
    j["chrf"] = eval::corpus_chrf(hyps, refs);
    text += fmt::format("chrF2 = {:.2f}\n", j["chrf"].get<double>());
  }
  write_out(a.json ? dump(j) + "\n" : text);
  return 0;
}

}  // namespace

void register_eval(CLI::App& app, Context&, Command& run) {
  auto* ev = app.add_subcommand("eval", "Evaluate and compare models; collect human ratings");
  ev->require_subcommand(1);
  {
    auto* c = ev->add_subcommand("run", "Run a suite's tasks on one model");
    auto f = std::make_shared<SectionFlags>(c, "eval");
    f->alias<std::string>("--model,-m", "model",
                          "Model directory, .safetensors file or run directory (required)");
    f->alias<std::string>("--suite,-s", "suite", "Suite TOML (configs/eval/suite.toml; required)");
    f->alias<std::string>("--tokenizer,-t", "tokenizer", "Tokenizer (default: beside the model)");
    f->alias<std::string>("--label", "label", "Name of the model in the output");
    f->alias<std::string>("--out,-o", "out", "Also write the JSON results to this file");
    f->alias<std::vector<std::string>>("--set", "set",
                                       "Override a suite key: task.x.limit=10 (repeatable)");
    f->alias_flag("--json", "json", true, "Print JSON instead of the table");
    f->alias<std::string>("--device", "device", "cpu, cuda or cuda:N (default cpu)");
    f->alias<int64_t>("--threads", "threads", "CPU threads (0 = LibTorch's default)");
    c->callback([f, &run] { run = [f] { return run_eval(RunArgs::from(f->load())); }; });
  }
  {
    auto a = std::make_shared<CompareArgs>();
    auto* c = ev->add_subcommand("compare", "Run a suite on several models and write a report");
    c->add_option("--models", a->models, "Models, comma-separated (the first is the baseline)")
        ->required()
        ->delimiter(',');
    c->add_option("--labels", a->labels, "Their names in the report (default a, b, c...)")
        ->delimiter(',');
    c->add_option("--suite,-s", a->suite, "Suite TOML")->required();
    c->add_option("--tokenizer,-t", a->tokenizer,
                  "Tokenizer for every model (default: beside each)");
    c->add_option("--out,-o", a->out, "Markdown report")->capture_default_str();
    c->add_option("--json-out", a->json_out, "JSON report (default: --out with .json)");
    c->add_option("--samples", a->samples,
                  "Also write pairwise rating items (first two models) for `eval rate`");
    c->add_option("--show", a->show, "Generated samples per task shown side by side")
        ->capture_default_str();
    c->add_option("--set", a->overrides, "Override a suite key (repeatable)");
    c->add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
    c->add_option("--threads", a->threads, "CPU threads (0 = LibTorch's default)");
    c->callback([a, &run] { run = [a] { return run_compare(*a); }; });
  }
  {
    auto a = std::make_shared<RateArgs>();
    auto* c = ev->add_subcommand("rate", "Rate outputs in the terminal (blind A/B or 1-5)");
    c->add_option("--samples", a->opts.samples, "Items to rate (JSONL)")->required();
    c->add_option("--out,-o", a->opts.out, "Ratings (JSONL, appended; resumable)")->required();
    c->add_option("--rater", a->opts.rater, "Your name, stored with each answer");
    c->add_option("--seed", a->seed, "Seed of the A/B order")->capture_default_str();
    c->add_option("--from-file", a->from_file, "Read answers from this file (- = stdin)");
    c->callback([a, &run] { run = [a] { return run_rate(*a); }; });
  }
  {
    auto a = std::make_shared<RatingsArgs>();
    auto* c = ev->add_subcommand("ratings", "Summarise ratings: means, win rates, Bradley-Terry");
    c->add_option("--ratings,-r", a->ratings, "ratings.jsonl (eval rate's answers, or an export)");
    c->add_option("--db", a->db, "The Rate tab's database (RUN_DIR/ratings.db), read-only");
    c->add_option("--export", a->export_to,
                  "With --db: write every vote as one JSON line to this file (- = stdout only)");
    c->add_option("--resamples", a->resamples, "Bootstrap resamples")->capture_default_str();
    c->add_flag("--json", a->json, "Print JSON");
    c->callback([a, &run] { run = [a] { return run_ratings(*a); }; });
  }
  {
    auto a = std::make_shared<BleuArgs>();
    auto* c = ev->add_subcommand("bleu", "Corpus BLEU (sacrebleu's defaults) of text files");
    c->add_option("--hyp", a->hyp, "Hypotheses, one per line")->required();
    c->add_option("--ref", a->refs, "References, one per line (repeat for more)")->required();
    c->add_option("--tokenize", a->cfg.tokenize, "13a or none")->capture_default_str();
    c->add_option("--smooth", a->cfg.smooth, "exp, floor, add-k or none")->capture_default_str();
    c->add_option("--smooth-value", a->cfg.smooth_value, "floor / add-k value (default 0.1 / 1)");
    c->add_flag("--lowercase", a->cfg.lowercase, "Lowercase before scoring");
    c->add_flag("--chrf", a->chrf, "Also chrF2");
    c->add_flag("--json", a->json, "Print JSON");
    c->callback([a, &run] { run = [a] { return run_bleu(*a); }; });
  }
}

}  // namespace shardlm::launcher
