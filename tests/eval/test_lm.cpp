// Model-based metrics and the `shardlm eval` CLI: perplexity against direct
// model::loss computations, sliding windows, multiple choice, coherence, and
// end-to-end runs of eval run / compare / rate on two small models (one trained
// for a few seconds on a toy grammar, one untrained).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "eval/jsonl.h"
#include "eval/lm_metrics.h"
#include "eval/runner.h"
#include "load/model_bundle.h"
#include "model/generate.h"
#include "model/safetensors.h"
#include "monitor/ratings_store.h"
#include "tests/run_command.h"

using namespace shardlm;
using namespace shardlm::eval;
using torch::Tensor;
namespace fs = std::filesystem;

namespace {

// ---- fixtures ---------------------------------------------------------------------------------

// Sentences of a fixed grammar: subject, verb, object, ending.
std::string grammar_corpus(int sentences, uint32_t seed = 1234) {
  const std::vector<std::string> subj{"the cat", "a dog", "the old man", "my sister"};
  const std::vector<std::string> verb{"sat on", "looked at", "ran to", "painted"};
  const std::vector<std::string> obj{"the mat", "the tree", "a house", "the river"};
  std::mt19937 rng(seed);
  std::string text;
  for (int i = 0; i < sentences; ++i)
    text += subj[rng() % subj.size()] + " " + verb[rng() % verb.size()] + " " +
            obj[rng() % obj.size()] + "." + (i % 5 == 4 ? "\n" : " ");
  return text;
}

struct Models {
  std::string dir;                 // tokenizer.json, corpus.txt, data/
  std::string trained, untrained;  // model directories (model.safetensors, config.json, tokenizer)
  data::Tokenizer tok;
  model::GPT model{nullptr};  // the trained one
};

// Trains once per build (kept in the build tree, keyed by the settings): a 1-layer
// model for ~2 s on the grammar corpus, and an untrained one of the same shape.
Models& models() {
  static Models m = [] {
    const std::string corpus = grammar_corpus(1500);
    model::ModelConfig c;
    c.context_length = 32;
    c.n_layer = 1;
    c.n_head = 2;
    c.d_model = 32;
    const int steps = 200, batch = 16;
    Models r;
    r.dir = std::string(SHARDLM_TEST_TMP) + "/eval_models_" +
            std::to_string(
                std::hash<std::string>()(corpus + c.to_json().dump() + std::to_string(steps)));
    r.trained = r.dir + "/trained";
    r.untrained = r.dir + "/untrained";
    auto load = [&r] {
      r.tok = data::Tokenizer::load(r.dir + "/tokenizer.json");
      r.model = load::load_model(r.trained).model;
    };
    if (fs::exists(r.dir + "/tokenizer.json")) {
      load();
      return r;
    }
    // Built in a directory of this process, then renamed: ctest may run two
    // entries of this executable at once.
    const std::string tmp = r.dir + ".tmp" + std::to_string(::getpid());
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    data::TokenizerTrainOptions o;
    o.vocab_size = 300;
    o.threads = 1;
    o.progress = false;
    r.tok = data::train_tokenizer_on_texts(o, {corpus});
    std::ofstream(tmp + "/corpus.txt") << corpus;
    std::vector<uint32_t> ids32 = r.tok.encode(corpus);
    Tensor ids = torch::tensor(std::vector<int64_t>(ids32.begin(), ids32.end()), torch::kLong);
    c.vocab_size = static_cast<int64_t>(r.tok.vocab_size());
    torch::manual_seed(0);
    model::GPT untrained(c);
    model::save_safetensors(untrained, tmp + "/untrained");
    r.tok.save(tmp + "/untrained/tokenizer.json");
    torch::manual_seed(1);
    r.model = model::GPT(c);
    r.model->train();
    torch::optim::Adam opt(r.model->parameters(), torch::optim::AdamOptions(3e-3));
    const int64_t T = c.context_length, N = ids.size(0) - T - 1;
    for (int s = 0; s < steps; ++s) {
      Tensor starts = torch::randint(0, N, {batch}, torch::kLong);
      Tensor offs = starts.unsqueeze(1) + torch::arange(T + 1, torch::kLong).unsqueeze(0);
      Tensor win = ids.index({offs});
      Tensor l = model::loss(r.model->forward(win.narrow(1, 0, T)), win.narrow(1, 1, T));
      opt.zero_grad();
      l.backward();
      opt.step();
    }
    r.model->eval();
    model::save_safetensors(r.model, tmp + "/trained");
    r.tok.save(tmp + "/trained/tokenizer.json");
    r.tok.save(tmp + "/tokenizer.json");  // last: its presence marks a complete directory
    std::error_code ec;
    fs::rename(tmp, r.dir, ec);
    if (ec) {  // another process won the race: use its models
      fs::remove_all(tmp);
      load();
    }
    return r;
  }();
  return m;
}

std::vector<int64_t> ids_of(const data::Tokenizer& tok, const std::string& s) {
  return encode_ids(tok, s);
}

// Mean loss of the tokens of `ids` (1..n-1) given the earlier ones, in one forward.
double direct_loss(model::GPT& m, const std::vector<int64_t>& ids) {
  torch::NoGradGuard g;
  Tensor t = torch::tensor(ids, torch::kLong).unsqueeze(0);
  const int64_t n = t.size(1);
  return model::loss(m->forward(t.narrow(1, 0, n - 1)), t.narrow(1, 1, n - 1)).item<double>();
}

// Runs the shardlm binary; returns stdout, sets *rc; stderr into *err.
std::string run_cli(const std::string& args, int* rc, std::string* err = nullptr) {
  return shardlm::test_cli::run_command(
      std::string(SHARDLM_BINARY) + " " + args,
      std::string(SHARDLM_TEST_TMP) + "/eval_cli." + std::to_string(::getpid()) + ".err", rc, err);
}

// The grammar corpus prepared by `shardlm prepare` (val split 20%), once per build tree.
std::string prepared_data() {
  Models& m = models();
  const std::string data = m.dir + "/data";
  if (!fs::exists(data + "/manifest.json")) {
    const std::string tmp = data + ".tmp" + std::to_string(::getpid());
    int rc = 0;
    std::string err;
    run_cli("prepare --input " + m.dir + "/corpus.txt --output " + tmp + " --tokenizer " + m.dir +
                "/tokenizer.json --no-progress prepare.val_fraction=0.2 "
                "'prepare.txt_documents=\"line\"'",
            &rc, &err);
    EXPECT_EQ(rc, 0) << err;
    std::error_code ec;
    fs::rename(tmp, data, ec);  // another process may have won the race: fine
    if (ec) fs::remove_all(tmp);
  }
  return data;
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace

// ---- perplexity -------------------------------------------------------------------------------

TEST(EvalPerplexity, TextEqualsExpOfTheDirectMeanLoss) {
  Models& m = models();
  ASSERT_TRUE(m.tok.eos_id().has_value());
  const std::string text = "the cat sat on the mat. a dog ran to";  // fits one window
  std::vector<int64_t> ids{static_cast<int64_t>(*m.tok.eos_id())};
  for (int64_t id : ids_of(m.tok, text)) ids.push_back(id);
  ASSERT_LE(static_cast<int64_t>(ids.size()), 32);
  const double loss = direct_loss(m.model, ids);
  const LmScores s = perplexity_texts(m.model, m.tok, {text}, SlidingWindow{}, torch::kCPU);
  ASSERT_EQ(s.items.size(), 1u);
  EXPECT_EQ(s.sum(LmScores::kTokens), static_cast<double>(ids.size() - 1));
  EXPECT_NEAR(s.loss(), loss, 1e-5);
  EXPECT_NEAR(s.perplexity(), std::exp(loss), 1e-4 * std::exp(loss));
  EXPECT_NEAR(s.bits_per_byte(), loss * (ids.size() - 1) / std::log(2.0) / text.size(), 1e-5);
  // Without the EOS prefix the first token is not scored.
  const LmScores np = perplexity_texts(m.model, m.tok, {text}, {0, 0, false}, torch::kCPU);
  EXPECT_EQ(np.sum(LmScores::kTokens), static_cast<double>(ids.size() - 2));
  // A text that fits one window scores the same whatever the stride.
  for (int64_t stride : {1, 5, 16, 32}) {
    const LmScores w = perplexity_texts(m.model, m.tok, {text}, {32, stride, true}, torch::kCPU);
    EXPECT_NEAR(w.loss(), s.loss(), 1e-5) << "stride " << stride;
    EXPECT_EQ(w.sum(LmScores::kTokens), s.sum(LmScores::kTokens));
  }
  // The trained model beats uniform by far on grammar text.
  EXPECT_LT(s.loss(), 0.5 * std::log(static_cast<double>(m.tok.vocab_size())));
}

// The Evaluate tab's detail: accuracy by position and the calibration bins add up
// to the task's own totals, positions are those in the window, and the accuracy
// of a bin is the hit rate of the tokens whose confidence falls in it.
TEST(EvalPerplexity, DetailByPositionAndCalibrationAddsUp) {
  Models& m = models();
  const std::string text = grammar_corpus(12, 99);  // longer than the 32-token context
  const LmScores s = perplexity_texts(m.model, m.tok, {text}, {16, 8, true}, torch::kCPU);
  const TokenDetail& d = s.detail;
  double tokens = 0, top1 = 0, top5 = 0, binned = 0, hits = 0;
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    tokens += d.tokens[i];
    top1 += d.top1[i];
    top5 += d.top5[i];
  }
  for (int b = 0; b < TokenDetail::kBins; ++b) {
    binned += d.bin_count[b];
    hits += d.bin_hit[b];
    if (d.bin_count[b] > 0) {
      EXPECT_GE(d.bin_conf[b] / d.bin_count[b], b / 10.0 - 1e-9);
      EXPECT_LE(d.bin_conf[b] / d.bin_count[b], (b + 1) / 10.0 + 1e-9);
    }
  }
  EXPECT_EQ(tokens, s.sum(LmScores::kTokens));
  EXPECT_EQ(top1, s.sum(LmScores::kTop1));
  EXPECT_EQ(top5, s.sum(LmScores::kTop5));
  EXPECT_EQ(binned, tokens);
  EXPECT_EQ(hits, top1);
  EXPECT_LE(d.tokens.size(), 15u);  // a 16-token window predicts from positions 0..14
  EXPECT_GT(d.tokens[0], 0);        // the first window scores its first target
  const auto j = d.to_json();
  EXPECT_EQ(j["by_position"]["top1"].size(), d.tokens.size());
  EXPECT_EQ(j["calibration"]["bins"].size(), 10u);
  EXPECT_TRUE(j["calibration"]["ece"].is_number());
}

TEST(EvalPerplexity, SlidingWindowScoresEveryTokenOnce) {
  Models& m = models();
  const std::string text = grammar_corpus(12, 99);  // longer than the 32-token context
  std::vector<int64_t> ids{static_cast<int64_t>(*m.tok.eos_id())};
  for (int64_t id : ids_of(m.tok, text)) ids.push_back(id);
  const int64_t L = static_cast<int64_t>(ids.size());
  ASSERT_GT(L, 70);
  // stride == window: windows [0, 16), [15, 31), [30, 46), ...: each scores all its
  // targets (stride is capped at window - 1 so that no token goes unscored).
  const int64_t w = 16;
  const LmScores s = perplexity_texts(m.model, m.tok, {text}, {w, w, true}, torch::kCPU);
  EXPECT_EQ(s.sum(LmScores::kTokens), static_cast<double>(L - 1));
  double nll = 0;
  {
    torch::NoGradGuard g;
    int64_t prev = 1;  // the next target to score
    for (int64_t end = w;; end = std::min(end + w - 1, L)) {
      const int64_t begin = std::max<int64_t>(0, end - w);
      Tensor x =
          torch::tensor(std::vector<int64_t>(ids.begin() + begin, ids.begin() + end), torch::kLong);
      Tensor lp = model::log_probs(m.model->forward(x.unsqueeze(0))).squeeze(0);
      if (prev == begin + 1) {  // a full window: its mean loss is model::loss's
        EXPECT_NEAR(
            direct_loss(m.model, std::vector<int64_t>(ids.begin() + begin, ids.begin() + end)) *
                static_cast<double>(end - begin - 1),
            -lp.narrow(0, 0, end - begin - 1)
                 .gather(1, x.narrow(0, 1, end - begin - 1).unsqueeze(1))
                 .sum()
                 .item<double>(),
            1e-3);
      }
      for (int64_t p = prev; p < end; ++p) nll -= lp[p - begin - 1][ids[p]].item<double>();
      prev = end;
      if (end == L) break;
    }
  }
  EXPECT_NEAR(s.sum(LmScores::kNll), nll, 1e-3);
  // stride 1: every target p is scored with exactly the w - 1 tokens before it (all of
  // them near the start), one forward per target, computed independently here.
  const int64_t w1 = 8;
  const LmScores o = perplexity_texts(m.model, m.tok, {text}, {w1, 1, true}, torch::kCPU);
  EXPECT_EQ(o.sum(LmScores::kTokens), static_cast<double>(L - 1));
  double nll1 = 0;
  torch::NoGradGuard g;
  for (int64_t p = 1; p < L; ++p) {
    const int64_t b = std::max<int64_t>(0, p - (w1 - 1));
    Tensor x = torch::tensor(std::vector<int64_t>(ids.begin() + b, ids.begin() + p), torch::kLong);
    Tensor lp = model::log_probs(m.model->forward(x.unsqueeze(0))).squeeze(0);
    nll1 -= lp[p - b - 1][ids[p]].item<double>();
  }
  EXPECT_NEAR(o.sum(LmScores::kNll), nll1, 1e-3);
}

TEST(EvalPerplexity, SplitEqualsTheDirectLossOverTheLoader) {
  Models& m = models();
  const std::string data = prepared_data();
  data::LoaderConfig lc;
  lc.path = data;
  lc.split = "val";
  lc.batch_size = 4;
  lc.seq_len = 32;
  lc.shuffle = false;
  lc.prefetch = 0;
  const LmScores s = perplexity_split(m.model, lc, 0, torch::kCPU, &m.tok);
  // Direct: model::loss per batch, weighted by its targets.
  data::Loader loader(lc, 0, 1);
  double nll = 0, tokens = 0;
  torch::NoGradGuard g;
  for (int64_t i = 0; i < loader.steps_per_epoch(); ++i) {
    data::Batch b = loader.next();
    const double n = b.loss_mask.sum().item<double>();
    nll += model::loss(m.model->forward(b.input_ids), b.targets, b.loss_mask).item<double>() * n;
    tokens += n;
  }
  ASSERT_GT(tokens, 100);
  EXPECT_EQ(s.sum(LmScores::kTokens), tokens);
  EXPECT_NEAR(s.loss(), nll / tokens, 1e-5);
  EXPECT_NEAR(s.perplexity(), std::exp(nll / tokens), 1e-4 * std::exp(nll / tokens));
  EXPECT_GT(s.bits_per_byte(), 0);
  // max_batches caps the pass.
  EXPECT_EQ(perplexity_split(m.model, lc, 1, torch::kCPU, nullptr).sum(LmScores::kTokens),
            4.0 * 32);
}

// ---- multiple choice and coherence ------------------------------------------------------------

TEST(EvalChoice, PicksTheChoiceWithTheHighestLogLikelihood) {
  Models& m = models();
  const std::vector<ChoiceItem> items{
      {"the old man sat", {" on the mat.", " river the a."}, 0},
      {"my sister looked", {" the the dog.", " at the tree."}, 1},
      {"", {"the cat ran to the river.", "river to cat the ran."}, 0}};  // empty: from EOS
  const auto scores = score_choices(m.model, m.tok, items, torch::kCPU);
  ASSERT_EQ(scores.size(), 3u);
  for (size_t i = 0; i < items.size(); ++i) {
    EXPECT_EQ(scores[i].pred, items[i].answer) << i;  // the grammar was learned
    // Each log-likelihood equals the direct computation: -loss * n over the choice's tokens.
    for (size_t c = 0; c < items[i].choices.size(); ++c) {
      std::vector<int64_t> ctx = items[i].context.empty() ? std::vector<int64_t>{*m.tok.eos_id()}
                                                          : ids_of(m.tok, items[i].context);
      const auto cont = ids_of(m.tok, items[i].choices[c]);
      std::vector<int64_t> all(ctx);
      all.insert(all.end(), cont.begin(), cont.end());
      torch::NoGradGuard g;
      Tensor t = torch::tensor(all, torch::kLong).unsqueeze(0);
      const int64_t n = t.size(1);
      Tensor lp = model::log_probs(m.model->forward(t.narrow(1, 0, n - 1))).squeeze(0);
      double direct = 0;
      for (size_t k = 0; k < cont.size(); ++k) {
        const int64_t pos = static_cast<int64_t>(ctx.size() + k);  // position of the token
        direct += lp[pos - 1][all[pos]].item<double>();
      }
      EXPECT_NEAR(scores[i].loglik[c], direct, 1e-4) << i << " " << c;
    }
  }
  // A context longer than the window is cut from the left, not refused.
  const std::string long_ctx = grammar_corpus(10, 5);
  const auto cut =
      score_choices(m.model, m.tok, {{long_ctx, {" the cat", " cat the"}, 0}}, torch::kCPU);
  EXPECT_TRUE(std::isfinite(cut[0].loglik[0]));
  EXPECT_THROW(continuation_logprob(m.model, {1}, {}, torch::kCPU), core::ModelError);
}

TEST(EvalCoherence, IdenticalSentencesAreFullyCoherent) {
  Models& m = models();
  EXPECT_NEAR(embedding_coherence(m.model, m.tok, "the cat sat on the mat. the cat sat on the mat.",
                                  torch::kCPU),
              1.0, 1e-5);
  EXPECT_TRUE(std::isnan(embedding_coherence(m.model, m.tok, "one sentence only", torch::kCPU)));
  const double c = embedding_coherence(m.model, m.tok,
                                       "the cat sat on the mat. a dog ran to the "
                                       "river. my sister painted a house.",
                                       torch::kCPU);
  EXPECT_GT(c, -1.0);
  EXPECT_LT(c, 1.0);
  // PMI by its definition.
  const std::string p = "the old man", cont = " painted the tree.";
  const double pmi = prompt_pmi(m.model, m.tok, p, cont, torch::kCPU);
  std::vector<int64_t> with{*m.tok.eos_id()};
  for (int64_t id : ids_of(m.tok, p)) with.push_back(id);
  const auto cids = ids_of(m.tok, cont);
  const double expect = (continuation_logprob(m.model, with, cids, torch::kCPU) -
                         continuation_logprob(m.model, {*m.tok.eos_id()}, cids, torch::kCPU)) /
                        cids.size();
  EXPECT_NEAR(pmi, expect, 1e-9);
  EXPECT_TRUE(std::isnan(prompt_pmi(m.model, m.tok, p, "", torch::kCPU)));
}

// ---- the CLI end to end -----------------------------------------------------------------------

namespace {

// A suite over every task kind, written next to its data files.
std::string write_suite(const std::string& dir) {
  fs::create_directories(dir);
  write(dir + "/a.txt", grammar_corpus(6, 11));
  write(dir + "/b.txt", grammar_corpus(6, 12));
  write(dir + "/c.txt", grammar_corpus(6, 13));
  write(dir + "/choice.jsonl",
        "{\"context\": \"the cat sat\", \"choices\": [\" on the mat.\", \" mat the on.\"], "
        "\"answer\": 0}\n"
        "{\"context\": \"a dog ran\", \"choices\": [\" river the to.\", \" to the river.\"], "
        "\"answer\": \" to the river.\"}\n");
  write(dir + "/facts.jsonl",
        "{\"prompt\": \"the old\", \"answers\": [\"man\"]}\n"
        "{\"prompt\": \"my\", \"answers\": [\"sister\"], \"must_not\": [\"brother\"]}\n");
  write(dir + "/prompts.jsonl",
        "{\"prompt\": \"the cat\", \"references\": [\"sat on the mat.\"]}\n"
        "{\"prompt\": \"a dog\", \"references\": [\"ran to the river.\", \"looked at a house.\"]}\n"
        "{\"prompt\": \"my sister\", \"references\": [\"painted the tree.\"]}\n");
  write(dir + "/suite.toml",
        "[suite]\nname = \"test\"\ntasks = [\"text\", \"split\", \"choice\", \"facts\", \"gen\"]\n"
        "bootstrap = 200\n"
        "[task.text]\nkind = \"perplexity\"\nfiles = [\"a.txt\", \"b.txt\", \"c.txt\"]\n"
        "[task.split]\nkind = \"perplexity\"\ndata = \"" +
            models().dir +
            "/data\"\n"
            "split = \"val\"\nbatch_size = 4\nmax_batches = 4\n"
            "[task.choice]\nkind = \"choice\"\nfile = \"choice.jsonl\"\n"
            "[task.facts]\nkind = \"factual\"\nfile = \"facts.jsonl\"\n"
            "[task.facts.generate]\nmax_new_tokens = 6\n"
            "[task.gen]\nkind = \"generation\"\nfile = \"prompts.jsonl\"\n"
            "[task.gen.generate]\nmax_new_tokens = 12\n");
  return dir + "/suite.toml";
}

}  // namespace

TEST(EvalCli, RunCompareAndRate) {
  Models& m = models();
  const std::string dir = std::string(SHARDLM_TEST_TMP) + "/eval_cli_" + std::to_string(::getpid());
  fs::remove_all(dir);
  const std::string suite = write_suite(dir);
  ASSERT_TRUE(fs::exists(prepared_data() + "/manifest.json"));
  int rc = 0;
  std::string err;
  const std::string out_t =
      run_cli("eval run --model " + m.trained + " --suite " + suite + " --json", &rc, &err);
  ASSERT_EQ(rc, 0) << err;
  const auto jt = nlohmann::json::parse(out_t);
  const std::string out_u =
      run_cli("eval run --model " + m.untrained + " --suite " + suite + " --json", &rc, &err);
  ASSERT_EQ(rc, 0) << err;
  const auto ju = nlohmann::json::parse(out_u);
  ASSERT_EQ(jt["tasks"].size(), 5u);
  auto value = [](const nlohmann::json& j, int task, const char* metric) {
    return j["tasks"][task]["metrics"][metric]["value"].get<double>();
  };
  // The trained model is better on perplexity and choice.
  EXPECT_LT(value(jt, 0, "perplexity"), value(ju, 0, "perplexity"));
  EXPECT_LT(value(jt, 1, "perplexity"), value(ju, 1, "perplexity"));
  EXPECT_EQ(value(jt, 2, "acc"), 1.0);
  for (const char* k : {"bleu", "chrf", "distinct_1", "distinct_2", "self_bleu", "repetition_3",
                        "coherence", "pmi"})
    EXPECT_TRUE(jt["tasks"][4]["metrics"].contains(k)) << k;
  EXPECT_EQ(jt["tasks"][3]["samples"].size(), 2u);
  // The table form lists every task.
  const std::string table = run_cli("eval run --model " + m.trained + " --suite " + suite, &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_NE(table.find("perplexity"), std::string::npos);
  EXPECT_NE(table.find("acc_norm"), std::string::npos);

  // The same run from an [eval] section, one key overridden on the command line:
  // the numbers are the flags' numbers; a misspelt key is refused by name.
  std::ofstream(dir + "/eval.toml")
      << "[eval]\nmodel = \"" << m.untrained << "\"\nsuite = \"" << suite << "\"\njson = true\n";
  const auto jc = nlohmann::json::parse(
      run_cli("eval run --config " + dir + "/eval.toml --eval.model=" + m.trained, &rc, &err));
  ASSERT_EQ(rc, 0) << err;
  for (int t = 0; t < 5; ++t)
    for (const auto& [name, mv] : jt["tasks"][t]["metrics"].items())
      EXPECT_EQ(jc["tasks"][t]["metrics"][name]["value"], mv["value"]) << t << " " << name;
  run_cli("eval run --config " + dir + "/eval.toml --eval.suit=x", &rc, &err);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("eval.suit"), std::string::npos) << err;

  // compare: the report's numbers are eval run's numbers.
  run_cli("eval compare --models " + m.trained + "," + m.untrained + " --labels t,u --suite " +
              suite + " --out " + dir + "/report.md --samples " + dir + "/samples.jsonl",
          &rc, &err);
  ASSERT_EQ(rc, 0) << err;
  std::ifstream rj(dir + "/report.json");
  const auto report = nlohmann::json::parse(rj);
  ASSERT_EQ(report["models"].size(), 2u);
  for (int t = 0; t < 5; ++t)
    for (const auto& [name, mv] : jt["tasks"][t]["metrics"].items()) {
      EXPECT_EQ(report["models"][0]["tasks"][t]["metrics"][name]["value"], mv["value"])
          << t << " " << name;
      EXPECT_EQ(report["models"][1]["tasks"][t]["metrics"][name]["value"],
                ju["tasks"][t]["metrics"][name]["value"])
          << t << " " << name;
      EXPECT_EQ(report["models"][0]["tasks"][t]["metrics"][name]["ci95"], mv["ci95"]);
    }
  // The trained model wins split perplexity with confidence (many rows): marked.
  bool found = false;
  for (const auto& c : report["comparisons"])
    if (c["task"] == "split" && c["metric"] == "perplexity") {
      found = true;
      EXPECT_EQ(c["winner"], "t");
      ASSERT_EQ(c["differences"].size(), 1u);
      EXPECT_EQ(c["differences"][0]["a"], "u");  // a - b = u - t: the untrained is worse
      EXPECT_GT(c["differences"][0]["ci95"][0].get<double>(), 0);
    }
  EXPECT_TRUE(found);
  std::ifstream rm(dir + "/report.md");
  const std::string md((std::istreambuf_iterator<char>(rm)), std::istreambuf_iterator<char>());
  EXPECT_NE(md.find("## split (perplexity"), std::string::npos);
  EXPECT_NE(md.find("**"), std::string::npos);
  EXPECT_NE(md.find("| t | "), std::string::npos);  // samples side by side

  // rate the compare samples with scripted answers, then summarise.
  const auto items = read_jsonl(dir + "/samples.jsonl");
  ASSERT_EQ(items.size(), 5u);               // 2 factual + 3 generation prompts
  write(dir + "/answers.txt", "a\nb\nt\n");  // three answers, then end of input
  std::string shown = run_cli("eval rate --samples " + dir + "/samples.jsonl --out " + dir +
                                  "/ratings.jsonl --from-file " + dir + "/answers.txt",
                              &rc, &err);
  ASSERT_EQ(rc, 0) << err;
  EXPECT_NE(shown.find("not finished"), std::string::npos);
  EXPECT_EQ(read_jsonl(dir + "/ratings.jsonl").size(), 3u);
  write(dir + "/answers.txt", "a\na\n");
  shown = run_cli("eval rate --samples " + dir + "/samples.jsonl --out " + dir +
                      "/ratings.jsonl --from-file " + dir + "/answers.txt",
                  &rc, &err);
  ASSERT_EQ(rc, 0) << err;
  EXPECT_NE(shown.find("2 rated now, 3 rated before"), std::string::npos) << shown;
  const auto summary = nlohmann::json::parse(
      run_cli("eval ratings --ratings " + dir + "/ratings.jsonl --json", &rc, &err));
  ASSERT_EQ(rc, 0) << err;
  EXPECT_EQ(summary["answers"], 5);
  EXPECT_TRUE(summary.contains("bradley_terry"));
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);  // kept for a look when it failed
}

