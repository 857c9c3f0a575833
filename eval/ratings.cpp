// The rating workflow and its summary (see ratings.h).
#include "eval/ratings.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <istream>
#include <ostream>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "eval/text_util.h"

namespace shardlm::eval {

namespace fs = std::filesystem;

std::vector<RatingItem> read_rating_items(const std::string& path) {
  std::vector<RatingItem> items;
  std::set<std::string> ids;
  for (const auto& l : read_jsonl(path)) {
    RatingItem it;
    it.id = l.get<std::string>("id");
    it.prompt = l.get<std::string>("prompt");
    SHARDLM_CHECK(l.value.contains("outputs") && l.value["outputs"].is_array(), core::DataError,
                  "{}: missing field 'outputs' (a list of {{\"model\", \"text\"}})", l.where());
    for (const auto& o : l.value["outputs"]) {
      SHARDLM_CHECK(o.is_object() && o.contains("text") && o["text"].is_string(), core::DataError,
                    "{}: each output needs a string 'text'", l.where());
      it.outputs.push_back({o.value("model", std::string("model")), o["text"].get<std::string>()});
    }
    SHARDLM_CHECK(it.outputs.size() == 1 || it.outputs.size() == 2, core::DataError,
                  "{}: {} outputs; rating takes 1 (a 1-5 score) or 2 (A/B)", l.where(),
                  it.outputs.size());
    SHARDLM_CHECK(ids.insert(it.id).second, core::DataError, "{}: id '{}' appears twice", l.where(),
                  it.id);
    items.push_back(std::move(it));
  }
  return items;
}

bool shown_swapped(const std::string& id, uint64_t seed) {
  // FNV-1a of the id, mixed with the seed (splitmix64's finaliser): stable across runs.
  uint64_t h = 1469598103934665603ull ^ (seed * 0x9E3779B97F4A7C15ull);
  for (unsigned char c : id) h = (h ^ c) * 1099511628211ull;
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 29;
  return (h & 1) != 0;
}

namespace {

std::string now_iso() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Drops a torn last line (no newline: a crash while appending) so that the next
// append starts a fresh line. Whole lines are never touched.
void drop_torn_tail(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.empty() || text.back() == '\n') return;
  const size_t keep = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  fs::resize_file(path, keep, ec);
  SHARDLM_CHECK(!ec, core::DataError, "cannot drop the torn last line of {}: {}", path,
                ec.message());
}

void show_item(std::ostream& o, const RatingItem& it, bool swapped, size_t index, size_t total) {
  o << fmt::format("\n==== item {} of {} (id {}) ====\n--- prompt ---\n{}\n", index, total, it.id,
                   it.prompt);
  if (it.outputs.size() == 1) {
    o << "--- output ---\n" << it.outputs[0].text << "\n";
  } else {
    const auto& first = it.outputs[swapped ? 1 : 0];
    const auto& second = it.outputs[swapped ? 0 : 1];
    o << "--- A ---\n" << first.text << "\n--- B ---\n" << second.text << "\n";
  }
}

}  // namespace

