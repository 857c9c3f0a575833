// Torch-free metric tests: BLEU / chrF against sacrebleu's documented values and
// hand-computed cases, diversity, answer matching, bootstrap and rankings,
// JSONL errors, suites, and the rating workflow.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "eval/bleu.h"
#include "eval/jsonl.h"
#include "eval/ratings.h"
#include "eval/result.h"
#include "eval/stats.h"
#include "eval/suite.h"
#include "eval/text_metrics.h"
#include "eval/text_util.h"

using namespace shardlm::eval;
using shardlm::core::ConfigError;
using shardlm::core::DataError;
namespace fs = std::filesystem;

namespace {

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string tmp_dir(const std::string& name) {
  const fs::path d = fs::path(::testing::TempDir()) / ("shardlm_eval_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// The README example of sacrebleu (github.com/mjpost/sacrebleu, README.md and
// test/test_bleu.py): three hypotheses, two reference streams.
const std::vector<std::string> kHyps{"The dog bit the man.", "It wasn't surprising.",
                                     "The man had just bitten him."};
const std::vector<std::vector<std::string>> kRefs{
    {"The dog bit the man.", "The dog had bit the man."},
    {"It was not unexpected.", "No one was surprised."},
    {"The man bit him first.", "The man had bitten the dog."}};

}  // namespace

// ---- BLEU -------------------------------------------------------------------------------------

TEST(Bleu, SacrebleuReadmeExample) {
  const BleuScore b = corpus_bleu(kHyps, kRefs);
  EXPECT_NEAR(b.score, 48.530827, 1e-6);  // sacrebleu test_corpus_bleu, default settings
  EXPECT_EQ(
      b.to_string(),
      "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)");
  BleuConfig none;
  none.tokenize = "none";
  EXPECT_NEAR(corpus_bleu(kHyps, kRefs, none).score, 49.1919566, 1e-6);
  BleuConfig nosmooth;
  nosmooth.smooth = "none";
  EXPECT_NEAR(corpus_bleu(kHyps, kRefs, nosmooth).score, 48.530827, 1e-6);
  // Empty hypotheses are kept (and score 0), not dropped.
  const BleuScore e = corpus_bleu({"", "", ""}, kRefs);
  EXPECT_EQ(e.score, 0.0);
  EXPECT_EQ(e.sys_len, 0);
  EXPECT_EQ(e.ref_len, 17);  // the shorter reference of each pair: 6 + 5 + 6
}

TEST(Bleu, SentenceSmoothingOnUnicodeText) {
  // sacrebleu test/test_sentence_bleu.py (issue #98): Romanian with cedilla and comma letters.
  const std::string ref = "producţia de zahăr brut se exprimă în zahăr alb;";
  const std::string sys =
      "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;";
  struct Case {
    const char* smooth;
    double value;
    const char* tok;
    double expected;
  };
  for (const Case& c : {Case{"exp", -1, "13a", 8.493}, Case{"none", -1, "13a", 0.0},
                        Case{"floor", -1, "13a", 4.51688}, Case{"floor", 0.1, "13a", 4.51688},
                        Case{"floor", 0.5, "13a", 10.10}, Case{"add-k", -1, "13a", 14.882},
                        Case{"add-k", 1, "13a", 14.882}, Case{"add-k", 2, "13a", 21.389},
                        Case{"exp", -1, "none", 7.347}}) {
    BleuConfig cfg;
    cfg.smooth = c.smooth;
    cfg.smooth_value = c.value;
    cfg.tokenize = c.tok;
    EXPECT_NEAR(sentence_bleu(sys, {ref}, cfg).score, c.expected, 1e-3)
        << c.smooth << " " << c.value << " " << c.tok;
  }
  // No n-gram in common: 0 whatever the smoothing (sacrebleu #141).
  for (const char* s : {"exp", "none", "floor", "add-k"}) {
    BleuConfig cfg;
    cfg.smooth = s;
    EXPECT_EQ(sentence_bleu("this is a cat", {"okay thanks"}, cfg).score, 0.0) << s;
  }
}

TEST(Bleu, StatisticsAndScoringByHand) {
  BleuConfig raw;  // sacrebleu's raw_corpus_bleu: no tokenizer, floor smoothing, effective order
  raw.tokenize = "none";
  raw.smooth = "floor";
  raw.effective_order = true;
  // "am I am a character sequence" vs "I am a symbol string sequence a a" (test_bleu.py):
  // unigrams am, I, a, sequence match (4 of 6), bigrams "am I"? no: "I am", "am a" (2 of 5),
  // trigram "I am a" (1 of 4), no 4-gram (0 of 3).
  const BleuStats st =
      bleu_stats("am I am a character sequence", {"I am a symbol string sequence a a"}, raw);
  EXPECT_EQ(st.correct, (std::vector<double>{4, 2, 1, 0}));
  EXPECT_EQ(st.total, (std::vector<double>{6, 5, 4, 3}));
  raw.smooth_value = 0.1;
  // 6 hypothesis tokens, 8 reference tokens: bp = exp(1 - 8/6); precisions 4/6, 2/5, 1/4, 0.1/3.
  const double bp = std::exp(1 - 8.0 / 6);
  const double expect =
      bp *
      std::exp((std::log(400.0 / 6) + std::log(40.0) + std::log(25.0) + std::log(10.0 / 3)) / 4);
  EXPECT_NEAR(compute_bleu(st, raw).score, expect, 1e-9);
  EXPECT_NEAR(compute_bleu(st, raw).score / 100, 0.1555722182, 1e-8);  // test_offset
  raw.smooth_value = 0;  // floor 0: a zero precision makes BLEU 0
  EXPECT_NEAR(compute_bleu(st, raw).score, 0.0, 1e-12);

  // max_order 5 counts with string keys (4-grams and below pack into 64 bits): same counts.
  BleuConfig five = raw;
  five.max_order = 5;
  const BleuStats st5 =
      bleu_stats("am I am a character sequence", {"I am a symbol string sequence a a"}, five);
  EXPECT_EQ(st5.correct, (std::vector<double>{4, 2, 1, 0, 0}));
  EXPECT_EQ(st5.total, (std::vector<double>{6, 5, 4, 3, 2}));
  const BleuStats multi = bleu_stats("a b a b c", {"a b", "b a b c", "a a"}, five);
  BleuConfig four = five;
  four.max_order = 4;
  const BleuStats multi4 = bleu_stats("a b a b c", {"a b", "b a b c", "a a"}, four);
  for (int n = 0; n < 4; ++n) {
    EXPECT_EQ(multi.correct[n], multi4.correct[n]) << n;
    EXPECT_EQ(multi.total[n], multi4.total[n]) << n;
  }
  EXPECT_EQ(multi4.correct, (std::vector<double>{5, 3, 2, 1}));  // a: min(2, 2), b: 2, c: 1; ...

  // test_scoring: counts [9,7,5,3] of [10,8,6,4], lengths 11 and 11.
  BleuStats s2{{9, 7, 5, 3}, {10, 8, 6, 4}, 11, 11};
  EXPECT_NEAR(compute_bleu(s2, BleuConfig{}).score / 100, 0.8375922397, 1e-9);

  // Effective order (test_effective_order): orders without hypothesis n-grams drop out.
  raw.smooth_value = 0.01;
  EXPECT_NEAR(compute_bleu(bleu_stats("test", {"a test"}, raw), raw).score / 100,
              0.3678794411714425, 1e-9);
  EXPECT_NEAR(compute_bleu(bleu_stats("a test", {"a test"}, raw), raw).score / 100, 1.0, 1e-9);
  EXPECT_NEAR(compute_bleu(bleu_stats("a little test", {"a test"}, raw), raw).score / 100,
              0.03218297948685433, 1e-9);
}

TEST(Bleu, ModifiedPrecisionFromThePaper) {
  // Papineni et al. 2002, section 2.1: "the the the the the the the" against
  // "The cat is on the mat." / "There is a cat on the mat.": modified unigram
  // precision 2/7 (lowercased: "the" occurs twice in the first reference).
  BleuConfig lc;
  lc.lowercase = true;
  const BleuStats st = bleu_stats("the the the the the the the",
                                  {"The cat is on the mat.", "There is a cat on the mat."}, lc);
  EXPECT_EQ(st.correct[0], 2);
  EXPECT_EQ(st.total[0], 7);
  // Case matters without lowercasing: only one lowercase "the" per reference.
  EXPECT_EQ(bleu_stats("the the the the the the the", {"The cat is on the mat."}).correct[0], 1);
  // Closest reference length, the shorter one on a tie: hyp 3 tokens, refs 2 and 4.
  const BleuStats tie = bleu_stats("a b c", {"a b c d", "a b"});
  EXPECT_EQ(tie.ref_len, 2);
  EXPECT_EQ(bleu_stats("a b c", {"a b c d e", "x"}).ref_len, 1);  // a tie: the shorter
  EXPECT_EQ(bleu_stats("a b c", {"a b c d", "x"}).ref_len, 4);    // the closest, not the shortest
  // Brevity penalty by hand: 2 of the reference's 4 tokens, all matching.
  const BleuScore b = compute_bleu(bleu_stats("a b", {"a b c d"}), BleuConfig{});
  EXPECT_NEAR(b.bp, std::exp(1 - 4.0 / 2), 1e-12);
}

TEST(Bleu, ErrorsNameTheProblem) {
  EXPECT_THROW(corpus_bleu({"a"}, {{"a"}, {"b"}}), DataError);
  EXPECT_NE(what_of([] {
              corpus_bleu({"a", "b"}, {{"a"}, {}});
            }).find("hypothesis 1"),
            std::string::npos);
  EXPECT_THROW(bleu_stats("x", {}), DataError);
  BleuConfig bad;
  bad.smooth = "laplace";
  EXPECT_NE(what_of([&] { bad.validate(); }).find("smooth"), std::string::npos);
}

TEST(Bleu, Tokenizer13a) {
  EXPECT_EQ(tokenize_13a("Hello, world! It's 3.5 or 1,000 - 5-3 (ok)."),
            "Hello , world ! It's 3.5 or 1,000 - 5 - 3 ( ok ) .");
  EXPECT_EQ(tokenize_13a("a &amp; b &lt;c&gt; &quot;d&quot;"), "a & b < c > \" d \"");
  EXPECT_EQ(tokenize_13a("  spaced\tout\nlines  "), "spaced out lines");
  EXPECT_EQ(tokenize_13a("e.g. x"), "e . g . x");
  // Unicode: non-ASCII letters stay inside words; U+00A0 and U+3000 separate.
  EXPECT_EQ(tokenize_13a("naïve café.\u00a0日本\u3000語"), "naïve café . 日本 語");
  EXPECT_EQ(tokenize_13a(""), "");
}

TEST(Chrf, SacrebleuReadmeExample) {
  EXPECT_NEAR(corpus_chrf(kHyps, kRefs), 59.73, 0.005);  // sacrebleu README: chrF2 = 59.73
  EXPECT_NEAR(compute_chrf(chrf_stats("abc", {"abc"})), 100.0, 1e-9);
  EXPECT_EQ(compute_chrf(chrf_stats("xyz", {"abc"})), 0.0);
  EXPECT_EQ(compute_chrf(chrf_stats("", {"abc"})), 0.0);
  // Characters are code points: "é" is one character, so "é" vs "é" has one 1-gram.
  const ChrfStats u = chrf_stats("é", {"é"});
  EXPECT_EQ(u[0], 1);
  EXPECT_EQ(u[2], 1);
}

// ---- diversity --------------------------------------------------------------------------------

TEST(Diversity, HandComputedValues) {
  const std::vector<std::vector<std::string>> texts{{"a", "b", "a", "b"}, {"a", "c"}};
  EXPECT_NEAR(distinct_n(texts, 1), 3.0 / 6, 1e-12);                      // a b c of 6 tokens
  EXPECT_NEAR(distinct_n(texts, 2), 3.0 / 4, 1e-12);                      // ab ba ab ac: ab, ba, ac
  EXPECT_EQ(distinct_n(texts, 5), 0.0);                                   // no 5-gram at all
  EXPECT_NEAR(repetition_rate({"a", "b", "a", "b"}, 2), 1.0 / 3, 1e-12);  // ab ba ab
  EXPECT_EQ(repetition_rate({"a"}, 2), 0.0);
  // Unigram entropy of {a: 3, b: 2, c: 1}: -sum p log2 p.
  const double h =
      -(0.5 * std::log2(0.5) + (1.0 / 3) * std::log2(1.0 / 3) + (1.0 / 6) * std::log2(1.0 / 6));
  EXPECT_NEAR(ngram_entropy(texts, 1), h, 1e-12);
  EXPECT_EQ(ngram_entropy({}, 1), 0.0);
  EXPECT_NEAR(self_bleu({"the cat sat on the mat", "the cat sat on the mat"}), 100.0, 1e-9);
  EXPECT_EQ(self_bleu({"one two three four", "five six seven eight"}), 0.0);
  EXPECT_EQ(self_bleu({"alone"}), 0.0);
  // The O(n) leave-one-out equals the direct definition: each text against all others.
  std::mt19937 rng(3);
  const std::vector<std::string> vocab{"a", "b", "c", "d", "e", "the", "cat", ",", "."};
  std::vector<std::string> gen;
  for (int i = 0; i < 25; ++i) {
    std::string t;
    const int len = 1 + static_cast<int>(rng() % 12);
    for (int j = 0; j < len; ++j) t += vocab[rng() % vocab.size()] + " ";
    gen.push_back(t);
  }
  gen.push_back(gen[3]);  // a duplicate: its own copy counts as a reference
  const auto loo = leave_one_out_bleu(gen);
  double direct_sum = 0;
  for (size_t i = 0; i < gen.size(); ++i) {
    std::vector<std::string> others;
    for (size_t j = 0; j < gen.size(); ++j)
      if (j != i) others.push_back(gen[j]);
    const double direct = sentence_bleu(gen[i], others).score;
    EXPECT_NEAR(loo[i], direct, 1e-9) << i;
    direct_sum += direct;
  }
  EXPECT_NEAR(self_bleu(gen), direct_sum / gen.size(), 1e-9);
  EXPECT_EQ(words("Hi, there."), (std::vector<std::string>{"Hi", ",", "there", "."}));
  EXPECT_EQ(split_sentences("One. Two!\nThree? 3.5 stays"),
            (std::vector<std::string>{"One.", "Two!", "Three?", "3.5 stays"}));
}

// ---- answers ----------------------------------------------------------------------------------

TEST(Answers, SquadNormalisation) {
  EXPECT_EQ(normalize_answer("The  Eiffel-Tower!"), "eiffeltower");
  EXPECT_EQ(normalize_answer("An apple, a pear and THE plum."), "apple pear and plum");
  EXPECT_EQ(exact_match("Paris.", {"London", "paris"}), 1.0);
  EXPECT_EQ(exact_match("Paris is big", {"Paris"}), 0.0);
  EXPECT_EQ(contains_match("I think it is Paris, France", {"paris"}), 1.0);
  EXPECT_EQ(contains_match("a catalog", {"cat"}), 0.0);  // word-aligned
  EXPECT_EQ(contains_match("anything", {"the"}), 0.0);   // only an article: matches nothing
  EXPECT_EQ(contains_match("", {"x"}), 0.0);
  EXPECT_NEAR(token_f1("the big red dog", {"red dog"}), 2 * (2.0 / 3) * 1 / (2.0 / 3 + 1), 1e-12);
  EXPECT_EQ(token_f1("", {""}), 1.0);
  EXPECT_EQ(exact_match("Ünïcode", {"ünïcode"}), 1.0);
}

// ---- statistics -------------------------------------------------------------------------------

TEST(Stats, BootstrapIntervals) {
  const Interval c = bootstrap(mean_metric({2, 2, 2, 2}));
  EXPECT_TRUE(c.valid);
  EXPECT_EQ(c.value, 2);
  EXPECT_EQ(c.lo, 2);
  EXPECT_EQ(c.hi, 2);
  std::vector<double> x;
  for (int i = 0; i < 200; ++i) x.push_back(i % 2);  // mean 0.5, sd 0.5
  const Interval m = bootstrap(mean_metric(x));
  EXPECT_NEAR(m.value, 0.5, 1e-12);
  // The normal approximation: 0.5 +- 1.96 * 0.5 / sqrt(200) = +- 0.069.
  EXPECT_NEAR(m.lo, 0.5 - 0.069, 0.02);
  EXPECT_NEAR(m.hi, 0.5 + 0.069, 0.02);
  EXPECT_EQ(bootstrap(mean_metric(x)).lo, m.lo);  // seeded: reproducible
  EXPECT_FALSE(bootstrap(mean_metric({1})).valid);
  // Paired: the same system gives a zero difference; a system better on every item a positive one.
  double p = 0;
  const Interval same = paired_bootstrap(mean_metric(x), mean_metric(x), {}, &p);
  EXPECT_EQ(same.lo, 0);
  EXPECT_EQ(same.hi, 0);
  std::vector<double> y(x);
  for (auto& v : y) v += 0.1;
  const Interval better = paired_bootstrap(mean_metric(y), mean_metric(x), {}, &p);
  EXPECT_NEAR(better.lo, 0.1, 1e-9);
  EXPECT_LT(p, 0.01);
  EXPECT_THROW(paired_bootstrap(mean_metric({1, 2}), mean_metric({1, 2, 3})), DataError);
}

TEST(Stats, BradleyTerryAndElo) {
  // a beats b 3 times out of 4; b and c tie twice.
  std::vector<PairOutcome> o{{"a", "b", 1}, {"a", "b", 1},   {"b", "a", 1},
                             {"a", "b", 1}, {"b", "c", 0.5}, {"c", "b", 0.5}};
  auto bt = bradley_terry(o);
  ASSERT_EQ(bt.size(), 3u);
  EXPECT_GT(bt["a"], bt["b"]);
  EXPECT_NEAR(bt["b"], bt["c"], 0.3 * bt["b"]);
  EXPECT_NEAR(std::log(bt["a"]) + std::log(bt["b"]) + std::log(bt["c"]), 0.0, 1e-9);
  // Two players, n games each way symmetric: equal strengths.
  auto eq = bradley_terry({{"x", "y", 1}, {"x", "y", 0}});
  EXPECT_NEAR(eq["x"], eq["y"], 1e-9);
  // Elo: equal ratings, a win moves K/2 = 16 points.
  auto e = elo({{"a", "b", 1}});
  EXPECT_NEAR(e["a"], 1016, 1e-9);
  EXPECT_NEAR(e["b"], 984, 1e-9);
}

TEST(Stats, BradleyTerryIntervalsCoverTheEstimate) {
  std::vector<PairOutcome> o;
  for (int i = 0; i < 30; ++i) o.push_back({"a", "b", i < 22 ? 1.0 : 0.0});
  BootstrapOptions bs;
  bs.resamples = 300;
  auto ci = bradley_terry_intervals(o, bs);
  auto bt = bradley_terry(o);
  ASSERT_TRUE(ci.at("a").valid);
  EXPECT_EQ(ci.at("a").value, bt.at("a"));
  EXPECT_LT(ci.at("a").lo, bt.at("a"));
  EXPECT_GT(ci.at("a").hi, bt.at("a"));
  EXPECT_GT(ci.at("a").lo, 1.0);  // 22 of 30: a is better, and the interval says so
  EXPECT_LT(ci.at("b").hi, 1.0);
  EXPECT_FALSE(bradley_terry_intervals({{"a", "b", 1}}, bs).at("a").valid);
}

TEST(Stats, KrippendorffAlphaNominal) {
  // The nominal example of Krippendorff (2011) and Wikipedia's article: 4 observers,
  // 12 units, some values missing; alpha = 0.743.
  std::vector<std::vector<std::string>> units = {
      {"1", "1", "1"},      {"2", "2", "3", "2"}, {"3", "3", "3", "3"}, {"3", "3", "3", "3"},
      {"2", "2", "2", "2"}, {"1", "2", "3", "4"}, {"4", "4", "4", "4"}, {"1", "1", "2", "1"},
      {"2", "2", "2", "2"}, {"5", "5", "5"},      {"1", "1"},           {"3"}};
  EXPECT_NEAR(krippendorff_alpha(units), 0.7434210526, 1e-9);
  // Two raters on four items, agreeing on three: alpha = 1 - 7 * 2 / 30.
  EXPECT_NEAR(krippendorff_alpha({{"a", "a"}, {"b", "b"}, {"a", "b"}, {"b", "b"}}), 8.0 / 15,
              1e-12);
  EXPECT_NEAR(krippendorff_alpha({{"a", "a"}, {"b", "b"}}), 1.0, 1e-12);
  EXPECT_TRUE(std::isnan(krippendorff_alpha({{"a", "a"}, {"a", "a"}})));  // no variation
  EXPECT_TRUE(std::isnan(krippendorff_alpha({{"a"}, {"b"}})));            // nothing pairable
}

// ---- JSONL ------------------------------------------------------------------------------------

TEST(Jsonl, MalformedLineNamesFileAndLine) {
  const std::string d = tmp_dir("jsonl");
  const std::string f = d + "/items.jsonl";
  write(f, "{\"prompt\": \"a\"}\n\n{\"prompt\": \"b\",}\n");
  const std::string msg = what_of([&] { read_jsonl(f); });
  EXPECT_NE(msg.find(f + ":3"), std::string::npos) << msg;
  write(f, "{\"prompt\": 3}\n[1]\n");
  EXPECT_NE(what_of([&] { read_jsonl(f); }).find(f + ":2: expected a JSON object"),
            std::string::npos);
  write(f, "{\"prompt\": 3}\n");
  const auto lines = read_jsonl(f);
  EXPECT_NE(what_of([&] { lines[0].get<std::string>("prompt"); }).find(f + ":1: field 'prompt'"),
            std::string::npos);
  EXPECT_NE(what_of([&] { lines[0].get<std::string>("answers"); }).find("missing field 'answers'"),
            std::string::npos);
  write(f, "{\"a\": 1}\n{\"a\": 2}\n{\"a\": ");  // a torn last line (a crash while appending)
  EXPECT_THROW(read_jsonl(f), DataError);
  EXPECT_EQ(read_jsonl(f, true).size(), 2u);
  EXPECT_NE(what_of([&] { read_jsonl(d + "/missing.jsonl"); }).find("missing.jsonl"),
            std::string::npos);
}

// ---- suites -----------------------------------------------------------------------------------

TEST(Suite, ReadsTasksAndRejectsBadOnes) {
  const std::string d = tmp_dir("suite");
  write(d + "/facts.jsonl", "{\"prompt\": \"p\", \"answers\": [\"a\"]}\n");
  write(d + "/text.txt", "some text\n");
  write(d + "/s.toml",
        "[suite]\nname = \"t\"\ntasks = [\"ppl\", \"facts\"]\nbootstrap = 200\n"
        "[task.ppl]\nkind = \"perplexity\"\nfiles = [\"text.txt\"]\nstride = 16\n"
        "[task.facts]\nkind = \"factual\"\nfile = \"facts.jsonl\"\n"
        "[task.facts.generate]\nmax_new_tokens = 8\n");
  const SuiteConfig s = SuiteConfig::load(d + "/s.toml");
  EXPECT_EQ(s.name, "t");
  EXPECT_EQ(s.bootstrap, 200);
  ASSERT_EQ(s.tasks.size(), 2u);
  EXPECT_EQ(s.tasks[0].files[0], d + "/text.txt");  // relative to the suite file
  EXPECT_EQ(s.tasks[0].stride, 16);
  EXPECT_EQ(s.tasks[1].generate.max_new_tokens, 8);
  EXPECT_EQ(s.tasks[1].generate.strategy, "greedy");
  // Overrides.
  EXPECT_EQ(SuiteConfig::load(d + "/s.toml", {"task.facts.limit=1"}).tasks[1].limit, 1);

  auto error_of = [&](const std::string& toml) {
    write(d + "/bad.toml", toml);
    return what_of([&] { SuiteConfig::load(d + "/bad.toml"); });
  };
  std::string e = error_of("[suite]\ntasks = [\"x\"]\n[task.x]\nkind = \"sentiment\"\n");
  EXPECT_NE(e.find("kind"), std::string::npos) << e;
  EXPECT_NE(e.find("perplexity, choice, factual, generation"), std::string::npos) << e;
  e = error_of("[suite]\ntasks = [\"y\"]\n");
  EXPECT_NE(e.find("[task.y]"), std::string::npos) << e;
  e = error_of(
      "[suite]\ntasks = [\"x\"]\n[task.x]\nkind = \"factual\"\nfile = \"facts.jsonl\"\n"
      "stride = 3\n");  // a perplexity key on a factual task
  EXPECT_NE(e.find("task.x.stride"), std::string::npos) << e;
  e = error_of("[suite]\ntasks = [\"x\"]\n[task.x]\nkind = \"choice\"\nfile = \"nope.jsonl\"\n");
  EXPECT_NE(e.find("nope.jsonl"), std::string::npos) << e;
  e = error_of(
      "[suite]\ntasks = [\"x\"]\n[task.x]\nkind = \"generation\"\nfile = "
      "\"facts.jsonl\"\nmetrics = [\"rouge\"]\n");
  EXPECT_NE(e.find("rouge"), std::string::npos) << e;
  e = error_of("[suite]\ntasks = [\"x\"]\n[task.x]\nkind = \"perplexity\"\n");
  EXPECT_NE(e.find("neither is set"), std::string::npos) << e;
  e = error_of(
      "[suite]\ntasks = [\"x\"]\n[task.x]\nkind = \"perplexity\"\ndata = \"d\"\n"
      "files = [\"facts.jsonl\"]\n");
  EXPECT_NE(e.find("not both"), std::string::npos) << e;
  EXPECT_THROW(SuiteConfig::load(d + "/none.toml"), ConfigError);
}

// ---- ratings ----------------------------------------------------------------------------------

namespace {
std::string rating_samples(const std::string& d) {
  const std::string f = d + "/samples.jsonl";
  write(f,
        "{\"id\": \"p1\", \"prompt\": \"Say hi\", \"outputs\": [{\"model\": \"m1\", \"text\": "
        "\"hi\"}, {\"model\": \"m2\", \"text\": \"hello\"}]}\n"
        "{\"id\": \"p2\", \"prompt\": \"Count\", \"outputs\": [{\"model\": \"m1\", \"text\": "
        "\"1 2\"}, {\"model\": \"m2\", \"text\": \"1 2 3\"}]}\n"
        "{\"id\": \"s1\", \"prompt\": \"Poem\", \"outputs\": [{\"model\": \"m1\", \"text\": "
        "\"roses\"}]}\n");
  return f;
}
}  // namespace

TEST(Ratings, ScriptedSessionResumeAndSummary) {
  const std::string d = tmp_dir("ratings");
  RatingOptions o;
  o.samples = rating_samples(d);
  o.out = d + "/ratings.jsonl";
  o.rater = "tester";
  // Session 1: an invalid answer is asked again, then "a" for p1, then quit.
  std::istringstream in1("maybe\na\nq\n");
  std::ostringstream shown1;
  RatingSessionResult r1 = run_rating_session(o, in1, shown1);
  EXPECT_EQ(r1.rated, 1);
  EXPECT_FALSE(r1.finished);
  EXPECT_NE(shown1.str().find("not an answer"), std::string::npos);
  EXPECT_EQ(shown1.str().find("m1"), std::string::npos);  // blind: model names never shown
  auto lines = read_jsonl(o.out);
  ASSERT_EQ(lines.size(), 1u);
  const bool swapped = shown_swapped("p1", 0);
  EXPECT_EQ(lines[0].value["winner"], swapped ? "m2" : "m1");
  EXPECT_EQ(lines[0].value["rater"], "tester");
  // The A/B order is the same on every run.
  EXPECT_EQ(shown_swapped("p1", 0), swapped);
  // A crash while appending leaves a torn line: the next session drops it.
  { std::ofstream(o.out, std::ios::app) << "{\"id\": \"p2\", \"kin"; }
  // Session 2 resumes at p2: "t" (tie), then the single output gets "4"; end of input.
  std::istringstream in2("t\n4\n");
  std::ostringstream shown2;
  RatingSessionResult r2 = run_rating_session(o, in2, shown2);
  EXPECT_EQ(r2.already, 1);
  EXPECT_EQ(r2.rated, 2);
  EXPECT_TRUE(r2.finished);
  EXPECT_EQ(shown2.str().find("Say hi"), std::string::npos);  // p1 not shown again
  lines = read_jsonl(o.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1].value["choice"], "tie");
  EXPECT_EQ(lines[2].value["score"], 4);
  // Session 3: nothing left.
  std::istringstream in3("");
  std::ostringstream shown3;
  EXPECT_EQ(run_rating_session(o, in3, shown3).already, 3);

  const RatingSummary s = summarize_ratings(lines);
  EXPECT_EQ(s.answers, 3);
  EXPECT_EQ(s.mean_score.at("m1").value, 4);
  EXPECT_EQ(s.scores.at("m1"), 1);
  const PairRecord& p = s.pairs.at({"m1", "m2"});
  EXPECT_EQ(p.wins_a, swapped ? 0 : 1);
  EXPECT_EQ(p.wins_b, swapped ? 1 : 0);
  EXPECT_EQ(p.ties, 1);
  EXPECT_NEAR(p.win_rate_a(), swapped ? 0.25 : 0.75, 1e-12);
  EXPECT_EQ(s.bradley_terry.size(), 2u);
  EXPECT_NE(s.to_markdown().find("| m1 | m2 |"), std::string::npos);
}

TEST(Ratings, AggregatesManyAnswers) {
  const std::string d = tmp_dir("ratings_many");
  const std::string f = d + "/r.jsonl";
  std::string text;
  // m1 scores 5,4,5,4 (mean 4.5); m2 2,3 (mean 2.5); pairs: m1 wins 6 of 8 against m2.
  for (int v : {5, 4, 5, 4})
    text += "{\"id\":\"a" + std::to_string(v) + std::to_string(text.size()) +
            "\",\"kind\":\"score\",\"model\":\"m1\",\"score\":" + std::to_string(v) + "}\n";
  for (int v : {2, 3})
    text += "{\"id\":\"b" + std::to_string(v) +
            "\",\"kind\":\"score\",\"model\":\"m2\",\"score\":" + std::to_string(v) + "}\n";
  for (int i = 0; i < 8; ++i)
    text += std::string("{\"id\":\"c") + std::to_string(i) +
            "\",\"kind\":\"pair\",\"shown\":[\"m2\",\"m1\"],\"choice\":\"" + (i < 6 ? "B" : "A") +
            "\"}\n";
  write(f, text);
  const RatingSummary s = summarize_ratings(read_jsonl(f));
  EXPECT_NEAR(s.mean_score.at("m1").value, 4.5, 1e-12);
  EXPECT_NEAR(s.mean_score.at("m2").value, 2.5, 1e-12);
  EXPECT_GE(s.mean_score.at("m1").lo, 4.0);
  EXPECT_LE(s.mean_score.at("m1").hi, 5.0);
  EXPECT_EQ(s.pairs.at({"m1", "m2"}).wins_a, 6);
  EXPECT_NEAR(s.pairs.at({"m1", "m2"}).win_rate_a(), 0.75, 1e-12);
  EXPECT_GT(s.bradley_terry.at("m1"), s.bradley_terry.at("m2"));
  EXPECT_GT(s.elo.at("m1"), s.elo.at("m2"));
  write(f, "{\"id\":\"x\",\"kind\":\"score\",\"model\":\"m\",\"score\":7}\n");
  EXPECT_NE(what_of([&] { summarize_ratings(read_jsonl(f)); }).find(f + ":1: score 7"),
            std::string::npos);
  write(d + "/bad.jsonl", "{\"id\": \"x\", \"prompt\": \"p\", \"outputs\": []}\n");
  EXPECT_NE(what_of([&] { read_rating_items(d + "/bad.jsonl"); }).find("bad.jsonl:1: 0 outputs"),
            std::string::npos);
}

// The rows `eval ratings --db` exports from the Rate tab: both_bad counts as a
// tie, skip is counted apart, and items rated twice give the agreement.
TEST(Ratings, RateTabChoicesAndAgreement) {
  const std::string d = tmp_dir("ratings_tab");
  const std::string f = d + "/votes.jsonl";
  std::string text;
  auto row = [&](int pair, const std::string& rater, const std::string& a, const std::string& b,
                 const std::string& choice) {
    text += "{\"kind\":\"pair\",\"pair\":" + std::to_string(pair) + ",\"rater\":\"" + rater +
            "\",\"shown\":[\"" + a + "\",\"" + b + "\"],\"choice\":\"" + choice + "\"}\n";
  };
  // Pair 1: both say step-400 (shown in different orders). Pair 2: both tie.
  // Pair 3: they disagree. Pair 4: one rater, both bad. Pair 5: skipped.
  row(1, "ann", "step-200", "step-400", "B");
  row(1, "bob", "step-400", "step-200", "A");
  row(2, "ann", "step-400", "step-200", "tie");
  row(2, "bob", "step-200", "step-400", "tie");
  row(3, "ann", "step-200", "step-400", "A");
  row(3, "bob", "step-200", "step-400", "B");
  row(4, "ann", "step-200", "step-400", "both_bad");
  row(5, "bob", "step-200", "step-400", "skip");
  write(f, text);
  const RatingSummary s = summarize_ratings(read_jsonl(f));
  EXPECT_EQ(s.answers, 7);
  EXPECT_EQ(s.skipped, 1);
  EXPECT_EQ(s.both_bad, 1);
  EXPECT_EQ(s.raters.at("ann"), 4);
  EXPECT_EQ(s.raters.at("bob"), 3);
  const PairRecord& p = s.pairs.at({"step-200", "step-400"});
  EXPECT_EQ(p.wins_a, 1);  // pair 3, ann
  EXPECT_EQ(p.wins_b, 3);  // pair 1 twice, pair 3 bob
  EXPECT_EQ(p.ties, 3);    // pair 2 twice, pair 4 (both bad)
  EXPECT_EQ(s.agreement_items, 3);
  EXPECT_NEAR(s.percent_agreement, 2.0 / 3, 1e-12);
  // Units {second, second}, {tie, tie}, {first, second}: n = 6, disagreements 2,
  // n_first 1, n_second 3, n_tie 2: alpha = 1 - 5 * 2 / 22.
  EXPECT_NEAR(s.alpha, 1 - 10.0 / 22, 1e-12);
  EXPECT_GT(s.bradley_terry.at("step-400"), s.bradley_terry.at("step-200"));
  const auto j = s.to_json();
  EXPECT_EQ(j["agreement"]["items"], 3);
  EXPECT_TRUE(j["bradley_terry_ci95"]["step-400"].is_array());
  EXPECT_NE(s.to_markdown().find("Krippendorff's alpha 0.545"), std::string::npos)
      << s.to_markdown();
  write(f, "{\"kind\":\"pair\",\"shown\":[\"a\",\"b\"],\"choice\":\"C\"}\n");
  EXPECT_NE(what_of([&] { summarize_ratings(read_jsonl(f)); }).find("choice 'C'"),
            std::string::npos);
}

// ---- the comparison report --------------------------------------------------------------------

namespace {
ModelResults fake_model(const std::string& label, const std::vector<double>& acc, double distinct) {
  ModelResults m;
  m.label = label;
  m.path = "/models/" + label;
  TaskResult t;
  t.name = "qa";
  t.kind = "choice";
  t.items = static_cast<int64_t>(acc.size());
  MetricResult a;
  a.name = "acc";
  a.data = mean_metric(acc);
  a.ci = bootstrap(a.data);
  a.value = a.ci.value;
  t.metrics.push_back(a);
  MetricResult d;  // no per-item data: never a winner
  d.name = "distinct_1";
  d.value = distinct;
  t.metrics.push_back(d);
  t.samples.push_back({{"prompt", "Q | 1"}, {"output", label + " says\nhi"}});
  m.tasks.push_back(t);
  return m;
}
}  // namespace

TEST(Report, WinnerOnlyWhereThePairedIntervalExcludesZero) {
  std::vector<double> good(40, 1.0), bad(40, 0.0), mixed;
  for (int i = 0; i < 40; ++i) mixed.push_back(i % 2);
  for (int i = 0; i < 4; ++i) good[i] = 0;  // 0.9 vs 0.0: clearly better
  CompareOptions o;
  o.bootstrap.resamples = 300;
  const std::vector<ModelResults> clear{fake_model("x", good, 0.5), fake_model("y", bad, 0.9)};
  const auto j = compare_json(clear, "s", o);
  EXPECT_EQ(j["comparisons"][0]["metric"], "acc");
  EXPECT_EQ(j["comparisons"][0]["winner"], "x");
  EXPECT_TRUE(j["comparisons"][1]["winner"].is_null());  // distinct_1 has no interval
  EXPECT_NEAR(j["comparisons"][0]["differences"][0]["a_minus_b"].get<double>(), -0.9, 1e-12);
  const std::string md = compare_markdown(clear, "s", o);
  EXPECT_NE(md.find("| acc ↑ | **0.9000**"), std::string::npos) << md;
  EXPECT_NE(md.find("| distinct_1 ↑ | 0.5000"), std::string::npos) << md;
  EXPECT_NE(md.find("Q \\| 1"), std::string::npos);  // a pipe inside a cell is escaped
  EXPECT_NE(md.find("x says<br>hi"), std::string::npos);
  // Same mean on the same items: no winner.
  std::vector<double> flipped;
  for (int i = 0; i < 40; ++i) flipped.push_back(1 - (i % 2));
  const auto tie = compare_json({fake_model("x", mixed, 0), fake_model("y", flipped, 0)}, "s", o);
  EXPECT_TRUE(tie["comparisons"][0]["winner"].is_null());
  // A clear difference on fewer items than min_items_for_winner: not marked.
  const auto few = compare_json(
      {fake_model("x", {1, 1, 1, 1, 1}, 0), fake_model("y", {0, 0, 0, 0, 0}, 0)}, "s", o);
  EXPECT_TRUE(few["comparisons"][0]["winner"].is_null());
  // Models that ran different tasks cannot be compared.
  ModelResults other = fake_model("z", bad, 0);
  other.tasks[0].name = "other";
  EXPECT_THROW(compare_markdown({clear[0], other}, "s", o), DataError);
}
