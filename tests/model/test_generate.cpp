// Generation: the KV cache against full recomputation, beam search against
// greedy and against exhaustive search on a hand-built model, sampling
// (reproducible, independent of the global RNG, distribution by chi-square),
// penalties, stopping, streaming, the repetition penalty on a trained model,
// load::load_model and `shardlm generate` through the real binary.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include <sys/wait.h>
#include <unistd.h>

#include "data/tokenizer.h"
#include "load/model_bundle.h"
#include "model/generate.h"
#include "model/safetensors.h"
#include "tests/model/helpers.h"
#include "tests/run_command.h"

using namespace shardlm::model;
using shardlm::core::CheckpointError;
using shardlm::core::ConfigError;
using shardlm::core::ModelError;
using shardlm::model::test_util::what_of;
using torch::Tensor;
namespace fs = std::filesystem;

namespace {

using Prompts = std::vector<std::vector<int64_t>>;

ModelConfig small(const std::string& positional) {
  ModelConfig c;
  c.vocab_size = 41;
  c.context_length = 32;
  c.n_layer = 2;
  c.n_head = 2;
  c.d_model = 16;
  c.positional = positional;
  c.init_std = 0.1;  // sharper distributions than 0.02: no near-ties between the top tokens
  return c;
}

GPT make(const ModelConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  GPT m(c);
  m->eval();
  return m;
}

GenerationConfig greedy(int64_t max_new) {
  GenerationConfig g;
  g.max_new_tokens = max_new;
  return g;
}

std::vector<std::vector<int64_t>> tokens_of(const GenerationOutput& out) {
  std::vector<std::vector<int64_t>> t;
  for (const auto& p : out.sequences)
    for (const auto& s : p) t.push_back(s.tokens);
  return t;
}

const Prompts kMixed{{5, 9, 1}, {7, 2, 30, 11, 4, 4, 19}, {12}};

}  // namespace

// ---- KV cache, batching -----------------------------------------------------------------------

TEST(GenerateCache, CacheEqualsFullRecomputationForEveryPositionalKind) {
  for (const std::string pos : {"learned", "sinusoidal", "rope"}) {
    GPT m = make(small(pos), 1);
    GenerationConfig g = greedy(20);
    Generator cached(m, g);
    g.use_cache = false;
    Generator full(m, g);
    GenerationOutput a = cached.generate(kMixed), b = full.generate(kMixed);
    ASSERT_EQ(tokens_of(a), tokens_of(b)) << pos;
    for (size_t p = 0; p < kMixed.size(); ++p) {
      const auto& sa = a.sequences[p][0];
      EXPECT_EQ(sa.tokens.size(), 20u) << pos;
      EXPECT_EQ(sa.finish, FinishReason::kLength);
      for (size_t t = 0; t < sa.tokens.size(); ++t)
        EXPECT_NEAR(sa.logprobs[t], b.sequences[p][0].logprobs[t], 1e-4) << pos;
    }
    // Cached: one forward per step (prefill included); recomputing also, but each
    // over the whole sequence.
    EXPECT_EQ(a.forward_calls, 20);
    // A prompt in the mixed batch continues exactly as it does alone.
    for (size_t p = 0; p < kMixed.size(); ++p)
      EXPECT_EQ(cached.generate({kMixed[p]}).sequences[0][0].tokens, a.sequences[p][0].tokens)
          << pos << " prompt " << p;
  }
}

TEST(GenerateCache, BeamAndSeededSamplingAlsoMatchRecomputation) {
  GPT m = make(small("sinusoidal"), 11);
  GenerationConfig b = greedy(10);
  b.strategy = "beam";
  b.num_beams = 3;
  b.num_return_sequences = 3;
  b.eos_ids = {4};
  GenerationConfig s = greedy(10);
  s.strategy = "sample";
  s.num_return_sequences = 2;
  s.top_k = 10;
  s.seed = 9;
  s.eos_ids = {4};  // rows finish at different steps and leave the batch
  s.repetition_penalty = 1.2;
  for (GenerationConfig c : {b, s}) {
    const auto cached = Generator(m, c).generate(kMixed);
    c.use_cache = false;
    const auto full = Generator(m, c).generate(kMixed);
    EXPECT_EQ(tokens_of(cached), tokens_of(full)) << c.strategy;
    for (size_t p = 0; p < kMixed.size(); ++p)
      for (size_t i = 0; i < cached.sequences[p].size(); ++i)
        EXPECT_NEAR(cached.sequences[p][i].score, full.sequences[p][i].score, 1e-4);
  }
}

TEST(GenerateCache, LearnedPositionsStopAtTheContextAndRefuseLongPrompts) {
  GPT m = make(small("learned"), 2);  // context_length 32
  Generator gen(m, greedy(100));
  GenerationOutput out = gen.generate({std::vector<int64_t>(30, 3), {1, 2}});
  EXPECT_EQ(out.sequences[0][0].tokens.size(), 2u);  // 30 + 2 = 32
  EXPECT_EQ(out.sequences[1][0].tokens.size(), 30u);
  EXPECT_EQ(out.sequences[0][0].finish, FinishReason::kLength);
  EXPECT_NE(what_of([&] { gen.generate({std::vector<int64_t>(32, 3)}); }).find("at most 32"),
            std::string::npos);
  EXPECT_THROW(gen.generate({{}}), ModelError);
  EXPECT_THROW(gen.generate({{1, 41}}), ModelError);
  // RoPE has no such limit.
  Generator rope(make(small("rope"), 2), greedy(40));
  EXPECT_EQ(rope.generate({std::vector<int64_t>(30, 3)}).sequences[0][0].tokens.size(), 40u);
}

