// Bootstrap intervals and pairwise rankings (see stats.h).
#include "eval/stats.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "core/error.h"

namespace shardlm::eval {

// ---- metrics that bootstrap -----------------------------------------------------------------

double Decomposable::value_of(const std::vector<size_t>& idx) const {
  std::vector<double> sum(items.empty() ? 0 : items[0].size(), 0.0);
  for (size_t i : idx)
    for (size_t j = 0; j < sum.size(); ++j) sum[j] += items[i][j];
  return finalize(sum);
}

double Decomposable::value() const {
  std::vector<size_t> all(items.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  return value_of(all);
}

Decomposable mean_metric(const std::vector<double>& x) {
  Decomposable d;
  for (double v : x) d.items.push_back({v, 1.0});
  d.finalize = [](const std::vector<double>& s) {
    return s.empty() || s[1] == 0 ? 0 : s[0] / s[1];
  };
  return d;
}

namespace {

std::vector<double> resample_values(size_t n, const BootstrapOptions& o,
                                    const std::function<double(const std::vector<size_t>&)>& f) {
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<size_t> pick(0, n - 1);
  std::vector<size_t> idx(n);
  std::vector<double> vals;
  vals.reserve(o.resamples);
  for (int r = 0; r < o.resamples; ++r) {
    for (auto& i : idx) i = pick(rng);
    vals.push_back(f(idx));
  }
  std::sort(vals.begin(), vals.end());
  return vals;
}

// The q-quantile of sorted values (linear interpolation, as numpy's default).
double quantile(const std::vector<double>& v, double q) {
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

void check_options(const BootstrapOptions& o) {
  SHARDLM_CHECK(o.resamples >= 10, core::ConfigError, "bootstrap resamples {} < 10", o.resamples);
  SHARDLM_CHECK(o.confidence > 0 && o.confidence < 1, core::ConfigError,
                "bootstrap confidence {} outside (0, 1)", o.confidence);
}

}  // namespace

Interval bootstrap(const Decomposable& m, const BootstrapOptions& o) {
  check_options(o);
  Interval r;
  r.value = m.value();
  r.lo = r.hi = r.value;
  if (m.items.size() < 2) return r;
  auto vals = resample_values(m.items.size(), o,
                              [&](const std::vector<size_t>& idx) { return m.value_of(idx); });
  const double a = (1 - o.confidence) / 2;
  r.lo = quantile(vals, a);
  r.hi = quantile(vals, 1 - a);
  r.valid = true;
  return r;
}

Interval paired_bootstrap(const Decomposable& a, const Decomposable& b, const BootstrapOptions& o,
                          double* p_value) {
  check_options(o);
  SHARDLM_CHECK(a.items.size() == b.items.size(), core::DataError,
                "paired bootstrap over {} and {} items: the systems must be scored on the same "
                "items",
                a.items.size(), b.items.size());
  Interval r;
  r.value = a.value() - b.value();
  r.lo = r.hi = r.value;
  if (p_value) *p_value = 1;
  if (a.items.size() < 2) return r;
  auto vals = resample_values(a.items.size(), o, [&](const std::vector<size_t>& idx) {
    return a.value_of(idx) - b.value_of(idx);
  });
  const double q = (1 - o.confidence) / 2;
  r.lo = quantile(vals, q);
  r.hi = quantile(vals, 1 - q);
  r.valid = true;
  if (p_value) {
    const auto flips = std::count_if(vals.begin(), vals.end(), [&](double d) {
      return r.value > 0 ? d <= 0 : r.value < 0 ? d >= 0 : true;
    });
    *p_value = std::min(1.0, 2.0 * static_cast<double>(flips) / static_cast<double>(vals.size()));
  }
  return r;
}

// ---- pairwise preferences -------------------------------------------------------------------

std::map<std::string, double> bradley_terry(const std::vector<PairOutcome>& outcomes) {
  std::set<std::string> names;
  for (const auto& o : outcomes) names.insert(o.a), names.insert(o.b);
  std::vector<std::string> players(names.begin(), names.end());
  const size_t n = players.size();
  std::map<std::string, size_t> id;
  for (size_t i = 0; i < n; ++i) id[players[i]] = i;
  // wins[i]: total score of i; games[i][j]: comparisons between i and j. Index n
  // is the virtual average player (strength fixed at 1) that regularises.
  std::vector<double> wins(n, 0.5);
  std::vector<std::vector<double>> games(n + 1, std::vector<double>(n + 1, 0.0));
  for (size_t i = 0; i < n; ++i) games[i][n] = games[n][i] = 1;
  for (const auto& o : outcomes) {
    const size_t a = id[o.a], b = id[o.b];
    if (a == b) continue;
    wins[a] += o.score_a;
    wins[b] += 1 - o.score_a;
    games[a][b] += 1;
    games[b][a] += 1;
  }
  std::vector<double> p(n + 1, 1.0);
  for (int round = 0; round < 1000; ++round) {
    double change = 0;
    std::vector<double> next(p);
    for (size_t i = 0; i < n; ++i) {
      double denom = 0;
      for (size_t j = 0; j <= n; ++j)
        if (j != i && games[i][j] > 0) denom += games[i][j] / (p[i] + p[j]);
      next[i] = denom > 0 ? wins[i] / denom : p[i];
    }
    for (size_t i = 0; i < n; ++i) change = std::max(change, std::abs(next[i] - p[i]));
    p = next;
    if (change < 1e-10) break;
  }
  // The virtual player anchors the scale while iterating; report a geometric mean of 1.
  double log_mean = 0;
  for (size_t i = 0; i < n; ++i) log_mean += std::log(p[i]);
  log_mean /= static_cast<double>(std::max<size_t>(n, 1));
  std::map<std::string, double> out;
  for (size_t i = 0; i < n; ++i) out[players[i]] = p[i] / std::exp(log_mean);
  return out;
}

std::map<std::string, Interval> bradley_terry_intervals(const std::vector<PairOutcome>& outcomes,
                                                        const BootstrapOptions& o) {
  check_options(o);
  std::map<std::string, Interval> out;
  for (const auto& [name, v] : bradley_terry(outcomes)) out[name] = {v, v, v, false};
  if (outcomes.size() < 2) return out;
  std::map<std::string, std::vector<double>> draws;
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<size_t> pick(0, outcomes.size() - 1);
  std::vector<PairOutcome> sample(outcomes.size());
  for (int r = 0; r < o.resamples; ++r) {
    for (auto& s : sample) s = outcomes[pick(rng)];
    auto bt = bradley_terry(sample);
    for (const auto& [name, iv] : out) {
      auto it = bt.find(name);
      draws[name].push_back(it == bt.end() ? 1.0 : it->second);
    }
  }
  const double a = (1 - o.confidence) / 2;
  for (auto& [name, iv] : out) {
    auto& v = draws[name];
    std::sort(v.begin(), v.end());
    iv.lo = quantile(v, a);
    iv.hi = quantile(v, 1 - a);
    iv.valid = true;
  }
  return out;
}

std::map<std::string, double> elo(const std::vector<PairOutcome>& outcomes, double k,
                                  double start) {
  std::map<std::string, double> r;
  for (const auto& o : outcomes) {
    double& ra = r.try_emplace(o.a, start).first->second;
    double& rb = r.try_emplace(o.b, start).first->second;
    const double ea = 1 / (1 + std::pow(10.0, (rb - ra) / 400));
    ra += k * (o.score_a - ea);
    rb -= k * (o.score_a - ea);
  }
  return r;
}

// ---- agreement between raters ---------------------------------------------------------------

double krippendorff_alpha(const std::vector<std::vector<std::string>>& units) {
  // Coincidences o[c][k]: each ordered pair of values within a unit of m values
  // adds 1 / (m - 1).
  std::map<std::string, std::map<std::string, double>> o;
  for (const auto& u : units) {
    const size_t m = u.size();
    if (m < 2) continue;
    for (size_t i = 0; i < m; ++i)
      for (size_t j = 0; j < m; ++j)
        if (i != j) o[u[i]][u[j]] += 1.0 / static_cast<double>(m - 1);
  }
  std::map<std::string, double> n_c;
  double n = 0, disagree = 0;
  for (const auto& [c, row] : o)
    for (const auto& [k, v] : row) {
      n_c[c] += v;
      n += v;
      if (c != k) disagree += v;
    }
  if (n < 2) return std::nan("");
  double expected = 0;  // sum over c != k of n_c n_k
  for (const auto& [c, nc] : n_c)
    for (const auto& [k, nk] : n_c)
      if (c != k) expected += nc * nk;
  if (expected == 0) return std::nan("");
  return 1.0 - (n - 1) * disagree / expected;
}

}  // namespace shardlm::eval
