// BLEU and chrF (see bleu.h): the 13a tokenizer, n-gram statistics, the score.
#include "eval/bleu.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>

#include <fmt/format.h>

#include "core/error.h"
#include "data/utf8.h"
#include "eval/text_util.h"

namespace shardlm::eval {

// ---- tokenizers ---------------------------------------------------------------------------

namespace {

// sacrebleu's first 13a rule: [{-~], [[-`], [ -&], [(-+], [:-@], "/" get spaces around.
bool is_13a_punct(unsigned char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
         (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}
bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
bool is_period_comma(unsigned char c) {
  return c == '.' || c == ',';
}

// Applies one two-character rule as Python's re.sub does: left to right, matches
// do not overlap. `emit` writes the replacement of s[i], s[i+1].
template <class Match, class Emit>
std::string sub2(const std::string& s, Match match, Emit emit) {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() &&
        match(static_cast<unsigned char>(s[i]), static_cast<unsigned char>(s[i + 1]))) {
      emit(out, s[i], s[i + 1]);
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

}  // namespace

std::string tokenize_13a(std::string_view line) {
  std::string s(line);
  // mteval's pre-processing: drop <skipped>, join "-\n", newlines become spaces,
  // the four XML entities become characters.
  replace_all(s, "<skipped>", "");
  replace_all(s, "-\n", "");
  replace_all(s, "\n", " ");
  if (s.find('&') != std::string::npos) {
    replace_all(s, "&quot;", "\"");
    replace_all(s, "&amp;", "&");
    replace_all(s, "&lt;", "<");
    replace_all(s, "&gt;", ">");
  }
  // Rule 1: punctuation (not . , - ' nor letters and digits) is split off.
  std::string t;
  t.reserve(s.size() * 2);
  for (char c : s) {
    if (is_13a_punct(static_cast<unsigned char>(c))) {
      t += ' ';
      t += c;
      t += ' ';
    } else {
      t += c;
    }
  }
  // Rule 2: "x." -> "x . " unless x is a digit.
  t = sub2(
      t, [](unsigned char a, unsigned char b) { return !is_digit(a) && is_period_comma(b); },
      [](std::string& o, char a, char b) {
        o += a;
        o += ' ';
        o += b;
        o += ' ';
      });
  // Rule 3: ".x" -> " . x" unless x is a digit.
  t = sub2(
      t, [](unsigned char a, unsigned char b) { return is_period_comma(a) && !is_digit(b); },
      [](std::string& o, char a, char b) {
        o += ' ';
        o += a;
        o += ' ';
        o += b;
      });
  // Rule 4: "3-" -> "3 - ".
  t = sub2(
      t, [](unsigned char a, unsigned char b) { return is_digit(a) && b == '-'; },
      [](std::string& o, char a, char b) {
        o += a;
        o += ' ';
        o += b;
        o += ' ';
      });
  return join(split_whitespace(t), " ");
}

// ---- BLEU ----------------------------------------------------------------------------------

BleuConfig BleuConfig::from(const core::ConfigSection& s) {
  BleuConfig c;
  c.tokenize = s.get("tokenize", c.tokenize);
  c.smooth = s.get("smooth", c.smooth);
  c.smooth_value = s.get("smooth_value", c.smooth_value);
  c.max_order = s.get("max_order", c.max_order);
  c.lowercase = s.get("lowercase", c.lowercase);
  c.effective_order = s.get("effective_order", c.effective_order);
  return c;
}

void BleuConfig::validate() const {
  core::config_require(tokenize == "13a" || tokenize == "none", "tokenize", tokenize,
                       "13a or none");
  core::config_require(
      smooth == "exp" || smooth == "floor" || smooth == "add-k" || smooth == "none", "smooth",
      smooth, "exp, floor, add-k or none");
  core::config_require(max_order >= 1 && max_order <= 9, "max_order", std::to_string(max_order),
                       "1..9");
}

double BleuConfig::effective_smooth_value() const {
  if (smooth_value >= 0) return smooth_value;
  if (smooth == "floor") return 0.1;
  if (smooth == "add-k") return 1;
  return 0;
}

void BleuStats::add(const BleuStats& o) {
  if (correct.empty()) {
    *this = o;
    return;
  }
  SHARDLM_CHECK(correct.size() == o.correct.size(), core::DataError,
                "BLEU statistics of different orders ({} and {})", correct.size(),
                o.correct.size());
  for (size_t n = 0; n < correct.size(); ++n) {
    correct[n] += o.correct[n];
    total[n] += o.total[n];
  }
  sys_len += o.sys_len;
  ref_len += o.ref_len;
}

std::string BleuScore::to_string() const {
  std::string p;
  for (size_t i = 0; i < precisions.size(); ++i)
    p += fmt::format("{}{:.1f}", i ? "/" : "", precisions[i]);
  const double ratio = ref_len > 0 ? sys_len / ref_len : 0;
  return fmt::format("BLEU = {:.2f} {} (BP = {:.3f} ratio = {:.3f} hyp_len = {} ref_len = {})",
                     score, p, bp, ratio, static_cast<long long>(sys_len),
                     static_cast<long long>(ref_len));
}

namespace {

// Per order (index n - 1): n-gram (tokens joined by spaces) -> count.
using NgramCounts = std::vector<std::unordered_map<std::string, int>>;

std::vector<std::string> bleu_tokens(std::string_view text, const BleuConfig& cfg) {
  std::string s(text);
  if (cfg.lowercase) s = lowercase_utf8(s);
  return cfg.tokenize == "13a" ? split_whitespace(tokenize_13a(s)) : split_whitespace(s);
}

NgramCounts count_ngrams(const std::vector<std::string>& toks, int max_order) {
  NgramCounts c(max_order);
  for (size_t i = 0; i < toks.size(); ++i) {
    std::string g;
    for (int n = 1; n <= max_order && i + n <= toks.size(); ++n) {
      if (n > 1) g += ' ';
      g += toks[i + n - 1];
      ++c[n - 1][g];
    }
  }
  return c;
}

}  // namespace

namespace {

// Sentence-local token ids: an n-gram of up to 4 ids below 2^16 packs exactly into
// 64 bits. Per order, the packed n-grams sorted and run-length counted: counting
// and clipping become sorts and merges, several times faster than hashing strings.
using Runs = std::vector<std::pair<uint64_t, int>>;  // (n-gram, count), by n-gram

std::vector<Runs> packed_runs(const std::vector<uint32_t>& ids, int max_order) {
  std::vector<Runs> out(max_order);
  std::vector<uint64_t> keys;
  for (int n = 1; n <= max_order; ++n) {
    keys.clear();
    for (size_t i = 0; i + n <= ids.size(); ++i) {
      uint64_t key = 0;
      for (int j = 0; j < n; ++j) key = (key << 16) | ids[i + j];
      keys.push_back(key);
    }
    std::sort(keys.begin(), keys.end());
    Runs& r = out[n - 1];
    for (uint64_t k : keys) {
      if (!r.empty() && r.back().first == k)
        ++r.back().second;
      else
        r.emplace_back(k, 1);
    }
  }
  return out;
}

void clipped_counts_packed(const std::vector<uint32_t>& hyp,
                           const std::vector<std::vector<uint32_t>>& refs, int N, BleuStats* st) {
  const std::vector<Runs> h = packed_runs(hyp, N);
  std::vector<Runs> ref_max = packed_runs(refs[0], N);
  if (refs.size() > 1) {  // the maximum count per n-gram over the references
    for (size_t r = 1; r < refs.size(); ++r) {
      const std::vector<Runs> more = packed_runs(refs[r], N);
      for (int n = 0; n < N; ++n)
        ref_max[n].insert(ref_max[n].end(), more[n].begin(), more[n].end());
    }
    for (auto& runs : ref_max) {
      std::sort(runs.begin(), runs.end());
      Runs merged;
      for (const auto& [k, c] : runs) {
        if (!merged.empty() && merged.back().first == k)
          merged.back().second = std::max(merged.back().second, c);
        else
          merged.emplace_back(k, c);
      }
      runs.swap(merged);
    }
  }
  for (int n = 0; n < N; ++n) {
    size_t j = 0;
    for (const auto& [k, c] : h[n]) {
      st->total[n] += c;
      while (j < ref_max[n].size() && ref_max[n][j].first < k) ++j;
      if (j < ref_max[n].size() && ref_max[n][j].first == k)
        st->correct[n] += std::min(c, ref_max[n][j].second);
    }
  }
}

// Clipped counts of `hyp` against the per-order maximum over `refs` (count_fn
// turns one token sequence into per-order counts: string or packed keys).
template <class Seq, class CountFn>
void clipped_counts(const Seq& hyp, const std::vector<Seq>& refs, int N, CountFn count_fn,
                    BleuStats* st) {
  auto ref_max = count_fn(refs[0]);
  for (size_t r = 1; r < refs.size(); ++r) {
    const auto rc = count_fn(refs[r]);
    for (int n = 0; n < N; ++n)
      for (const auto& [g, k] : rc[n]) {
        int& m = ref_max[n][g];
        m = std::max(m, k);
      }
  }
  const auto hc = count_fn(hyp);
  for (int n = 0; n < N; ++n)
    for (const auto& [g, k] : hc[n]) {
      st->total[n] += k;
      auto it = ref_max[n].find(g);
      if (it != ref_max[n].end()) st->correct[n] += std::min(k, it->second);
    }
}

}  // namespace

BleuStats bleu_stats(std::string_view hypothesis, const std::vector<std::string>& references,
                     const BleuConfig& cfg) {
  SHARDLM_CHECK(!references.empty(), core::DataError,
                "BLEU needs at least one reference for hypothesis \"{}\"",
                hypothesis.substr(0, 60));
  const int N = cfg.max_order;
  const std::vector<std::string> hyp = bleu_tokens(hypothesis, cfg);
  std::vector<std::vector<std::string>> ref_toks;
  ref_toks.reserve(references.size());
  for (const auto& r : references) ref_toks.push_back(bleu_tokens(r, cfg));
  BleuStats st;
  st.correct.assign(N, 0);
  st.total.assign(N, 0);
  st.sys_len = static_cast<double>(hyp.size());
  // The closest reference length; the shorter one on a tie.
  double closest_diff = -1;
  for (const auto& rt : ref_toks) {
    const double len = static_cast<double>(rt.size());
    const double diff = std::abs(st.sys_len - len);
    if (closest_diff < 0 || diff < closest_diff || (diff == closest_diff && len < st.ref_len)) {
      closest_diff = diff;
      st.ref_len = len;
    }
  }
  // Intern the tokens of this sentence; pack n-grams when they fit 64 bits.
  std::unordered_map<std::string_view, uint32_t> intern;
  auto to_ids = [&](const std::vector<std::string>& toks) {
    std::vector<uint32_t> ids;
    ids.reserve(toks.size());
    for (const auto& t : toks)
      ids.push_back(intern.emplace(t, static_cast<uint32_t>(intern.size())).first->second);
    return ids;
  };
  const std::vector<uint32_t> hyp_ids = to_ids(hyp);
  std::vector<std::vector<uint32_t>> ref_ids;
  for (const auto& rt : ref_toks) ref_ids.push_back(to_ids(rt));
  if (N <= 4 && intern.size() < (1u << 16))
    clipped_counts_packed(hyp_ids, ref_ids, N, &st);
  else
    clipped_counts(
        hyp, ref_toks, N, [N](const std::vector<std::string>& t) { return count_ngrams(t, N); },
        &st);
  return st;
}

BleuScore compute_bleu(const BleuStats& stats_in, const BleuConfig& cfg) {
  BleuStats s = stats_in;
  const int N = cfg.max_order;
  if (s.correct.empty()) {  // no sentence at all
    s.correct.assign(N, 0);
    s.total.assign(N, 0);
  }
  SHARDLM_CHECK(static_cast<int>(s.correct.size()) == N, core::DataError,
                "BLEU statistics of order {} scored with max_order {}", s.correct.size(), N);
  BleuScore r;
  r.sys_len = s.sys_len;
  r.ref_len = s.ref_len;
  r.precisions.assign(N, 0.0);
  r.bp = s.sys_len < s.ref_len ? (s.sys_len > 0 ? std::exp(1 - s.ref_len / s.sys_len) : 0.0) : 1.0;
  // No match at all: 0 whatever the smoothing (sacrebleu issue #141).
  if (std::all_of(s.correct.begin(), s.correct.end(), [](double c) { return c == 0; })) return r;
  const double k = cfg.effective_smooth_value();
  double smooth_mteval = 1;
  int eff_order = N;
  for (int n = 1; n <= N; ++n) {
    double& correct = s.correct[n - 1];
    double& total = s.total[n - 1];
    if (cfg.smooth == "add-k" && n > 1) {
      correct += k;
      total += k;
    }
    if (total == 0) break;
    if (cfg.effective_order) eff_order = n;
    if (correct == 0) {
      if (cfg.smooth == "exp") {
        smooth_mteval *= 2;
        r.precisions[n - 1] = 100.0 / (smooth_mteval * total);
      } else if (cfg.smooth == "floor") {
        r.precisions[n - 1] = 100.0 * k / total;
      }
    } else {
      r.precisions[n - 1] = 100.0 * correct / total;
    }
  }
  double log_sum = 0;
  for (int n = 0; n < eff_order; ++n)
    log_sum += r.precisions[n] > 0 ? std::log(r.precisions[n]) : -9999999999.0;
  r.score = r.bp * std::exp(log_sum / eff_order);
  return r;
}

namespace {
void check_parallel(size_t hyps, const std::vector<std::vector<std::string>>& refs) {
  SHARDLM_CHECK(hyps == refs.size(), core::DataError,
                "{} hypotheses but {} reference lists: one list per hypothesis", hyps, refs.size());
  for (size_t i = 0; i < refs.size(); ++i)
    SHARDLM_CHECK(!refs[i].empty(), core::DataError, "hypothesis {} has no reference", i);
}
}  // namespace

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references,
                      const BleuConfig& cfg) {
  check_parallel(hypotheses.size(), references);
  BleuStats sum;
  for (size_t i = 0; i < hypotheses.size(); ++i)
    sum.add(bleu_stats(hypotheses[i], references[i], cfg));
  return compute_bleu(sum, cfg);
}

BleuScore sentence_bleu(std::string_view hypothesis, const std::vector<std::string>& references,
                        BleuConfig cfg) {
  cfg.effective_order = true;
  return compute_bleu(bleu_stats(hypothesis, references, cfg), cfg);
}

std::vector<double> leave_one_out_bleu(const std::vector<std::string>& texts, BleuConfig cfg) {
  cfg.effective_order = true;
  const size_t n_texts = texts.size();
  std::vector<double> out(n_texts, 0.0);
  if (n_texts < 2) return out;
  const int N = cfg.max_order;
  std::vector<NgramCounts> counts;
  std::vector<double> lens;
  counts.reserve(n_texts);
  for (const auto& t : texts) {
    const auto toks = bleu_tokens(t, cfg);
    lens.push_back(static_cast<double>(toks.size()));
    counts.push_back(count_ngrams(toks, N));
  }
  // Per n-gram: the largest count, the text that holds it, the largest count of the rest.
  struct Top2 {
    int c1 = 0, c2 = 0;
    size_t owner = 0;
  };
  std::vector<std::unordered_map<std::string, Top2>> top(N);
  for (size_t i = 0; i < n_texts; ++i)
    for (int n = 0; n < N; ++n)
      for (const auto& [g, k] : counts[i][n]) {
        Top2& t = top[n][g];
        if (k > t.c1) {
          t.c2 = t.c1;
          t.c1 = k;
          t.owner = i;
        } else if (k > t.c2) {
          t.c2 = k;
        }
      }
  // Lengths of the others: the closest to lens[i] (the shorter on a tie), with one
  // copy of lens[i] itself removed.
  std::map<double, int> len_count;
  for (double l : lens) ++len_count[l];
  for (size_t i = 0; i < n_texts; ++i) {
    const double h = lens[i];
    double ref_len;
    if (len_count[h] >= 2) {
      ref_len = h;
    } else {
      auto it = len_count.find(h);
      const bool has_lo = it != len_count.begin();
      const bool has_hi = std::next(it) != len_count.end();
      const double lo = has_lo ? std::prev(it)->first : 0, hi = has_hi ? std::next(it)->first : 0;
      ref_len = !has_lo ? hi : !has_hi ? lo : (h - lo <= hi - h ? lo : hi);
    }
    BleuStats st;
    st.correct.assign(N, 0);
    st.total.assign(N, 0);
    st.sys_len = h;
    st.ref_len = ref_len;
    for (int n = 0; n < N; ++n)
      for (const auto& [g, k] : counts[i][n]) {
        const Top2& t = top[n].at(g);
        st.total[n] += k;
        st.correct[n] += std::min(k, t.owner == i ? t.c2 : t.c1);
      }
    out[i] = compute_bleu(st, cfg).score;
  }
  return out;
}

// ---- chrF ----------------------------------------------------------------------------------

namespace {

// The code points of `s` as UTF-8 pieces (an invalid byte stands alone).
std::vector<std::string_view> characters(std::string_view s, bool keep_whitespace) {
  std::vector<std::string_view> out;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    size_t bad = 0;
    size_t len = data::utf8_char(p + i, s.size() - i, &bad);
    if (len == 0) len = bad;
    std::string_view c = s.substr(i, len);
    if (keep_whitespace || !is_whitespace_char(c)) out.push_back(c);
    i += len;
  }
  return out;
}

std::vector<std::unordered_map<std::string, int>> char_ngrams(std::string_view s,
                                                              const ChrfConfig& cfg) {
  const auto chars = characters(s, cfg.whitespace);
  std::vector<std::unordered_map<std::string, int>> grams(cfg.char_order);
  for (int n = 1; n <= cfg.char_order; ++n)
    for (size_t i = 0; i + n <= chars.size(); ++i) {
      std::string g;
      for (int j = 0; j < n; ++j) g.append(chars[i + j]);
      ++grams[n - 1][g];
    }
  return grams;
}

}  // namespace

ChrfStats chrf_stats(std::string_view hypothesis, const std::vector<std::string>& references,
                     const ChrfConfig& cfg) {
  SHARDLM_CHECK(!references.empty(), core::DataError,
                "chrF needs at least one reference for hypothesis \"{}\"",
                hypothesis.substr(0, 60));
  const auto hyp = char_ngrams(hypothesis, cfg);
  ChrfStats best;
  double best_f = -1;
  for (const auto& ref : references) {
    const auto rg = char_ngrams(ref, cfg);
    ChrfStats st(3 * cfg.char_order, 0.0);
    for (int n = 0; n < cfg.char_order; ++n) {
      for (const auto& [g, k] : hyp[n]) {
        st[3 * n] += k;
        auto it = rg[n].find(g);
        if (it != rg[n].end()) st[3 * n + 2] += std::min(k, it->second);
      }
      for (const auto& [g, k] : rg[n]) st[3 * n + 1] += k;
    }
    const double f = compute_chrf(st, cfg);
    if (f > best_f) {
      best_f = f;
      best = std::move(st);
    }
  }
  return best;
}

double compute_chrf(const ChrfStats& st, const ChrfConfig& cfg) {
  if (st.empty()) return 0;
  const double factor = cfg.beta * cfg.beta;
  double avg_prec = 0, avg_rec = 0;
  int eff = 0;
  for (int n = 0; n < cfg.char_order; ++n) {
    const double hyp = st[3 * n], ref = st[3 * n + 1], match = st[3 * n + 2];
    if (hyp > 0 && ref > 0) {
      avg_prec += match / hyp;
      avg_rec += match / ref;
      ++eff;
    }
  }
  if (eff == 0) return 0;
  avg_prec /= eff;
  avg_rec /= eff;
  if (avg_prec + avg_rec == 0) return 0;
  return 100 * (1 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec);
}

double corpus_chrf(const std::vector<std::string>& hypotheses,
                   const std::vector<std::vector<std::string>>& references, const ChrfConfig& cfg) {
  check_parallel(hypotheses.size(), references);
  ChrfStats sum(3 * cfg.char_order, 0.0);
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    ChrfStats s = chrf_stats(hypotheses[i], references[i], cfg);
    for (size_t j = 0; j < sum.size(); ++j) sum[j] += s[j];
  }
  return compute_chrf(sum, cfg);
}

}  // namespace shardlm::eval