TEST(GenerateCache, FinishedRowsLeaveTheBatchAndOthersContinueUnchanged) {
  GPT m = make(small("rope"), 3);
  Generator gen(m, greedy(12));
  GenerationOutput free_run = gen.generate(kMixed);
  // Make prompt 1's third token an EOS: rows end at its first occurrence, and the
  // rows still running must not change when others leave the batch.
  GenerationConfig g = greedy(12);
  g.eos_ids = {free_run.sequences[1][0].tokens[2]};
  gen.set_config(g);
  GenerationOutput out = gen.generate(kMixed);
  EXPECT_EQ(out.sequences[1][0].finish, FinishReason::kEos);
  EXPECT_LE(out.sequences[1][0].tokens.size(), 3u);
  for (size_t p = 0; p < kMixed.size(); ++p) {
    const auto& want = free_run.sequences[p][0].tokens;
    const auto& got = out.sequences[p][0].tokens;
    auto it = std::find(want.begin(), want.end(), g.eos_ids[0]);
    const size_t n = it == want.end() ? want.size() : (it - want.begin()) + 1;
    ASSERT_EQ(got.size(), n) << p;
    EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin())) << p;
  }
}

// ---- beam search ------------------------------------------------------------------------------

TEST(GenerateBeam, WidthOneEqualsGreedy) {
  for (const std::string pos : {"learned", "rope"}) {
    GPT m = make(small(pos), 4);
    GenerationConfig g = greedy(15);
    g.eos_ids = {7};
    GenerationOutput want = Generator(m, g).generate(kMixed);
    g.strategy = "beam";
    g.num_beams = 1;
    g.length_penalty = 0;  // score = sum of log-probs, as greedy's
    GenerationOutput got = Generator(m, g).generate(kMixed);
    ASSERT_EQ(tokens_of(got), tokens_of(want)) << pos;
    for (size_t p = 0; p < kMixed.size(); ++p) {
      EXPECT_NEAR(got.sequences[p][0].score, want.sequences[p][0].score, 1e-4);
      EXPECT_EQ(got.sequences[p][0].finish, want.sequences[p][0].finish);
    }
  }
}

// The Generate tab's alternatives: the k most probable tokens at each position,
// most probable first, under the model itself. Greedy's token is the first with
// its own log-prob; sampling draws the same tokens as without alternatives; beam
// search reports them for its best hypothesis; the stream and the result agree.
TEST(GenerateCache, AlternativesAreTheModelsTopTokensAtEachPosition) {
  GPT m = make(small("rope"), 6);
  for (const std::string strategy : {"greedy", "sample", "beam"}) {
    GenerationConfig g = greedy(8);
    g.strategy = strategy;
    g.seed = 3;
    g.num_beams = 3;
    GenerationOutput plain = Generator(m, g).generate({{5, 9, 1}});
    Generator gen(m, g);
    gen.set_alternatives(4);
    std::vector<TokenEvent> events;
    GenerationOutput out = gen.generate({{5, 9, 1}}, [&](const TokenEvent& e) {
      events.push_back(e);
      return true;
    });
    ASSERT_EQ(tokens_of(out), tokens_of(plain)) << strategy << ": alternatives changed the output";
    const GeneratedSequence& s = out.sequences[0][0];
    ASSERT_EQ(s.top.size(), s.tokens.size()) << strategy;
    ASSERT_EQ(events.size(), s.tokens.size()) << strategy;
    double mass = 0;
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      const Alternatives& a = s.top[i];
      ASSERT_EQ(a.size(), 4u);
      for (size_t j = 1; j < a.size(); ++j) EXPECT_GE(a[j - 1].second, a[j].second);
      EXPECT_EQ(events[i].top, a);
      // The chosen token's log-prob is at most the best alternative's; greedy picks it.
      EXPECT_LE(s.logprobs[i], a[0].second + 1e-6);
      if (strategy == "greedy") {
        EXPECT_EQ(a[0].first, s.tokens[i]);
        EXPECT_NEAR(a[0].second, s.logprobs[i], 1e-6);
      }
      for (const auto& [id, lp] : a) {
        EXPECT_GE(id, 0);
        EXPECT_LT(id, 41);
        mass += std::exp(lp);
      }
    }
    EXPECT_LE(mass, static_cast<double>(s.tokens.size()) + 1e-6);
  }
  // k = 0 (the default): none reported.
  GenerationOutput none = Generator(m, greedy(3)).generate({{5}});
  EXPECT_TRUE(none.sequences[0][0].top.empty());
}

namespace {
// A one-layer model whose next-token distribution is a chosen table of the previous
// token, p(next | prev) = probs[prev][next]: attention and MLP outputs are zeroed,
// each token embedding is a zero-mean unit-variance vector that LayerNorm leaves
// alone, and the output rows read the table from them.
GPT bigram_model(const std::vector<std::vector<double>>& probs) {
  const auto V = static_cast<int64_t>(probs.size());
  ModelConfig c;
  c.vocab_size = V;
  c.context_length = 16;
  c.n_layer = 1;
  c.n_head = 2;
  c.d_model = 2 * V;
  c.positional = "rope";
  c.tied_embeddings = false;
  GPT m(c);
  torch::NoGradGuard g;
  for (auto& item : m->named_parameters())
    if (item.key().find("c_proj") != std::string::npos) item.value().zero_();
  const double a = std::sqrt(static_cast<double>(c.d_model) / 2);  // u_i: +a at 2i, -a at 2i+1
  Tensor u = torch::zeros({V, c.d_model}, torch::kDouble);
  for (int64_t i = 0; i < V; ++i) {
    u[i][2 * i] = a;
    u[i][2 * i + 1] = -a;
  }
  Tensor logp = torch::zeros({V, V}, torch::kDouble);
  for (int64_t i = 0; i < V; ++i)
    for (int64_t j = 0; j < V; ++j) logp[i][j] = std::log(probs[i][j]);
  // logits[j] = <LN(u_i), lm_head[j]> = <u_i, lm_head[j]> / sqrt(1 + eps) = logp[i][j]
  Tensor head = logp.t().mm(u) / (2 * a * a) * std::sqrt(1 + c.layernorm_eps);
  m->wte->weight.copy_(u);
  m->lm_head.copy_(head);
  m->eval();
  return m;
}

// Token 0 = start; 1 = A, 2 = B, 3 = C, 4 = D, 5 = E. Greedy takes A (0.5) and then
// at best 0.22 (0.11 in all); B (0.4) then C (0.9) is 0.36.
const std::vector<std::vector<double>> kTable{
    {0.01, 0.50, 0.40, 0.04, 0.03, 0.02},  // after start
    {0.01, 0.22, 0.20, 0.20, 0.19, 0.18},  // after A: flat
    {0.02, 0.02, 0.02, 0.90, 0.02, 0.02},  // after B: C
    {0.10, 0.30, 0.20, 0.20, 0.10, 0.10},  // after C
    {0.20, 0.20, 0.20, 0.20, 0.10, 0.10},  // after D
    {0.50, 0.10, 0.10, 0.10, 0.10, 0.10},  // after E
};
}  // namespace

