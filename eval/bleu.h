// BLEU and chrF as sacrebleu computes them (Post 2018, "A Call for Clarity in
// Reporting BLEU Scores"), written here and checked against sacrebleu's
// documented values (tests/eval/test_metrics.cpp):
//   - the 13a tokenizer (mteval-v13a.pl's rules) or none, optional lowercasing;
//   - corpus BLEU: clipped n-gram counts (n = 1..4) summed over the corpus, the
//     closest reference length per sentence (ties: the shorter), the brevity
//     penalty exp(1 - r / c) when c < r, the geometric mean of the precisions;
//   - smoothing: exp (sacrebleu's default), floor, add-k, none;
//   - sentence BLEU: the same with effective order (orders with no n-gram in
//     the hypothesis are left out), as sacrebleu's sentence_score;
//   - chrF (Popovic 2015): character n-grams 1..6 without whitespace, beta 2,
//     the best reference per sentence, statistics summed over the corpus.
// Scores are on sacrebleu's 0-100 scale. Torch-free.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"

namespace shardlm::eval {

// ---- tokenizers ---------------------------------------------------------------------------

// sacrebleu's "13a": punctuation split off, "." and "," split unless between
// digits, "-" split after a digit, whitespace collapsed. Works on UTF-8 bytes
// (every rule is about ASCII characters, so the result equals sacrebleu's on
// code points); Unicode whitespace (U+00A0, U+3000, ...) separates tokens as
// Python's str.split() does.
std::string tokenize_13a(std::string_view line);

// ---- BLEU ----------------------------------------------------------------------------------

// TOML keys of a generation task's [task.<name>.bleu] (all optional).
struct BleuConfig {
  std::string tokenize = "13a";  // 13a | none
  std::string smooth = "exp";    // exp | floor | add-k | none (sacrebleu's names)
  double smooth_value = -1;      // < 0: sacrebleu's default (floor 0.1, add-k 1)
  int max_order = 4;
  bool lowercase = false;
  bool effective_order = false;  // sentence_bleu() always uses it

  static BleuConfig from(const core::ConfigSection& s);
  void validate() const;  // ConfigError naming the key
  double effective_smooth_value() const;
};

// Sufficient statistics: summing them over sentences gives the corpus's.
struct BleuStats {
  std::vector<double> correct;  // (max_order) clipped matches per order
  std::vector<double> total;    // (max_order) hypothesis n-grams per order
  double sys_len = 0;           // hypothesis tokens
  double ref_len = 0;           // closest reference's tokens
  void add(const BleuStats& o);
};

struct BleuScore {
  double score = 0;                 // 0..100
  std::vector<double> precisions;   // per order, 0..100 (smoothed)
  double bp = 0;                    // brevity penalty
  double sys_len = 0, ref_len = 0;  // tokens
  // "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)"
  std::string to_string() const;
};

// Statistics of one hypothesis against its references (at least one; DataError
// otherwise). Empty strings are fine (no n-grams).
BleuStats bleu_stats(std::string_view hypothesis, const std::vector<std::string>& references,
                     const BleuConfig& cfg = {});
// BLEU from (summed) statistics.
BleuScore compute_bleu(const BleuStats& stats, const BleuConfig& cfg = {});
// Corpus BLEU: references[i] are the references of hypotheses[i] (any number,
// at least one each). DataError when the sizes differ or a list is empty.
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references,
                      const BleuConfig& cfg = {});
// Sentence BLEU (effective order on, as sacrebleu's sentence_score).
BleuScore sentence_bleu(std::string_view hypothesis, const std::vector<std::string>& references,
                        BleuConfig cfg = {});

// Sentence BLEU (effective order) of every text against all the other texts as
// references, in O(total tokens) rather than O(texts^2): the reference counts of
// text i are the maximum over the others, kept as the largest and second-largest
// count of each n-gram. Equals sentence_bleu(texts[i], texts without i) for each i
// (tests/eval). Fewer than 2 texts: all 0.
std::vector<double> leave_one_out_bleu(const std::vector<std::string>& texts, BleuConfig cfg = {});

// ---- chrF ----------------------------------------------------------------------------------

struct ChrfConfig {
  int char_order = 6;
  double beta = 2;
  bool whitespace = false;  // true: spaces are part of character n-grams
};

// Per order: hypothesis n-grams, reference n-grams, matches (3 x char_order).
using ChrfStats = std::vector<double>;
// Statistics against the best-scoring reference (at least one).
ChrfStats chrf_stats(std::string_view hypothesis, const std::vector<std::string>& references,
                     const ChrfConfig& cfg = {});
// chrF (0..100) from (summed) statistics: the F-beta of the precision and
// recall averaged over the orders where both sides have n-grams.
double compute_chrf(const ChrfStats& stats, const ChrfConfig& cfg = {});
double corpus_chrf(const std::vector<std::string>& hypotheses,
                   const std::vector<std::vector<std::string>>& references,
                   const ChrfConfig& cfg = {});

}  // namespace shardlm::eval