// `eval ratings --db` reads the Rate tab's SQLite database (here written by the
// same store the monitor uses), summarises it and exports it as JSONL that
// `eval ratings --ratings` reads back to the same numbers.
TEST(EvalCli, RatingsFromTheRateTabDatabase) {
  const std::string dir = std::string(SHARDLM_TEST_TMP) + "/eval_db_" + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string db = dir + "/ratings.db";
  {
    monitor::RatingsStore s(db);
    for (int i = 0; i < 4; ++i) {
      const std::string prompt = "prompt " + std::to_string(i);
      int64_t a = s.add_sample({"step-10", 10, prompt, " early", {}});
      int64_t b = s.add_sample({"step-20", 20, prompt, " late", {}});
      int64_t p = s.add_pair("10 vs 20", a, b);
      s.vote({"ann", p, a, b, i < 3 ? "B" : "tie"});
      s.vote({"bob", p, b, a, i < 2 ? "A" : "skip"});
    }
  }
  int rc = 0;
  std::string err;
  const auto j = nlohmann::json::parse(
      run_cli("eval ratings --db " + db + " --json --export " + dir + "/votes.jsonl", &rc, &err));
  ASSERT_EQ(rc, 0) << err;
  EXPECT_EQ(j["answers"], 6);
  EXPECT_EQ(j["skipped"], 2);
  EXPECT_EQ(j["raters"]["ann"], 4);
  EXPECT_EQ(j["agreement"]["items"], 2);  // pairs 0 and 1, both "step-20 better"
  EXPECT_EQ(j["agreement"]["percent"], 1.0);
  EXPECT_GT(j["bradley_terry"]["step-20"].get<double>(),
            j["bradley_terry"]["step-10"].get<double>());
  auto lines = eval::read_jsonl(dir + "/votes.jsonl");
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_EQ(lines[1].value["rater"], "bob");
  EXPECT_EQ(lines[1].value["shown"], nlohmann::json({"step-20", "step-10"}));
  EXPECT_EQ(lines[1].value["winner"], "step-20");
  const auto again = nlohmann::json::parse(
      run_cli("eval ratings --ratings " + dir + "/votes.jsonl --json", &rc, &err));
  ASSERT_EQ(rc, 0) << err;
  EXPECT_EQ(again["bradley_terry"], j["bradley_terry"]);
  EXPECT_EQ(again["agreement"], j["agreement"]);
  // --export - writes the rows to stdout only.
  const std::string rows = run_cli("eval ratings --db " + db + " --export -", &rc, &err);
  EXPECT_EQ(std::count(rows.begin(), rows.end(), '\n'), 8);
  // Not a ratings database: the error names it.
  write(dir + "/x.db", "hello");
  run_cli("eval ratings --db " + dir + "/x.db", &rc, &err);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find(dir + "/x.db"), std::string::npos) << err;
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