TEST(GenerateBeam, FindsTheBestSequenceThatGreedyMissesOnAHandBuiltModel) {
  GPT m = bigram_model(kTable);
  {  // the model's distribution is the table
    torch::NoGradGuard g;
    Tensor p = m->forward(torch::tensor({0, 1, 2}, torch::kLong).view({1, 3})).softmax(-1)[0];
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 6; ++j) EXPECT_NEAR(p[i][j].item<double>(), kTable[i][j], 1e-5);
  }
  const Prompts start{{0}};
  GenerationConfig g = greedy(2);
  GenerationOutput gr = Generator(m, g).generate(start);
  EXPECT_EQ(gr.sequences[0][0].tokens, (std::vector<int64_t>{1, 1}));
  EXPECT_NEAR(gr.sequences[0][0].score, std::log(0.5 * 0.22), 1e-4);

  g.strategy = "beam";
  g.num_beams = 2;
  GenerationOutput bm = Generator(m, g).generate(start);
  const auto& best = bm.sequences[0][0];
  EXPECT_EQ(best.tokens, (std::vector<int64_t>{2, 3}));
  EXPECT_NEAR(best.logprobs[0], std::log(0.4), 1e-4);
  EXPECT_NEAR(best.logprobs[1], std::log(0.9), 1e-4);
  EXPECT_NEAR(best.score, (std::log(0.4) + std::log(0.9)) / 2, 1e-4);  // length_penalty 1

  // Exhaustive search over the 36 sequences of two tokens: with 6 beams, beam search
  // is exact for two steps, so its 6 best are the true 6 best, in order.
  std::vector<std::pair<double, std::vector<int64_t>>> all;
  for (int64_t a = 0; a < 6; ++a)
    for (int64_t b = 0; b < 6; ++b)
      all.push_back({(std::log(kTable[0][a]) + std::log(kTable[a][b])) / 2, {a, b}});
  std::sort(all.begin(), all.end(), [](auto& x, auto& y) { return x.first > y.first; });
  EXPECT_EQ(all[0].second, best.tokens);
  g.num_beams = 6;
  g.num_return_sequences = 6;
  GenerationOutput six = Generator(m, g).generate(start);
  ASSERT_EQ(six.sequences[0].size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_NEAR(six.sequences[0][i].score, all[i].first, 1e-4) << i;
    const auto& t = six.sequences[0][i].tokens;
    EXPECT_NEAR(six.sequences[0][i].score,
                (std::log(kTable[0][t[0]]) + std::log(kTable[t[0]][t[1]])) / 2, 1e-4);
  }
}

TEST(GenerateBeam, EosEndsHypothesesAndLengthPenaltyAndEarlyStoppingDecide) {
  GPT m = bigram_model(kTable);
  GenerationConfig g;
  g.strategy = "beam";
  g.num_beams = 2;
  g.max_new_tokens = 6;
  g.eos_ids = {5};  // E; after E the start token is likely, so E is a natural end
  g.num_return_sequences = 2;
  for (bool early : {true, false}) {
    g.early_stopping = early;
    for (double lp : {0.0, 1.0, 2.0}) {
      g.length_penalty = lp;
      GenerationOutput out = Generator(m, g).generate({{0}, {3, 4}});
      for (const auto& per : out.sequences) {
        ASSERT_EQ(per.size(), 2u);
        EXPECT_GE(per[0].score, per[1].score);
        for (const auto& s : per) {
          double sum = 0;
          for (double l : s.logprobs) sum += l;
          EXPECT_NEAR(s.score, sum / std::pow(static_cast<double>(s.tokens.size()), lp), 1e-4);
          EXPECT_TRUE(s.finish == FinishReason::kEos || s.finish == FinishReason::kLength);
          EXPECT_EQ(s.finish == FinishReason::kEos, s.tokens.back() == 5);
        }
      }
    }
  }
  // Without early stopping the search may only get better: the best score is at
  // least that of the early-stopped search.
  g.length_penalty = 1.0;
  g.early_stopping = true;
  const double early = Generator(m, g).generate({{3}}).sequences[0][0].score;
  g.early_stopping = false;
  EXPECT_GE(Generator(m, g).generate({{3}}).sequences[0][0].score, early - 1e-9);
}

// ---- sampling ---------------------------------------------------------------------------------

TEST(GenerateSample, TopK1AndTinyTopPAndFullMinPEqualGreedy) {
  GPT m = make(small("rope"), 5);
  const auto want = tokens_of(Generator(m, greedy(12)).generate(kMixed));
  GenerationConfig s = greedy(12);
  s.strategy = "sample";
  s.temperature = 1.7;
  for (int variant = 0; variant < 4; ++variant) {
    GenerationConfig c = s;
    c.seed = 100 + variant;
    if (variant == 0) c.top_k = 1;
    if (variant == 1) c.top_p = 1e-9;
    if (variant == 2) c.min_p = 1.0;
    if (variant == 3) c.temperature = 0;  // temperature 0 is greedy
    EXPECT_EQ(tokens_of(Generator(m, c).generate(kMixed)), want) << variant;
  }
}

