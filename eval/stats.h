// Statistics for reports: bootstrap confidence intervals (Efron 1979;
// percentile method), paired bootstrap for the difference of two systems on the
// same items (Koehn 2004, as sacrebleu's --paired-bs), and ranking from pairwise
// preferences: Bradley-Terry strengths (Hunter 2004's MM iteration) and Elo.
// Torch-free; every draw comes from a seeded std::mt19937_64, so a report is
// reproducible.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace shardlm::eval {

// ---- metrics that bootstrap -----------------------------------------------------------------

// A metric that is a function of per-item statistics summed over the items:
// value = finalize(sum of items[i] over the chosen i). A mean is {x, 1} ->
// s[0] / s[1]; perplexity {nll, tokens} -> exp(s[0] / s[1]); corpus BLEU its n-gram
// counts. Resampling items gives a bootstrap distribution of the metric.
struct Decomposable {
  std::vector<std::vector<double>> items;  // (n_items, n_stats)
  std::function<double(const std::vector<double>& summed)> finalize;

  double value() const;                                   // over all items
  double value_of(const std::vector<size_t>& idx) const;  // over items[idx] (repeats count)
};
// The metric "mean of x" as a Decomposable.
Decomposable mean_metric(const std::vector<double>& x);

struct Interval {
  double value = 0;  // the point estimate (all items)
  double lo = 0, hi = 0;
  bool valid = false;  // false: fewer than 2 items (no interval)
};

struct BootstrapOptions {
  int resamples = 1000;
  double confidence = 0.95;
  uint64_t seed = 1234;
};

// Percentile bootstrap interval of m's value.
Interval bootstrap(const Decomposable& m, const BootstrapOptions& o = {});
// Paired bootstrap of a.value - b.value over the same items (same count, same
// order): both resampled with the same indices. `p_value` receives the share of
// resamples where the sign of the difference flips (two-sided, capped at 1).
Interval paired_bootstrap(const Decomposable& a, const Decomposable& b,
                          const BootstrapOptions& o = {}, double* p_value = nullptr);

// ---- pairwise preferences -------------------------------------------------------------------

struct PairOutcome {
  std::string a, b;
  double score_a = 0.5;  // 1: a won, 0: b won, 0.5: tie
};

// Bradley-Terry strengths p_i (P(i beats j) = p_i / (p_i + p_j)), normalised to a
// geometric mean of 1, from outcomes (a tie counts half a win for each). Each
// player gets a 0.5 pseudo-win against a virtual average player, so a player
// that never lost still has a finite strength. Converges to 1e-10 or 1000 rounds.
std::map<std::string, double> bradley_terry(const std::vector<PairOutcome>& outcomes);
// Percentile bootstrap intervals of the Bradley-Terry strengths: the outcomes
// (votes) resampled with replacement `o.resamples` times; `value` is the
// strength from all outcomes. A player absent from a resample counts as 1 (the
// average) there. Fewer than 2 outcomes: no interval (valid false).
std::map<std::string, Interval> bradley_terry_intervals(const std::vector<PairOutcome>& outcomes,
                                                        const BootstrapOptions& o = {});
// Elo ratings (start 1000, K = 32) after the outcomes in order.
std::map<std::string, double> elo(const std::vector<PairOutcome>& outcomes, double k = 32,
                                  double start = 1000);

// ---- agreement between raters ---------------------------------------------------------------

// Krippendorff's alpha for nominal values (Krippendorff, "Computing
// Krippendorff's Alpha-Reliability", 2011): per unit (a rated item) the values
// its raters gave. alpha = 1 - D_o / D_e from the coincidence matrix; 1 is
// perfect agreement, 0 agreement at chance, < 0 systematic disagreement. Units
// with fewer than two values are left out; NaN when no pairable values remain
// or every value is the same (no expected disagreement).
double krippendorff_alpha(const std::vector<std::vector<std::string>>& units);

}  // namespace shardlm::eval