RatingSessionResult run_rating_session(const RatingOptions& opts, std::istream& in,
                                       std::ostream& out) {
  const std::vector<RatingItem> items = read_rating_items(opts.samples);
  drop_torn_tail(opts.out);
  std::set<std::string> done;
  if (fs::exists(opts.out))
    for (const auto& l : read_jsonl(opts.out)) done.insert(l.get<std::string>("id"));
  RatingSessionResult r;
  size_t index = 0;
  for (const auto& it : items) {
    ++index;
    if (done.count(it.id)) {
      ++r.already;
      continue;
    }
    const bool pair = it.outputs.size() == 2;
    const bool swapped = pair && shown_swapped(it.id, opts.seed);
    show_item(out, it, swapped, index, items.size());
    nlohmann::json rec;
    bool answered = false, skip = false;
    while (!answered && !skip) {
      out << (pair ? "Which is better? a / b / t(ie)  (s skip, q quit): "
                   : "Score 1 (bad) .. 5 (good)  (s skip, q quit): ")
          << std::flush;
      std::string line;
      if (!std::getline(in, line)) {
        out << "\n";
        r.finished = false;
        return r;
      }
      const std::string a = lowercase_utf8(trim(line));
      if (a == "q" || a == "quit") {
        r.finished = false;
        return r;
      }
      if (a == "s" || a == "skip") {
        skip = true;
        break;
      }
      rec = {{"id", it.id}, {"rater", opts.rater}, {"time", now_iso()}};
      if (!pair && a.size() == 1 && a[0] >= '1' && a[0] <= '5') {
        rec["kind"] = "score";
        rec["model"] = it.outputs[0].model;
        rec["score"] = a[0] - '0';
        answered = true;
      } else if (pair && (a == "a" || a == "b" || a == "t" || a == "tie")) {
        const std::string shown_a = it.outputs[swapped ? 1 : 0].model;
        const std::string shown_b = it.outputs[swapped ? 0 : 1].model;
        rec["kind"] = "pair";
        rec["shown"] = {shown_a, shown_b};
        rec["choice"] = a == "a" ? "A" : a == "b" ? "B" : "tie";
        rec["winner"] = a == "a" ? shown_a : a == "b" ? shown_b : "tie";
        answered = true;
      } else {
        out << "  (not an answer: " << (pair ? "a, b or t" : "1 to 5") << ")\n";
      }
    }
    if (skip) {
      ++r.skipped;
      continue;
    }
    append_jsonl(opts.out, rec);
    ++r.rated;
  }
  r.finished = r.skipped == 0;
  return r;
}

// ---- aggregation ----------------------------------------------------------------------------

double PairRecord::win_rate_a() const {
  const int n = wins_a + wins_b + ties;
  return n ? (wins_a + 0.5 * ties) / n : 0.0;
}

RatingSummary summarize_ratings(const std::vector<JsonLine>& ratings, const BootstrapOptions& bs) {
  RatingSummary s;
  std::map<std::string, std::vector<double>> scores;
  std::vector<PairOutcome> outcomes;
  std::map<std::string, std::vector<std::string>> units;  // item -> category per rater
  for (const auto& l : ratings) {
    const std::string kind = l.get<std::string>("kind");
    if (kind == "score") {
      const int64_t v = l.get<int64_t>("score");
      SHARDLM_CHECK(v >= 1 && v <= 5, core::DataError, "{}: score {} outside 1..5", l.where(), v);
      scores[l.get<std::string>("model")].push_back(static_cast<double>(v));
    } else if (kind == "pair") {
      const auto shown = l.get<std::vector<std::string>>("shown");
      SHARDLM_CHECK(shown.size() == 2, core::DataError, "{}: 'shown' needs two models", l.where());
      const std::string choice = l.get<std::string>("choice");
      SHARDLM_CHECK(choice == "A" || choice == "B" || choice == "tie" || choice == "both_bad" ||
                        choice == "skip",
                    core::DataError, "{}: choice '{}' is not A, B, tie, both_bad or skip",
                    l.where(), choice);
      if (choice == "skip") {
        ++s.skipped;
        continue;
      }
      if (choice == "both_bad") ++s.both_bad;
      PairOutcome o{shown[0], shown[1], choice == "A" ? 1.0 : choice == "B" ? 0.0 : 0.5};
      outcomes.push_back(o);
      const bool in_order = o.a < o.b;
      PairRecord& p = s.pairs[in_order ? std::make_pair(o.a, o.b) : std::make_pair(o.b, o.a)];
      const double score_first = in_order ? o.score_a : 1 - o.score_a;
      if (score_first == 0.5)
        ++p.ties;
      else if (score_first == 1)
        ++p.wins_a;
      else
        ++p.wins_b;
      if (o.a != o.b) {  // the same item rated again: what each rater said, models in name order
        const std::string item = l.value.contains("pair") ? "pair " + l.value["pair"].dump()
                                                          : "id " + l.get<std::string>("id");
        const std::string category = choice == "tie" || choice == "both_bad" ? choice
                                     : score_first == 1                      ? "first"
                                                                             : "second";
        units[item].push_back(category);
      }
    } else {
      SHARDLM_FAIL(core::DataError, "{}: kind '{}' is not score or pair", l.where(), kind);
    }
    if (l.value.contains("rater") && l.value["rater"].is_string())
      ++s.raters[l.value["rater"].get<std::string>()];
    ++s.answers;
  }
  for (const auto& [m, v] : scores) {
    s.mean_score[m] = bootstrap(mean_metric(v), bs);
    s.scores[m] = static_cast<int>(v.size());
  }
  if (!outcomes.empty()) {
    s.bradley_terry = bradley_terry(outcomes);
    s.bradley_terry_ci = bradley_terry_intervals(outcomes, bs);
    s.elo = elo(outcomes);
  }
  std::vector<std::vector<std::string>> rated_twice;
  double agree = 0, rater_pairs = 0;
  for (const auto& [item, cats] : units) {
    if (cats.size() < 2) continue;
    rated_twice.push_back(cats);
    for (size_t i = 0; i < cats.size(); ++i)
      for (size_t j = i + 1; j < cats.size(); ++j) {
        agree += cats[i] == cats[j];
        rater_pairs += 1;
      }
  }
  s.agreement_items = static_cast<int>(rated_twice.size());
  s.alpha = krippendorff_alpha(rated_twice);
  s.percent_agreement = rater_pairs > 0 ? agree / rater_pairs : std::nan("");
  return s;
}