TEST(GenerateSample, SeededSamplingIsReproducibleAndIndependentOfTheGlobalRng) {
  GPT m = make(small("rope"), 6);
  GenerationConfig c = greedy(10);
  c.strategy = "sample";
  c.num_return_sequences = 3;
  c.seed = 42;
  Generator gen(m, c);
  torch::manual_seed(1);
  GenerationOutput a = gen.generate(kMixed);
  torch::manual_seed(2);
  const double global_before = torch::rand({1}).item<double>();
  torch::manual_seed(2);
  GenerationOutput b = gen.generate(kMixed);
  EXPECT_EQ(torch::rand({1}).item<double>(), global_before);  // global RNG untouched
  EXPECT_EQ(tokens_of(a), tokens_of(b));
  EXPECT_EQ(a.seed, 42);
  // Samples of one prompt differ from each other, and another seed gives other samples.
  EXPECT_NE(a.sequences[1][0].tokens, a.sequences[1][1].tokens);
  c.seed = 43;
  EXPECT_NE(tokens_of(Generator(m, c).generate(kMixed)), tokens_of(a));
  // No seed: a random one, reported, which replays the run.
  c.seed = -1;
  GenerationOutput r = Generator(m, c).generate(kMixed);
  c.seed = r.seed;
  EXPECT_EQ(tokens_of(Generator(m, c).generate(kMixed)), tokens_of(r));
}

namespace {
// The intended distribution, written out independently of warp_logits: softmax of
// logits / T, then top-k, top-p (smallest prefix in descending order reaching p),
// min-p (p >= min_p * p_max), renormalised.
std::vector<double> intended(const std::vector<double>& logits, const GenerationConfig& c) {
  const size_t V = logits.size();
  std::vector<double> p(V);
  double mx = *std::max_element(logits.begin(), logits.end()), z = 0;
  for (size_t i = 0; i < V; ++i) z += p[i] = std::exp((logits[i] - mx) / c.temperature);
  for (auto& x : p) x /= z;
  std::vector<size_t> order(V);
  for (size_t i = 0; i < V; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  std::vector<bool> keep(V, true);
  if (c.top_k > 0)
    for (size_t r = c.top_k; r < V; ++r) keep[order[r]] = false;
  auto renorm = [&] {
    double s = 0;
    for (size_t i = 0; i < V; ++i) s += keep[i] ? p[i] : 0;
    for (size_t i = 0; i < V; ++i) p[i] = keep[i] ? p[i] / s : 0;
  };
  renorm();
  if (c.top_p < 1) {
    double before = 0;
    for (size_t r = 0; r < V; ++r) {
      if (before >= c.top_p) keep[order[r]] = false;
      before += p[order[r]];
    }
    renorm();
  }
  if (c.min_p > 0) {
    const double top = p[order[0]];
    for (size_t i = 0; i < V; ++i)
      if (p[i] < c.min_p * top) keep[i] = false;
    renorm();
  }
  return p;
}

// Pearson's chi-square of observed counts against probabilities; cells with p = 0
// must be empty (else +inf). `df` receives cells with p > 0, minus one.
double chi_square(const std::vector<int64_t>& counts, const std::vector<double>& p, int64_t n,
                  int* df) {
  double chi = 0;
  *df = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) {
      if (counts[i] != 0) return std::numeric_limits<double>::infinity();
      continue;
    }
    const double e = p[i] * static_cast<double>(n);
    chi += (counts[i] - e) * (counts[i] - e) / e;
    ++*df;
  }
  return chi;
}

// Upper critical value of chi-square with df degrees of freedom at z standard
// deviations (Wilson & Hilferty 1931); z = 3.719 is a tail of 1e-4.
double chi_square_critical(int df, double z = 3.719) {
  const double k = df, h = 2.0 / (9.0 * k);
  return k * std::pow(1 - h + z * std::sqrt(h), 3);
}

std::vector<int64_t> draw_counts(const std::vector<double>& logits, const GenerationConfig& c,
                                 int64_t n, uint64_t seed) {
  Tensor l = torch::tensor(logits, torch::kDouble).to(torch::kFloat);
  Tensor rows = l.unsqueeze(0).expand({n, l.size(0)}).contiguous();
  at::Generator rng = make_rng(torch::kCPU, seed);
  Tensor t = choose_tokens(rows, c, rng);
  Tensor counts = torch::bincount(t, {}, l.size(0));
  return std::vector<int64_t>(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + l.size(0));
}
}  // namespace

TEST(GenerateSample, EmpiricalDistributionMatchesTheIntendedOneByChiSquare) {
  const std::vector<double> logits{2.0, 1.4, 1.1, 0.5, 0.0, -0.3, -1.0, -2.5};
  struct Case {
    double t;
    int64_t k;
    double p, min_p;
  };
  const std::vector<Case> cases{{1.0, 0, 1.0, 0.0},  {0.7, 0, 1.0, 0.0}, {1.3, 3, 1.0, 0.0},
                                {1.0, 0, 0.75, 0.0}, {1.5, 0, 1.0, 0.2}, {0.8, 5, 0.9, 0.0}};
  const int64_t n = 40000;
  uint64_t seed = 7;
  for (const Case& cs : cases) {
    GenerationConfig c;
    c.strategy = "sample";
    c.temperature = cs.t;
    c.top_k = cs.k;
    c.top_p = cs.p;
    c.min_p = cs.min_p;
    const std::vector<double> want = intended(logits, c);
    const auto counts = draw_counts(logits, c, n, seed++);
    int df = 0;
    const double chi = chi_square(counts, want, n, &df);
    EXPECT_LT(chi, chi_square_critical(df))
        << "T " << cs.t << " k " << cs.k << " p " << cs.p << " min_p " << cs.min_p;
  }
  // The test has power: temperature 0.7 samples are rejected against temperature 1.
  GenerationConfig hot, cold;
  hot.strategy = cold.strategy = "sample";
  cold.temperature = 0.7;
  int df = 0;
  const double chi = chi_square(draw_counts(logits, cold, n, 99), intended(logits, hot), n, &df);
  EXPECT_GT(chi, 10 * chi_square_critical(df));
}

