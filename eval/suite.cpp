// Reading an evaluation suite (see suite.h).
#include "eval/suite.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace shardlm::eval {

namespace fs = std::filesystem;

namespace {
const std::vector<std::string> kKinds{"perplexity", "choice", "factual", "generation"};
const std::vector<std::string> kGenerationMetrics{"bleu", "chrf", "diversity", "coherence"};

std::string quoted_list(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}
}  // namespace

TaskConfig TaskConfig::from(const core::ConfigSection& s) {
  TaskConfig t;
  t.kind = s.require<std::string>("kind");
  if (std::find(kKinds.begin(), kKinds.end(), t.kind) == kKinds.end())
    s.fail("kind", t.kind, quoted_list(kKinds));
  // Only the keys of this kind are read: any other is reported as unknown.
  if (t.kind == "perplexity") {
    t.data = s.get("data", t.data);
    t.files = s.get("files", t.files);
    if (!t.data.empty()) {
      t.split = s.get("split", t.split);
      t.batch_size = s.get("batch_size", t.batch_size);
      t.seq_len = s.get("seq_len", t.seq_len);
      t.max_batches = s.get("max_batches", t.max_batches);
    } else {
      t.window = s.get("window", t.window);
      t.stride = s.get("stride", t.stride);
      t.prefix_eos = s.get("prefix_eos", t.prefix_eos);
    }
    return t;
  }
  t.file = s.get("file", t.file);
  t.limit = s.get("limit", t.limit);
  if (t.kind == "factual" || t.kind == "generation") {
    const core::ConfigSection g = s.section("generate");
    t.generate = model::GenerationConfig::from(g);
    if (!g.has("max_new_tokens")) t.generate.max_new_tokens = t.kind == "factual" ? 16 : 48;
  }
  if (t.kind == "generation") {
    t.metrics = s.get("metrics", kGenerationMetrics);
    t.bleu = BleuConfig::from(s.section("bleu"));
  }
  return t;
}

void TaskConfig::validate() const {
  if (kind == "perplexity") {
    core::config_require(!data.empty() || !files.empty(), "files", "(absent)",
                         "data (a prepared dataset) or files (raw text): neither is set");
    core::config_require(data.empty() || files.empty(), "data", data,
                         "either data (a prepared dataset) or files (raw text), not both");
    core::config_require(batch_size > 0, "batch_size", std::to_string(batch_size), "> 0");
    core::config_require(seq_len >= 0, "seq_len", std::to_string(seq_len), ">= 0");
    core::config_require(max_batches >= 0, "max_batches", std::to_string(max_batches), ">= 0");
    core::config_require(window >= 0 && window != 1, "window", std::to_string(window),
                         "0 (the context length) or >= 2");
    core::config_require(stride >= 0, "stride", std::to_string(stride), ">= 0");
    return;
  }
  core::config_require(!file.empty(), "file", file, "a JSONL file");
  core::config_require(limit >= 0, "limit", std::to_string(limit), ">= 0");
  if (kind == "factual" || kind == "generation") generate.validate();
  if (kind == "generation") {
    for (const auto& m : metrics)
      core::config_require(std::find(kGenerationMetrics.begin(), kGenerationMetrics.end(), m) !=
                               kGenerationMetrics.end(),
                           "metrics", m, quoted_list(kGenerationMetrics));
    bleu.validate();
  }
}

SuiteConfig SuiteConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  SHARDLM_CHECK(fs::exists(path), core::ConfigError, "suite file {} does not exist", path);
  const core::RunConfig rc = core::RunConfig::load(path, overrides);
  const core::ConfigSection s = rc.section("suite");
  SuiteConfig c;
  c.file = path;
  c.name = s.get("name", fs::path(path).stem().string());
  c.bootstrap = s.get("bootstrap", c.bootstrap);
  c.seed = s.get("seed", c.seed);
  if (c.bootstrap < 10) s.fail("bootstrap", std::to_string(c.bootstrap), ">= 10");
  const auto names = s.require<std::vector<std::string>>("tasks");
  if (names.empty()) s.fail("tasks", "[]", "at least one task name");
  const fs::path dir = fs::path(path).parent_path();
  auto resolve = [&](const std::string& p) {
    return p.empty() || fs::path(p).is_absolute() ? p : (dir / p).lexically_normal().string();
  };
  // Every [task.*] table is read and validated (a typo in a task not run now is
  // still found); only the ones named in `tasks` run, in that order.
  const auto all = nlohmann::json::parse(rc.to_json());
  std::vector<std::string> defined;
  if (all.contains("task") && all["task"].is_object())
    for (const auto& [n, v] : all["task"].items()) defined.push_back(n);
  std::map<std::string, TaskConfig> parsed;
  for (const auto& n : defined) {
    TaskConfig t = rc.get<TaskConfig>("task." + n);  // validate() errors gain file and line
    t.name = n;
    t.data = resolve(t.data);
    t.file = resolve(t.file);
    for (auto& f : t.files) f = resolve(f);
    parsed.emplace(n, std::move(t));
  }
  for (const auto& n : names) {
    auto it = parsed.find(n);
    if (it == parsed.end())
      s.fail("tasks", n, fmt::format("a task defined by a [task.{}] table", n));
    const TaskConfig& t = it->second;
    for (const auto& f : t.files)
      SHARDLM_CHECK(fs::exists(f), core::ConfigError, "{}: task.{}.files: {} does not exist", path,
                    n, f);
    if (!t.file.empty())
      SHARDLM_CHECK(fs::exists(t.file), core::ConfigError, "{}: task.{}.file: {} does not exist",
                    path, n, t.file);
    c.tasks.push_back(t);
  }
  rc.check_unknown_keys();
  return c;
}

}  // namespace shardlm::eval
