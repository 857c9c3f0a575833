// Diversity and answer matching (see text_metrics.h).
#include "eval/text_metrics.h"

#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "eval/text_util.h"

namespace shardlm::eval {

// ---- diversity ----------------------------------------------------------------------------

namespace {

// The n-grams of `toks` joined by spaces (13a tokens hold no whitespace).
std::vector<std::string> ngrams(const std::vector<std::string>& toks, int n) {
  std::vector<std::string> out;
  for (size_t i = 0; i + n <= toks.size(); ++i) {
    std::string g = toks[i];
    for (int j = 1; j < n; ++j) g += ' ' + toks[i + j];
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace

std::vector<std::string> words(std::string_view text) {
  return split_whitespace(tokenize_13a(text));
}

double distinct_n(const std::vector<std::vector<std::string>>& texts, int n) {
  std::unordered_set<std::string> unique;
  size_t total = 0;
  for (const auto& t : texts)
    for (auto& g : ngrams(t, n)) {
      unique.insert(std::move(g));
      ++total;
    }
  return total ? static_cast<double>(unique.size()) / static_cast<double>(total) : 0.0;
}

double repetition_rate(const std::vector<std::string>& tokens, int n) {
  const auto g = ngrams(tokens, n);
  if (g.empty()) return 0;
  const std::unordered_set<std::string> unique(g.begin(), g.end());
  return static_cast<double>(g.size() - unique.size()) / static_cast<double>(g.size());
}

double ngram_entropy(const std::vector<std::vector<std::string>>& texts, int n) {
  std::unordered_map<std::string, double> counts;
  double total = 0;
  for (const auto& t : texts)
    for (auto& g : ngrams(t, n)) {
      counts[std::move(g)] += 1;
      total += 1;
    }
  double h = 0;
  for (const auto& [g, c] : counts) h -= (c / total) * std::log2(c / total);
  return h;
}

double self_bleu(const std::vector<std::string>& texts, const BleuConfig& cfg) {
  if (texts.size() < 2) return 0;
  double sum = 0;
  for (double b : leave_one_out_bleu(texts, cfg)) sum += b;
  return sum / static_cast<double>(texts.size());
}

std::vector<std::string> split_sentences(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    std::string t = trim(cur);
    if (!t.empty()) out.push_back(std::move(t));
    cur.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      flush();
      continue;
    }
    cur += c;
    const bool end_mark = c == '.' || c == '!' || c == '?';
    if (end_mark && (i + 1 == text.size() || text[i + 1] == ' ' || text[i + 1] == '\t')) flush();
  }
  flush();
  return out;
}

// ---- answers ------------------------------------------------------------------------------

namespace {
bool is_ascii_punct(unsigned char c) {  // Python's string.punctuation
  return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
         (c >= '{' && c <= '~');
}
std::vector<std::string> answer_words(std::string_view s) {
  return split_whitespace(normalize_answer(s));
}
}  // namespace

std::string normalize_answer(std::string_view s) {
  std::string low = lowercase_utf8(s), kept;
  kept.reserve(low.size());
  for (char c : low)
    if (!is_ascii_punct(static_cast<unsigned char>(c))) kept += c;
  std::vector<std::string> out;
  for (auto& w : split_whitespace(kept))
    if (w != "a" && w != "an" && w != "the") out.push_back(std::move(w));
  return join(out, " ");
}

double exact_match(std::string_view prediction, const std::vector<std::string>& answers) {
  const std::string p = normalize_answer(prediction);
  for (const auto& a : answers)
    if (normalize_answer(a) == p) return 1;
  return 0;
}

double contains_match(std::string_view prediction, const std::vector<std::string>& answers) {
  const auto p = answer_words(prediction);
  for (const auto& a : answers) {
    const auto w = answer_words(a);
    if (w.empty()) continue;  // an answer of only articles/punctuation matches nothing
    for (size_t i = 0; i + w.size() <= p.size(); ++i)
      if (std::equal(w.begin(), w.end(), p.begin() + i)) return 1;
  }
  return 0;
}

double token_f1(std::string_view prediction, const std::vector<std::string>& answers) {
  const auto p = answer_words(prediction);
  double best = 0;
  for (const auto& a : answers) {
    const auto g = answer_words(a);
    if (p.empty() || g.empty()) {
      best = std::max(best, p.empty() && g.empty() ? 1.0 : 0.0);
      continue;
    }
    std::unordered_map<std::string, int> gc;
    for (const auto& w : g) ++gc[w];
    double common = 0;
    for (const auto& w : p)
      if (auto it = gc.find(w); it != gc.end() && it->second > 0) {
        --it->second;
        ++common;
      }
    if (common == 0) continue;
    const double prec = common / static_cast<double>(p.size());
    const double rec = common / static_cast<double>(g.size());
    best = std::max(best, 2 * prec * rec / (prec + rec));
  }
  return best;
}

}  // namespace shardlm::eval