TEST(GenerateSample, WarpAndPenaltiesFollowTheirFormulas) {
  GenerationConfig c;
  Tensor l = torch::tensor({2.0, -1.0, 0.5, 3.0, -2.0}).view({1, 5});
  c.repetition_penalty = 2.0;
  c.frequency_penalty = 0.5;
  c.presence_penalty = 0.25;
  Tensor seen = torch::tensor({true, true, false, false, false}).view({1, 5});
  Tensor counts = torch::tensor({0.0, 2.0, 0.0, 1.0, 0.0}).view({1, 5});
  Tensor x = l.clone();
  apply_penalties(x, seen, counts, c);
  // 2 / 2; -1 * 2 - (2 * 0.5 + 0.25); 0.5; 3 - (0.5 + 0.25); -2
  EXPECT_TRUE(torch::allclose(x, torch::tensor({1.0, -3.25, 0.5, 2.25, -2.0}).view({1, 5})));
  GenerationConfig w;
  w.top_k = 2;
  Tensor k2 = warp_logits(l, w);
  EXPECT_EQ(torch::isinf(k2).sum().item<int64_t>(), 3);
  EXPECT_EQ(k2[0][3].item<float>(), 3.0f);
  EXPECT_EQ(k2[0][0].item<float>(), 2.0f);
  w.top_k = 0;
  w.temperature = 2;
  EXPECT_TRUE(torch::allclose(warp_logits(l, w), l / 2));
}

// ---- stopping and streaming -------------------------------------------------------------------

namespace {
// Token i decodes to the i-th byte of this alphabet (a toy byte tokenizer).
const std::string kAlphabet = "abcdefghijklmnopqrstuvwxyz .,!?ABCDEFGHIJ";
DecodeFn toy_decode() {
  return [](const std::vector<int64_t>& ids) {
    std::string s;
    for (int64_t i : ids) s += kAlphabet.at(i);
    return s;
  };
}
}  // namespace

TEST(GenerateStop, EosStopSequencesAndStopStrings) {
  GenerationConfig c;
  c.eos_ids = {40};
  c.stop_token_sequences = {{1, 2, 3}};
  c.stop_strings = {"xy", "end."};
  EXPECT_THROW(StopCriteria(c, {}), ConfigError);  // stop strings need a decoder
  StopCriteria s(c, toy_decode());
  std::string why;
  EXPECT_EQ(s.check({}), FinishReason::kNone);
  EXPECT_EQ(s.check({5, 40}, &why), FinishReason::kEos);
  EXPECT_EQ(why, "40");
  EXPECT_EQ(s.check({9, 1, 2, 3}, &why), FinishReason::kStop);
  EXPECT_EQ(why, "1 2 3");
  EXPECT_EQ(s.check({1, 2, 3, 9}), FinishReason::kNone);
  EXPECT_EQ(s.check({0, 23, 24}, &why), FinishReason::kStop);  // "axy"
  EXPECT_EQ(why, "xy");
  EXPECT_EQ(s.check({4, 13, 3, 27}, &why), FinishReason::kStop);  // "end."
  EXPECT_EQ(why, "end.");
  EXPECT_EQ(s.check({4, 13, 3}), FinishReason::kNone);
}

TEST(GenerateStop, TextStreamHoldsBackStopPrefixesAndUnfinishedCharacters) {
  // Tokens are single bytes here, so a UTF-8 character arrives in pieces.
  DecodeFn bytes = [](const std::vector<int64_t>& ids) {
    std::string s;
    for (int64_t i : ids) s += static_cast<char>(i);
    return s;
  };
  TextStream ts(bytes, {"STOP"});
  std::string shown;
  for (unsigned char ch : std::string("ab\xC3\xA9 ST")) shown += ts.push(ch);
  EXPECT_EQ(shown, "ab\xC3\xA9 ");  // "ST" may start "STOP": held back
  shown += ts.push('x');            // "STx" cannot: released
  EXPECT_EQ(shown, "ab\xC3\xA9 STx");
  EXPECT_EQ(ts.push(0xE2), "");  // first byte of a 3-byte character
  EXPECT_EQ(ts.push(0x82), "");
  EXPECT_EQ(ts.push(0xAC), "\xE2\x82\xAC");
  for (char ch : std::string(" STO")) shown += ts.push(ch);
  EXPECT_EQ(ts.push('P'), "");
  EXPECT_TRUE(ts.stopped());
  EXPECT_EQ(ts.push('z'), "");
  EXPECT_EQ(ts.finish(), "");
  EXPECT_EQ(ts.text(), "ab\xC3\xA9 STx\xE2\x82\xAC ");
  TextStream plain(bytes);
  plain.push('a');
  EXPECT_EQ(plain.push(0xC3), "");
  EXPECT_EQ(plain.finish(), "\xC3");  // at the end everything goes out
}

