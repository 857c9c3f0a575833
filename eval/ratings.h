// Human ratings: a terminal workflow that collects them and the numbers that
// summarise them. Torch-free.
//
// samples.jsonl, one item per line (written by `shardlm eval compare --samples`
// or by hand):
//   {"id": "q1", "prompt": "...", "outputs": [{"model": "a", "text": "..."}]}            score 1-5
//   {"id": "q2", "prompt": "...", "outputs": [{"model": "a", ...}, {"model": "b", ...}]} A / B /
//   tie
// The rater sees the prompt and the output(s) only: with two, the models are
// hidden and their order is shuffled per item (a seeded hash of the id, so a
// resumed session shows the same order). Each answer is appended to
// ratings.jsonl at once (flushed and fsync'ed), so a crash loses nothing; a new
// session skips the items already rated and drops a torn last line.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/jsonl.h"
#include "eval/stats.h"

namespace shardlm::eval {

struct RatingOutput {
  std::string model, text;
};
struct RatingItem {
  std::string id, prompt;
  std::vector<RatingOutput> outputs;  // 1 (score) or 2 (pairwise)
};

// Reads samples.jsonl; DataError naming file:line for a missing id, prompt or
// outputs, more than two outputs, or a repeated id.
std::vector<RatingItem> read_rating_items(const std::string& path);

struct RatingOptions {
  std::string samples;  // samples.jsonl
  std::string out;      // ratings.jsonl (appended)
  std::string rater;    // stored with each answer
  uint64_t seed = 0;    // the A/B order of each item
};

struct RatingSessionResult {
  int rated = 0;         // answers written in this session
  int already = 0;       // items skipped because out already had them
  int skipped = 0;       // items the rater skipped (asked again next session)
  bool finished = true;  // false: quit or end of input before the last item
};

// Presents every unrated item on `out_text`, reads answers line by line from
// `in` ("1".."5"; "a", "b", "t"/"tie"; "s" skip; "q" quit; anything else asks
// again) and appends each answer to opts.out. End of input ends the session.
RatingSessionResult run_rating_session(const RatingOptions& opts, std::istream& in,
                                       std::ostream& out_text);

// Whether item `id`'s two outputs are shown swapped (B first) under `seed`.
bool shown_swapped(const std::string& id, uint64_t seed);

// ---- aggregation ----------------------------------------------------------------------------

struct PairRecord {
  int wins_a = 0, wins_b = 0, ties = 0;  // a < b by name
  double win_rate_a() const;             // (wins_a + ties / 2) / all
};

struct RatingSummary {
  std::map<std::string, Interval> mean_score;  // per model: mean 1-5 with bootstrap 95% CI
  std::map<std::string, int> scores;           // per model: how many scores
  std::map<std::pair<std::string, std::string>, PairRecord> pairs;  // (a, b), a < b
  std::map<std::string, double> bradley_terry, elo;
  std::map<std::string, Interval> bradley_terry_ci;  // bootstrap over the pairwise answers
  std::map<std::string, int> raters;                 // answers per rater
  int answers = 0;   // scores and pairwise answers (skips not counted)
  int skipped = 0;   // "skip" answers (the Rate tab's)
  int both_bad = 0;  // pairwise answers "both bad" (a tie for the rankings)
  // Agreement where an item was rated by two or more raters: Krippendorff's
  // alpha over the categories "first better", "second better", tie, both bad
  // (models in name order; NaN: no such item), their number, and the share of
  // rater pairs on those items that agree.
  double alpha = 0;
  int agreement_items = 0;
  double percent_agreement = 0;

  nlohmann::json to_json() const;
  std::string to_markdown() const;
};

// Summarises ratings.jsonl lines (DataError naming file:line for a malformed one):
// `eval rate`'s answers and the rows `shardlm eval ratings --db` exports from the
// Rate tab's database (choices A, B, tie, both_bad, skip; "pair" names the item).
RatingSummary summarize_ratings(const std::vector<JsonLine>& ratings,
                                const BootstrapOptions& bs = {});

}  // namespace shardlm::eval