TEST(EvalCli, BadInputsGiveClearErrors) {
  Models& m = models();
  const std::string dir = std::string(SHARDLM_TEST_TMP) + "/eval_bad_" + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  int rc = 0;
  std::string err;
  // An unknown task kind.
  write(dir + "/s1.toml", "[suite]\ntasks = [\"x\"]\n[task.x]\nkind = \"rouge\"\n");
  run_cli("eval run --model " + m.trained + " --suite " + dir + "/s1.toml", &rc, &err);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("task.x.kind"), std::string::npos) << err;
  // A malformed JSONL line.
  write(dir + "/c.jsonl",
        "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 0}\n{oops\n");
  write(dir + "/s2.toml",
        "[suite]\ntasks = [\"c\"]\n[task.c]\nkind = \"choice\"\nfile = \"c.jsonl\"\n");
  run_cli("eval run --model " + m.trained + " --suite " + dir + "/s2.toml", &rc, &err);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find(dir + "/c.jsonl:2"), std::string::npos) << err;
  // Missing references for BLEU.
  write(dir + "/g.jsonl", "{\"prompt\": \"the cat\"}\n");
  write(dir + "/s3.toml",
        "[suite]\ntasks = [\"g\"]\n[task.g]\nkind = \"generation\"\nfile = "
        "\"g.jsonl\"\nmetrics = [\"bleu\"]\n");
  run_cli("eval run --model " + m.trained + " --suite " + dir + "/s3.toml", &rc, &err);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("g.jsonl:1: missing field 'references'"), std::string::npos) << err;
  // eval bleu: files of different lengths.
  write(dir + "/h.txt", "a b c\nd e f\n");
  write(dir + "/r.txt", "a b c\n");
  run_cli("eval bleu --hyp " + dir + "/h.txt --ref " + dir + "/r.txt", &rc, &err);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("one reference line per hypothesis line"), std::string::npos) << err;
  write(dir + "/r.txt", "a b c\nd e g\n");
  const auto j = nlohmann::json::parse(
      run_cli("eval bleu --hyp " + dir + "/h.txt --ref " + dir + "/r.txt --json", &rc, &err));
  ASSERT_EQ(rc, 0) << err;
  EXPECT_EQ(j["precisions"][0], 100.0 * 5 / 6);
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}