TEST(GenerateStop, GeneratorStopsOnStringsAndSequencesAndStreamsEveryToken) {
  GPT m = make(small("rope"), 7);
  Generator gen(m, greedy(16));
  gen.set_decoder(toy_decode());
  const auto free_run = gen.generate(kMixed);
  const auto& ref = free_run.sequences[0][0].tokens;
  GenerationConfig c = greedy(16);
  c.stop_strings = {toy_decode()({ref[3], ref[4]})};  // a string that ends at token 4
  c.stop_token_sequences = {{ref[5], ref[6]}};
  gen.set_config(c);
  std::vector<TokenEvent> events;
  auto out = gen.generate({kMixed[0]}, [&](const TokenEvent& e) {
    events.push_back(e);
    return true;
  });
  const auto& s = out.sequences[0][0];
  EXPECT_EQ(s.finish, FinishReason::kStop);
  // The first occurrence may end earlier than token 4, never later.
  EXPECT_LE(s.tokens.size(), 5u);
  EXPECT_NE(toy_decode()(s.tokens).find(c.stop_strings[0]), std::string::npos);
  ASSERT_EQ(events.size(), s.tokens.size());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].token, s.tokens[i]);
    EXPECT_EQ(events[i].index, static_cast<int64_t>(i));
    EXPECT_DOUBLE_EQ(events[i].logprob, s.logprobs[i]);
  }
  // A callback that says stop ends the row after that token.
  c.stop_strings.clear();
  c.stop_token_sequences.clear();
  gen.set_config(c);
  int calls = 0;
  auto cut = gen.generate(kMixed, [&](const TokenEvent& e) {
    ++calls;
    return !(e.prompt == 1 && e.index == 2);
  });
  EXPECT_EQ(cut.sequences[1][0].finish, FinishReason::kCallback);
  EXPECT_EQ(cut.sequences[1][0].tokens.size(), 3u);
  EXPECT_EQ(cut.sequences[0][0].tokens.size(), 16u);
  EXPECT_EQ(calls, 16 + 3 + 16);
}