nlohmann::json RatingSummary::to_json() const {
  auto real = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  nlohmann::json j{{"answers", answers}, {"skipped", skipped}, {"both_bad", both_bad}};
  for (const auto& [m, iv] : mean_score)
    j["scores"][m] = {{"mean", iv.value}, {"ci95", {iv.lo, iv.hi}}, {"n", scores.at(m)}};
  for (const auto& [ab, p] : pairs)
    j["pairs"].push_back({{"a", ab.first},
                          {"b", ab.second},
                          {"wins_a", p.wins_a},
                          {"wins_b", p.wins_b},
                          {"ties", p.ties},
                          {"win_rate_a", p.win_rate_a()}});
  if (!bradley_terry.empty()) j["bradley_terry"] = bradley_terry;
  for (const auto& [m, iv] : bradley_terry_ci)
    j["bradley_terry_ci95"][m] = iv.valid ? nlohmann::json{iv.lo, iv.hi} : nlohmann::json();
  if (!elo.empty()) j["elo"] = elo;
  if (!raters.empty()) j["raters"] = raters;
  j["agreement"] = {{"items", agreement_items},
                    {"krippendorff_alpha", real(alpha)},
                    {"percent", real(percent_agreement)}};
  return j;
}

std::string RatingSummary::to_markdown() const {
  std::string md = fmt::format("{} answers\n\n", answers);
  if (!mean_score.empty()) {
    md += "| model | mean score (1-5) | 95% CI | n |\n|---|---|---|---|\n";
    for (const auto& [m, iv] : mean_score)
      md += fmt::format("| {} | {:.2f} | [{:.2f}, {:.2f}] | {} |\n", m, iv.value, iv.lo, iv.hi,
                        scores.at(m));
    md += "\n";
  }
  if (!pairs.empty()) {
    md += "| A | B | A wins | B wins | ties | A win rate |\n|---|---|---|---|---|---|\n";
    for (const auto& [ab, p] : pairs)
      md += fmt::format("| {} | {} | {} | {} | {} | {:.3f} |\n", ab.first, ab.second, p.wins_a,
                        p.wins_b, p.ties, p.win_rate_a());
    md += "\n| model | Bradley-Terry strength | 95% CI | Elo |\n|---|---|---|---|\n";
    for (const auto& [m, v] : bradley_terry) {
      const auto ci = bradley_terry_ci.find(m);
      const std::string range = ci != bradley_terry_ci.end() && ci->second.valid
                                    ? fmt::format("[{:.3f}, {:.3f}]", ci->second.lo, ci->second.hi)
                                    : "-";
      md += fmt::format("| {} | {:.3f} | {} | {:.0f} |\n", m, v, range, elo.at(m));
    }
  }
  if (skipped > 0 || both_bad > 0)
    md += fmt::format("\n{} skipped, {} answered \"both bad\" (a tie in the rankings)\n", skipped,
                      both_bad);
  if (agreement_items > 0)
    md += fmt::format(
        "\nagreement on {} items rated twice or more: Krippendorff's alpha {}, {:.0f}% of rater "
        "pairs agree\n",
        agreement_items, std::isfinite(alpha) ? fmt::format("{:.3f}", alpha) : std::string("n/a"),
        100 * percent_agreement);
  return md;
}

}  // namespace shardlm::eval
