// Result tables, JSON and the comparison report (see result.h).
#include "eval/result.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "eval/text_util.h"

namespace shardlm::eval {

const MetricResult* TaskResult::metric(const std::string& n) const {
  for (const auto& m : metrics)
    if (m.name == n) return &m;
  return nullptr;
}

namespace {

nlohmann::json number(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}

nlohmann::json metric_json(const MetricResult& m) {
  nlohmann::json j{{"value", number(m.value)}, {"higher_is_better", m.higher_is_better}};
  j["ci95"] = m.ci.valid ? nlohmann::json{number(m.ci.lo), number(m.ci.hi)} : nlohmann::json();
  return j;
}

std::string fmt_value(double v) {
  if (!std::isfinite(v)) return "n/a";
  const double a = std::abs(v);
  return a != 0 && (a < 1e-3 || a >= 1e6) ? fmt::format("{:.3e}", v) : fmt::format("{:.4f}", v);
}

std::string fmt_ci(const Interval& ci) {
  return ci.valid ? fmt::format("[{}, {}]", fmt_value(ci.lo), fmt_value(ci.hi)) : "-";
}

// Text inside a Markdown table cell.
std::string cell(std::string s, size_t max_chars = 400) {
  if (s.size() > max_chars) s = s.substr(0, max_chars) + "…";
  replace_all(s, "|", "\\|");
  replace_all(s, "\r", "");
  replace_all(s, "\n", "<br>");
  return s;
}

const TaskResult& task_of(const ModelResults& m, size_t i, const ModelResults& first) {
  SHARDLM_CHECK(m.tasks.size() == first.tasks.size() && m.tasks[i].name == first.tasks[i].name,
                core::DataError, "models {} and {} ran different tasks: cannot compare",
                first.label, m.label);
  return m.tasks[i];
}

struct PairDiff {
  Interval diff;  // a - b
  double p = 1;
  bool ok = false;  // both have per-item data on the same items
};

PairDiff pair_diff(const MetricResult& a, const MetricResult& b, const BootstrapOptions& bs) {
  PairDiff d;
  if (a.data.items.empty() || a.data.items.size() != b.data.items.size()) return d;
  d.diff = paired_bootstrap(a.data, b.data, bs, &d.p);
  d.ok = d.diff.valid;
  return d;
}

// Whether the difference a - b favours a with a 95% interval that excludes 0.
bool favours(const PairDiff& d, bool higher_is_better) {
  if (!d.ok) return false;
  return higher_is_better ? d.diff.lo > 0 : d.diff.hi < 0;
}

// Index of the model that beats every other with confidence, or -1.
int winner(const std::vector<const MetricResult*>& ms, int64_t items, const CompareOptions& o) {
  const BootstrapOptions& bs = o.bootstrap;
  if (ms.size() < 2 || items < o.min_items_for_winner) return -1;
  for (size_t i = 0; i < ms.size(); ++i) {
    bool all = true;
    for (size_t j = 0; j < ms.size() && all; ++j)
      if (j != i) all = favours(pair_diff(*ms[i], *ms[j], bs), ms[i]->higher_is_better);
    if (all) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

nlohmann::json results_json(const ModelResults& r, const std::string& suite) {
  nlohmann::json tasks = nlohmann::json::array();
  for (const auto& t : r.tasks) {
    nlohmann::json metrics = nlohmann::json::object();
    for (const auto& m : t.metrics) metrics[m.name] = metric_json(m);
    tasks.push_back({{"name", t.name},
                     {"kind", t.kind},
                     {"items", t.items},
                     {"tokens", t.tokens},
                     {"seconds", t.seconds},
                     {"metrics", metrics},
                     {"samples", t.samples}});
    if (!t.detail.is_null()) tasks.back()["detail"] = t.detail;
  }
  return {{"model", r.path}, {"label", r.label}, {"suite", suite}, {"tasks", tasks}};
}

std::string results_table(const ModelResults& r) {
  std::string out = fmt::format("{:<18} {:<16} {:>12}  {:<26} {}\n", "task", "metric", "value",
                                "95% CI", "items");
  for (const auto& t : r.tasks)
    for (const auto& m : t.metrics)
      out += fmt::format("{:<18} {:<16} {:>12}  {:<26} {}\n", t.name, m.name, fmt_value(m.value),
                         fmt_ci(m.ci), t.items);
  return out;
}

std::string compare_markdown(const std::vector<ModelResults>& models, const std::string& suite,
                             const CompareOptions& o) {
  SHARDLM_CHECK(!models.empty(), core::DataError, "no models to compare");
  const ModelResults& first = models[0];
  std::string md = fmt::format("# Model comparison: suite {}\n\n", suite);
  md += "| label | model |\n|---|---|\n";
  for (const auto& m : models) md += fmt::format("| {} | `{}` |\n", m.label, m.path);
  md += fmt::format(
      "\nEach cell: value [95% bootstrap interval over items, {} resamples]. A value is in "
      "**bold** only when the paired bootstrap interval of its difference to every other model "
      "excludes 0 (tasks of at least {} items). ↑ higher is better, ↓ lower is better.\n",
      o.bootstrap.resamples, o.min_items_for_winner);
  for (size_t ti = 0; ti < first.tasks.size(); ++ti) {
    const TaskResult& t0 = first.tasks[ti];
    md += fmt::format("\n## {} ({}, {} items{})\n\n| metric |", t0.name, t0.kind, t0.items,
                      t0.tokens > 0 ? fmt::format(", {:.0f} tokens", t0.tokens) : "");
    for (const auto& m : models) md += " " + m.label + " |";
    for (size_t k = 1; k < models.size(); ++k)
      md += fmt::format(" {} − {} |", models[k].label, first.label);
    md += "\n|---|";
    for (size_t k = 0; k < 2 * models.size() - 1; ++k) md += "---|";
    md += "\n";
    for (const auto& m0 : t0.metrics) {
      std::vector<const MetricResult*> ms;
      for (const auto& m : models) {
        const MetricResult* r = task_of(m, ti, first).metric(m0.name);
        SHARDLM_CHECK(r, core::DataError, "model {} has no metric {} in task {}", m.label, m0.name,
                      t0.name);
        ms.push_back(r);
      }
      const int win = winner(ms, t0.items, o);
      md += fmt::format("| {} {} |", m0.name, m0.higher_is_better ? "↑" : "↓");
      for (size_t k = 0; k < ms.size(); ++k) {
        const std::string v = fmt_value(ms[k]->value);
        md += fmt::format(" {} {} |", static_cast<int>(k) == win ? "**" + v + "**" : v,
                          ms[k]->ci.valid ? fmt_ci(ms[k]->ci) : "");
      }
      for (size_t k = 1; k < ms.size(); ++k) {
        const PairDiff d = pair_diff(*ms[k], *ms[0], o.bootstrap);
        md += d.ok ? fmt::format(" {} {} (p = {:.3f}) |", fmt_value(d.diff.value), fmt_ci(d.diff),
                                 d.p)
                   : " - |";
      }
      md += "\n";
    }
    // Samples side by side.
    const size_t n = std::min<size_t>(o.samples_per_task, t0.samples.size());
    if (n > 0 && t0.samples[0].contains("output")) {
      md += "\nSamples:\n";
      for (size_t i = 0; i < n; ++i) {
        md += fmt::format("\n**prompt {}:** {}\n\n| model | output |\n|---|---|\n", i + 1,
                          cell(t0.samples[i].value("prompt", "")));
        for (const auto& m : models) {
          const auto& s = task_of(m, ti, first).samples;
          md += fmt::format("| {} | {} |\n", m.label,
                            i < s.size() ? cell(s[i].value("output", "")) : "");
        }
      }
    }
  }
  return md;
}

nlohmann::json compare_json(const std::vector<ModelResults>& models, const std::string& suite,
                            const CompareOptions& o) {
  SHARDLM_CHECK(!models.empty(), core::DataError, "no models to compare");
  nlohmann::json j{{"suite", suite}, {"models", nlohmann::json::array()}};
  for (const auto& m : models) j["models"].push_back(results_json(m, suite));
  nlohmann::json cmp = nlohmann::json::array();
  const ModelResults& first = models[0];
  for (size_t ti = 0; ti < first.tasks.size(); ++ti)
    for (const auto& m0 : first.tasks[ti].metrics) {
      std::vector<const MetricResult*> ms;
      for (const auto& m : models) ms.push_back(task_of(m, ti, first).metric(m0.name));
      nlohmann::json row{{"task", first.tasks[ti].name}, {"metric", m0.name}};
      const int win = std::find(ms.begin(), ms.end(), nullptr) == ms.end()
                          ? winner(ms, first.tasks[ti].items, o)
                          : -1;
      row["winner"] = win >= 0 ? nlohmann::json(models[win].label) : nlohmann::json();
      nlohmann::json diffs = nlohmann::json::array();
      for (size_t a = 0; a < ms.size(); ++a)
        for (size_t b = a + 1; b < ms.size(); ++b) {
          if (!ms[a] || !ms[b]) continue;
          const PairDiff d = pair_diff(*ms[b], *ms[a], o.bootstrap);
          if (!d.ok) continue;
          diffs.push_back({{"a", models[b].label},
                           {"b", models[a].label},
                           {"a_minus_b", number(d.diff.value)},
                           {"ci95", {number(d.diff.lo), number(d.diff.hi)}},
                           {"p", d.p}});
        }
      row["differences"] = diffs;
      cmp.push_back(row);
    }
  j["comparisons"] = cmp;
  return j;
}

}  // namespace shardlm::eval