TEST(GenerateStop, ConfigValidationNamesTheField) {
  GenerationConfig c;
  c.strategy = "topk";
  EXPECT_NE(what_of([&] { c.validate(); }).find("strategy"), std::string::npos);
  c = GenerationConfig();
  c.top_p = 0;
  EXPECT_NE(what_of([&] { c.validate(); }).find("top_p"), std::string::npos);
  c = GenerationConfig();
  c.strategy = "beam";
  c.num_beams = 2;
  c.num_return_sequences = 3;
  EXPECT_NE(what_of([&] { c.validate(); }).find("num_return_sequences"), std::string::npos);
  c = GenerationConfig();
  c.num_return_sequences = 2;  // greedy
  EXPECT_THROW(c.validate(), ConfigError);
  auto rc = shardlm::core::RunConfig::parse(
      "[generate]\nstrategy = \"sample\"\ntop_k = 40\nstop = [\"\\n\\n\"]\nseed = 3\n");
  GenerationConfig r = rc.get<GenerationConfig>("generate");
  EXPECT_EQ(r.strategy, "sample");
  EXPECT_EQ(r.top_k, 40);
  EXPECT_EQ(r.stop_strings, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(r.seed, 3);
}

// ---- a trained model: repetition penalty, loading, the CLI ------------------------------------

namespace {

// A small English-like corpus from a fixed grammar: subject, verb, object, ending.
std::string grammar_corpus(int sentences) {
  const std::vector<std::string> subj{"the cat",  "a dog",   "the old man", "my sister",
                                      "the bird", "a child", "the farmer",  "our teacher"};
  const std::vector<std::string> verb{"sat on",      "looked at", "ran to", "walked past",
                                      "jumped over", "painted",   "found",  "cleaned"};
  const std::vector<std::string> obj{"the mat",       "the tree",   "a house",    "the river",
                                     "the small box", "a red door", "the garden", "the hill"};
  const std::vector<std::string> end{".", " today.", " again.", " at night."};
  std::mt19937 rng(1234);
  std::string text;
  for (int i = 0; i < sentences; ++i) {
    text += subj[rng() % subj.size()] + " " + verb[rng() % verb.size()] + " " +
            obj[rng() % obj.size()] + end[rng() % end.size()] + (i % 6 == 5 ? "\n" : " ");
  }
  return text;
}

struct Trained {
  std::string dir;  // model.safetensors, config.json, tokenizer.json
  GPT model{nullptr};
  shardlm::data::Tokenizer tok;
};

// Trains (once per build: the result is kept under the test tmp dir, keyed by a
// digest of corpus and settings) a 2-layer model on the grammar corpus: ~3 s.
Trained& trained() {
  static Trained t = [] {
    const std::string corpus = grammar_corpus(3000);
    ModelConfig c;
    c.context_length = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.d_model = 64;
    const int steps = 300, batch = 16;
    const std::string key = std::to_string(
        std::hash<std::string>()(corpus + c.to_json().dump() + std::to_string(steps)));
    Trained r;
    r.dir = std::string(SHARDLM_TEST_TMP) + "/generate_trained_" + key;
    if (fs::exists(r.dir + "/tokenizer.json")) {
      r.model = shardlm::load::load_model(r.dir).model;
      r.tok = shardlm::data::Tokenizer::load(r.dir + "/tokenizer.json");
      return r;
    }
    shardlm::data::TokenizerTrainOptions o;
    o.vocab_size = 360;  // 256 bytes, 4 special tokens, 100 merges (whole words)
    o.threads = 1;
    o.progress = false;
    r.tok = shardlm::data::train_tokenizer_on_texts(o, {corpus});
    std::vector<uint32_t> ids32 = r.tok.encode(corpus);
    Tensor ids = torch::tensor(std::vector<int64_t>(ids32.begin(), ids32.end()), torch::kLong);
    c.vocab_size = static_cast<int64_t>(r.tok.vocab_size());
    torch::manual_seed(0);
    r.model = GPT(c);
    r.model->train();
    torch::optim::Adam opt(r.model->parameters(), torch::optim::AdamOptions(3e-3));
    const int64_t T = c.context_length, N = ids.size(0) - T - 1;
    for (int s = 0; s < steps; ++s) {
      Tensor starts = torch::randint(0, N, {batch}, torch::kLong);
      Tensor offs = starts.unsqueeze(1) + torch::arange(T + 1, torch::kLong).unsqueeze(0);
      Tensor win = ids.index({offs});  // (batch, T + 1)
      Tensor l = loss(r.model->forward(win.narrow(1, 0, T)), win.narrow(1, 1, T));
      opt.zero_grad();
      l.backward();
      opt.step();
    }
    r.model->eval();
    const std::string tmp = r.dir + ".tmp" + std::to_string(::getpid());
    save_safetensors(r.model, tmp);
    r.tok.save(tmp + "/tokenizer.json");
    std::error_code ec;
    fs::rename(tmp, r.dir, ec);  // another test process may have won the race: fine
    if (ec) fs::remove_all(tmp);
    return r;
  }();
  return t;
}

std::vector<int64_t> encode(const shardlm::data::Tokenizer& tok, const std::string& text) {
  auto v = tok.encode(text);
  return std::vector<int64_t>(v.begin(), v.end());
}

// Share of the output's n-grams that already occurred earlier in prompt + output.
double repeated_ngram_rate(const std::vector<int64_t>& prompt, const std::vector<int64_t>& out,
                           size_t n = 3) {
  std::vector<int64_t> all(prompt);
  all.insert(all.end(), out.begin(), out.end());
  std::set<std::vector<int64_t>> seen;
  size_t repeated = 0, total = 0;
  for (size_t i = 0; i + n <= all.size(); ++i) {
    std::vector<int64_t> g(all.begin() + i, all.begin() + i + n);
    if (i + n > prompt.size()) {  // the n-gram ends in the output
      ++total;
      repeated += seen.count(g);
    }
    seen.insert(g);
  }
  return total ? static_cast<double>(repeated) / total : 0.0;
}

}  // namespace

TEST(GenerateTrained, RepetitionPenaltyLowersTheRepeatedTrigramRate) {
  Trained& t = trained();
  {  // it learned the grammar: loss on grammar text far below uniform (log V)
    torch::NoGradGuard g;
    Tensor ids = torch::tensor(encode(t.tok, grammar_corpus(40)), torch::kLong).view({1, -1});
    ids = ids.narrow(1, 0, std::min<int64_t>(ids.size(1), 64));
    const double l =
        loss(t.model->forward(ids.narrow(1, 0, ids.size(1) - 1)), ids.narrow(1, 1, ids.size(1) - 1))
            .item<double>();
    EXPECT_LT(l, 0.4 * std::log(static_cast<double>(t.tok.vocab_size())));
  }
  const Prompts prompts{encode(t.tok, "the cat"), encode(t.tok, "a dog looked at"),
                        encode(t.tok, "my sister"), encode(t.tok, "the farmer painted the")};
  auto rate = [&](double penalty) {
    GenerationConfig c = greedy(48);
    c.repetition_penalty = penalty;
    GenerationOutput out = Generator(t.model, c).generate(prompts);
    double sum = 0;
    for (size_t p = 0; p < prompts.size(); ++p)
      sum += repeated_ngram_rate(prompts[p], out.sequences[p][0].tokens);
    return sum / prompts.size();
  };
  const double plain = rate(1.0), penalised = rate(1.3);
  std::printf("repeated 3-gram rate over 48 greedy tokens: %.3f without penalty, %.3f with 1.3\n",
              plain, penalised);
  EXPECT_GT(plain, 0.3);  // greedy loops on a small model
  EXPECT_LT(penalised, plain - 0.15);
}

TEST(GenerateLoad, LoadModelFindsModelAndTokenizer) {
  Trained& t = trained();
  using shardlm::load::load_model;
  shardlm::load::ModelBundle d = load_model(t.dir);
  EXPECT_EQ(d.format, "safetensors");
  EXPECT_EQ(fs::path(d.source).filename(), "model.safetensors");
  EXPECT_EQ(fs::path(d.tokenizer_path).filename(), "tokenizer.json");
  ASSERT_TRUE(d.tokenizer.has_value());
  EXPECT_FALSE(d.model->is_training());
  shardlm::load::ModelBundle f = load_model(t.dir + "/model.safetensors");
  EXPECT_EQ(f.tokenizer_path, d.tokenizer_path);
  torch::NoGradGuard g;
  Tensor ids = torch::tensor({1, 2, 3}, torch::kLong).view({1, 3});
  EXPECT_TRUE(torch::equal(f.model->forward(ids), t.model->forward(ids)));
  EXPECT_NE(what_of([] { load_model("/nonexistent/model"); }).find("/nonexistent/model"),
            std::string::npos);
  EXPECT_THROW(load_model(SHARDLM_TEST_TMP), CheckpointError);  // no model.safetensors
  // The tokenizer rule: a model one folder below its tokenizer finds it; a
  // tokenizer given explicitly wins; without one, need_tokenizer decides.
  const std::string nested = std::string(SHARDLM_TEST_TMP) + "/nested_model/weights";
  fs::create_directories(nested);
  fs::copy_file(t.dir + "/model.safetensors", nested + "/model.safetensors",
                fs::copy_options::overwrite_existing);
  fs::copy_file(t.dir + "/config.json", nested + "/config.json",
                fs::copy_options::overwrite_existing);
  fs::copy_file(t.dir + "/tokenizer.json", nested + "/../tokenizer.json",
                fs::copy_options::overwrite_existing);
  EXPECT_EQ(fs::path(load_model(nested).tokenizer_path).parent_path().filename(), "nested_model");
  fs::remove(nested + "/../tokenizer.json");
  EXPECT_FALSE(load_model(nested).tokenizer.has_value());
  shardlm::load::LoadOptions o;
  o.need_tokenizer = true;  // what the commands ask for
  EXPECT_NE(what_of([&] { load_model(nested, o); }).find("no tokenizer"), std::string::npos);
}

// ---- `shardlm generate` end to end -----------------------------------------------------------

namespace {
// Runs the shardlm binary with `args`; returns stdout, sets *rc to the exit code.
std::string run_cli(const std::string& args, int* rc, std::string* err = nullptr) {
  return shardlm::test_cli::run_command(std::string(SHARDLM_BINARY) + " generate " + args,
                                        std::string(SHARDLM_TEST_TMP) + "/generate_cli.err", rc,
                                        err);
}
}  // namespace

TEST(GenerateCli, StreamsTextAndWritesJsonEqualToTheLibrary) {
  Trained& t = trained();
  const std::string prompt = "the old man";
  GenerationConfig c = greedy(12);
  c.eos_ids = {static_cast<int64_t>(*t.tok.eos_id())};  // the CLI stops at the tokenizer's EOS
  Generator gen(t.model, c);
  const GeneratedSequence want = gen.generate({encode(t.tok, prompt)}).sequences[0][0];
  std::vector<uint32_t> want32(want.tokens.begin(), want.tokens.end());

  int rc = 0;
  std::string out =
      run_cli("--model " + t.dir + " --prompt '" + prompt + "' --max-new-tokens 12 --json", &rc);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out);
  const auto& seq = j["results"][0]["sequences"][0];
  EXPECT_EQ(seq["ids"].get<std::vector<int64_t>>(), want.tokens);
  const auto lps = seq["logprobs"].get<std::vector<double>>();
  ASSERT_EQ(lps.size(), want.logprobs.size());
  for (size_t i = 0; i < lps.size(); ++i) EXPECT_NEAR(lps[i], want.logprobs[i], 1e-5);
  EXPECT_EQ(seq["text"], t.tok.decode(want32));
  EXPECT_EQ(seq["finish_reason"], "length");
  EXPECT_EQ(j["results"][0]["prompt_ids"].get<std::vector<int64_t>>(), encode(t.tok, prompt));

  // Text mode (the model given as a file; the tokenizer found beside it): the prompt,
  // then the continuation as it streams, then a newline.
  out = run_cli(
      "--model " + t.dir + "/model.safetensors --prompt '" + prompt + "' --max-new-tokens 12", &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(out, prompt + t.tok.decode(want32) + "\n");

  // A stop string: the text ends before it; the JSON says why.
  const std::string cont = t.tok.decode(want32);
  const std::string stop = cont.substr(cont.size() / 2, 3);
  out = run_cli(
      "--model " + t.dir + " --prompt '" + prompt + "' --max-new-tokens 12 --stop '" + stop + "'",
      &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(out, prompt + cont.substr(0, cont.find(stop)) + "\n");

  // Beam search, two prompts, two best each; sampling with a seed replays.
  out = run_cli("--model " + t.dir +
                    " --prompt 'a dog' --prompt 'the bird sat' --strategy beam "
                    "--beams 3 --num-return-sequences 2 --max-new-tokens 6 --json",
                &rc);
  ASSERT_EQ(rc, 0);
  j = nlohmann::json::parse(out);
  ASSERT_EQ(j["results"].size(), 2u);
  for (const auto& r : j["results"]) {
    ASSERT_EQ(r["sequences"].size(), 2u);
    EXPECT_GE(r["sequences"][0]["score"].get<double>(), r["sequences"][1]["score"].get<double>());
  }
  const std::string sample =
      "--model " + t.dir +
      " --prompt 'the cat' --strategy sample "
      "--temperature 0.9 --top-k 20 --top-p 0.95 --seed 5 --max-new-tokens 10 --json";
  auto a = nlohmann::json::parse(run_cli(sample, &rc));
  auto b = nlohmann::json::parse(run_cli(sample, &rc));
  EXPECT_EQ(a["results"], b["results"]);
  EXPECT_EQ(a["seed"], 5);

  // Errors name what is wrong and exit non-zero.
  std::string err;
  run_cli("--model /nonexistent/dir --prompt x", &rc, &err);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("/nonexistent/dir"), std::string::npos) << err;
  run_cli("--model " + t.dir + " --prompt x --top-p 0", &rc, &err);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("top_p"), std::string::npos) << err;
}

// `generate` reads a [generate] section like `train` reads its sections: a
// --config file, --generate.KEY=VALUE overrides, and the flags (aliases of the
// keys) winning over both; unknown keys are refused with a suggestion.
TEST(GenerateCli, ConfigFileOverridesAndFlagsAreOneSurface) {
  Trained& t = trained();
  int rc = 0;
  const std::string flags = "--model " + t.dir +
                            " --prompt 'the cat' --strategy sample --temperature 0.9 "
                            "--top-k 20 --seed 5 --max-new-tokens 8 --ignore-eos --json";
  auto want = nlohmann::json::parse(run_cli(flags, &rc));
  ASSERT_EQ(rc, 0);
  const std::string toml = std::string(SHARDLM_TEST_TMP) + "/gen_cli.toml";
  std::ofstream(toml)
      << "[generate]\nmodel = \"" << t.dir
      << "\"\nprompts = [\"the cat\"]\nstrategy = \"sample\"\n"
         "temperature = 0.9\ntop_k = 20\nseed = 5\nmax_new_tokens = 3\njson = true\n"
         "ignore_eos = true\n";
  // The file with one key overridden on the command line, and the same through its flag.
  auto over =
      nlohmann::json::parse(run_cli("--config " + toml + " --generate.max_new_tokens=8", &rc));
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(over["results"], want["results"]);
  auto flag = nlohmann::json::parse(run_cli("--config " + toml + " --max-new-tokens 8", &rc));
  EXPECT_EQ(flag["results"], want["results"]);
  auto file_only = nlohmann::json::parse(run_cli("--config " + toml, &rc));
  EXPECT_EQ(file_only["new_tokens"], 3);
  std::string err;
  run_cli("--config " + toml + " --generate.temprature=0.5", &rc, &err);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("generate.temprature"), std::string::npos) << err;
  run_cli("--prompt x", &rc, &err);  // no model anywhere
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("generate.model"), std::string::npos) << err;
}
