// Unit tests of the trainer's parts: LR schedule, early stopping, activation
// checkpointing (gradients identical with and without), autocast guard, model
// inspection.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "model/activation_checkpoint.h"
#include "model/autocast.h"
#include "model/gpt.h"
#include "runtime/counters.h"
#include "runtime/early_stopping.h"
#include "runtime/inspect.h"
#include "runtime/schedule.h"
#include "runtime/state.h"
#include "runtime/train_config.h"

using namespace shardlm;

TEST(Schedule, WarmupThenCosineToMinimum) {
  runtime::ScheduleConfig c;
  c.warmup_steps = 10;
  c.min_lr_ratio = 0.1;
  runtime::LrSchedule s(c, 1e-3, 110);
  EXPECT_NEAR(s.at(0), 1e-4, 1e-12);     // (0 + 1) / 10
  EXPECT_NEAR(s.at(9), 1e-3, 1e-12);     // end of warmup
  EXPECT_NEAR(s.at(60), 0.55e-3, 1e-9);  // half-way down the cosine: (1 + 0.1) / 2
  EXPECT_NEAR(s.at(110), 1e-4, 1e-12);
  EXPECT_NEAR(s.at(500), 1e-4, 1e-12);  // stays at the minimum
  for (int i = 10; i < 110; ++i) EXPECT_LE(s.at(i + 1), s.at(i) + 1e-15);
}

TEST(Schedule, LinearConstantAndLiveChange) {
  runtime::ScheduleConfig c;
  c.kind = "linear";
  c.warmup_steps = 0;
  c.min_lr_ratio = 0.0;
  runtime::LrSchedule lin(c, 2.0, 100);
  EXPECT_NEAR(lin.at(50), 1.0, 1e-12);
  c.kind = "constant";
  runtime::LrSchedule cst(c, 2.0, 100);
  EXPECT_DOUBLE_EQ(cst.at(77), 2.0);
  // A live set_lr keeps the shape: at that step the LR is the new value and
  // later steps scale with it.
  lin.set_lr_at(50, 0.5);
  EXPECT_NEAR(lin.at(50), 0.5, 1e-12);
  EXPECT_NEAR(lin.at(75), 0.25, 1e-12);
  // The state round-trips into a schedule of the same configuration, the
  // live change included.
  c.kind = "linear";
  runtime::LrSchedule same(c, 2.0, 100);
  EXPECT_EQ(same.load_state(lin.state()), "");
  EXPECT_DOUBLE_EQ(same.at(75), lin.at(75));
  // A state from before the configuration was saved restores as it is.
  nlohmann::json old = lin.state();
  old.erase("configured");
  runtime::LrSchedule other(runtime::ScheduleConfig{}, 9.0, 1);
  EXPECT_EQ(other.load_state(old), "");
  EXPECT_DOUBLE_EQ(other.at(75), lin.at(75));
}

// Resuming with another configuration (a longer run, another peak LR) keeps the
// new schedule and says what changed; the saved live values are not applied.
TEST(Schedule, ChangedConfigurationOnResumeKeepsTheNewSchedule) {
  runtime::ScheduleConfig c;
  c.warmup_steps = 10;
  runtime::LrSchedule saved(c, 1e-3, 100);
  saved.set_lr_at(40, 2e-4);
  runtime::LrSchedule longer(c, 1e-3, 400);
  const std::string changed = longer.load_state(saved.state());
  EXPECT_NE(changed.find("total_steps 100 -> 400"), std::string::npos) << changed;
  EXPECT_EQ(changed.find("base_lr"), std::string::npos) << changed;
  runtime::LrSchedule fresh(c, 1e-3, 400);
  EXPECT_DOUBLE_EQ(longer.at(150), fresh.at(150));
  EXPECT_GT(longer.at(150), saved.at(150));  // not decayed to the old minimum
  runtime::LrSchedule hotter(c, 3e-3, 100);
  EXPECT_NE(hotter.load_state(saved.state()).find("base_lr"), std::string::npos);
  EXPECT_DOUBLE_EQ(hotter.at(50), runtime::LrSchedule(c, 3e-3, 100).at(50));
}

TEST(Schedule, ConfigErrorsNameTheKey) {
  auto rc = core::RunConfig::parse("[train.schedule]\nkind = \"step\"\n", "run.toml");
  try {
    rc.get<runtime::TrainConfig>("train");
    FAIL();
  } catch (const core::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.schedule.kind"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("run.toml:2"), std::string::npos) << e.what();
  }
}

TEST(EarlyStopping, PatienceAndMinDelta) {
  runtime::EarlyStoppingConfig c;
  c.enabled = true;
  c.patience = 2;
  c.min_delta = 0.01;
  runtime::EarlyStopping es(c);
  EXPECT_TRUE(es.update(10, 3.0));
  EXPECT_TRUE(es.update(20, 2.5));
  EXPECT_FALSE(es.update(30, 2.495));  // better, but not by more than min_delta
  EXPECT_FALSE(es.should_stop());
  EXPECT_FALSE(es.update(40, 2.6));
  EXPECT_TRUE(es.should_stop());
  EXPECT_EQ(es.best_step(), 20);
  EXPECT_DOUBLE_EQ(es.best(), 2.5);
  runtime::EarlyStopping copy(c);
  copy.load_state(es.state());
  EXPECT_TRUE(copy.should_stop());
  EXPECT_EQ(copy.best_step(), 20);
}

// A checkpoint's resumable state with an integer that is a float out of range
// (or any float) is refused naming the checkpoint and the key: nlohmann's
// get<int64_t> would cast it unchecked (undefined behaviour; the same class as
// fuzz_tokenizer_load's 3.4e34 token id).
TEST(EarlyStopping, ResumeStateWithOutOfRangeIntegersIsRefusedByName) {
  runtime::Counters counters;
  runtime::EarlyStoppingConfig ec;
  runtime::EarlyStopping es(ec);
  runtime::ScheduleConfig sc;
  runtime::LrSchedule sched(sc, 1e-3, 100);
  std::vector<runtime::StateSlot> slots = {runtime::StateSlot::of(counters),
                                           runtime::StateSlot::of(es),
                                           {"schedule", [&] { return sched.state(); },
                                            [&](const nlohmann::json& j) { sched.load_state(j); }}};
  nlohmann::json good = runtime::save_states(slots);
  EXPECT_NO_THROW(runtime::load_states(slots, good, "ckpt/step_5"));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"counters", "step"},      {"counters", "best_step"},    {"early_stopping", "best_step"},
      {"early_stopping", "bad"}, {"schedule", "warmup_steps"}, {"schedule", "total_steps"}};
  for (const auto& [part, key] : cases) {
    for (const nlohmann::json& v :
         {nlohmann::json(3.4e34), nlohmann::json(2.5), nlohmann::json("7")}) {
      nlohmann::json bad = good;
      bad[part][key] = v;
      try {
        runtime::load_states(slots, bad, "ckpt/step_5");
        ADD_FAILURE() << part << "." << key << " = " << v.dump() << " was accepted";
      } catch (const core::CheckpointError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("ckpt/step_5"), std::string::npos) << msg;
        EXPECT_NE(msg.find("'" + part + "'"), std::string::npos) << msg;
        if (!v.is_string()) EXPECT_NE(msg.find(part + "." + key), std::string::npos) << msg;
      }
    }
  }
}

TEST(EarlyStopping, AccuracyIsHigherIsBetter) {
  runtime::EarlyStoppingConfig c;
  c.enabled = true;
  c.metric = "val_acc";
  c.patience = 1;
  runtime::EarlyStopping es(c);
  es.update(1, 0.3);
  EXPECT_TRUE(es.update(2, 0.4));
  EXPECT_FALSE(es.update(3, 0.35));
  EXPECT_TRUE(es.should_stop());
}

TEST(TrainConfig, FreezeScheduleGivesTrainableBlocks) {
  auto rc = core::RunConfig::parse("[train]\nfreeze_schedule = [0, 1, 5, 2, 9, -1]\n", "run.toml");
  auto t = rc.get<runtime::TrainConfig>("train");
  EXPECT_EQ(t.trainable_blocks(0, 4), 1);
  EXPECT_EQ(t.trainable_blocks(4, 4), 1);
  EXPECT_EQ(t.trainable_blocks(5, 4), 2);
  EXPECT_EQ(t.trainable_blocks(100, 4), 4);
  auto bad = core::RunConfig::parse("[train]\nfreeze_schedule = [0, 1, 5]\n", "run.toml");
  EXPECT_THROW(bad.get<runtime::TrainConfig>("train"), core::ConfigError);
}

namespace {
model::ModelConfig tiny(double dropout) {
  model::ModelConfig c;
  c.vocab_size = 97;
  c.context_length = 16;
  c.n_layer = 3;
  c.n_head = 2;
  c.d_model = 32;
  c.embd_dropout = c.attn_dropout = c.resid_dropout = dropout;
  return c;
}

// Gradients of every parameter after one forward/backward, with or without
// checkpointing every block; the RNG is reset so dropout draws the same masks.
std::vector<torch::Tensor> grads_of(model::GPT& m, bool checkpointing, const torch::Tensor& ids) {
  for (auto& p : m->parameters()) p.mutable_grad() = torch::Tensor();
  torch::manual_seed(7);
  model::ForwardOptions opts;
  if (checkpointing)
    opts.block_runner = [](int64_t, const model::BlockFn& f, const torch::Tensor& x) {
      return model::checkpoint(f, x);
    };
  auto logits = m->forward(ids, opts);
  model::loss(logits, ids).backward();
  std::vector<torch::Tensor> out;
  for (auto& p : m->parameters())
    out.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  return out;
}
}  // namespace

TEST(ActivationCheckpoint, GradientsIdenticalWithAndWithoutDropout) {
  for (double dropout : {0.0, 0.2}) {
    torch::manual_seed(1);
    model::GPT m(tiny(dropout));
    m->train();
    auto ids = torch::randint(97, {2, 16}, torch::kLong);
    auto a = grads_of(m, false, ids);
    auto b = grads_of(m, true, ids);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_TRUE(a[i].defined() && torch::equal(a[i], b[i]))
          << "parameter " << i << " dropout " << dropout << " max diff "
          << (a[i] - b[i]).abs().max().item<float>();
  }
}

TEST(ActivationCheckpoint, FrozenInputStillTrainsTheBlock) {
  torch::manual_seed(2);
  model::GPT m(tiny(0.0));
  m->wte->weight.set_requires_grad(false);
  if (m->wpe) m->wpe->weight.set_requires_grad(false);
  auto ids = torch::randint(97, {2, 8}, torch::kLong);
  auto b = grads_of(m, true, ids);
  auto named = m->named_parameters();
  EXPECT_TRUE(named["blocks.0.attn.c_attn.weight"].grad().defined());
  EXPECT_GT(named["blocks.0.attn.c_attn.weight"].grad().abs().sum().item<float>(), 0.f);
}

TEST(Autocast, GuardEnablesBf16OnCpuAndRestores) {
  auto before = model::AutocastState::current();
  {
    model::AutocastGuard g(torch::kCPU, c10::kBFloat16);
    auto a = torch::randn({4, 4});
    EXPECT_EQ(torch::mm(a, a).scalar_type(), c10::kBFloat16);
  }
  auto after = model::AutocastState::current();
  EXPECT_EQ(before.cpu, after.cpu);
  auto a = torch::randn({4, 4});
  EXPECT_EQ(torch::mm(a, a).scalar_type(), c10::kFloat);
}

// ---- model inspection (the dashboard's Model tab) ---------------------------------------

namespace {
struct InspectFixture {
  data::Tokenizer tok;  // bytes only: id = byte value
  model::GPT gpt;
  runtime::InspectTarget target;
  InspectFixture()
      : gpt(model::GPT([] {
          model::ModelConfig c;
          c.vocab_size = 300;
          c.context_length = 32;
          c.n_layer = 3;
          c.n_head = 2;
          c.d_model = 32;
          return c;
        }())) {
    target.model = gpt;
    target.tokenizer = &tok;
    target.max_prompt_tokens = 12;
  }
};
}  // namespace

TEST(Inspect, AttentionIsCausalRowStochasticPerHead) {
  InspectFixture f;
  f.gpt->train();
  auto j = runtime::inspect_model(
      "attention", {{"prompt", "Once upon a time, far away"}, {"layer", 1}}, f.target);
  EXPECT_TRUE(f.gpt->is_training()) << "the training mode is restored";
  EXPECT_EQ(j["layer"], 1);
  EXPECT_EQ(j["layers"], 3);
  EXPECT_EQ(j["heads"], 2);
  ASSERT_EQ(j["tokens"].size(), 12u) << "cut to max_prompt_tokens";
  EXPECT_EQ(j["tokens"][0], "O");
  ASSERT_EQ(j["weights"].size(), 2u);
  for (const auto& head : j["weights"]) {
    ASSERT_EQ(head.size(), 12u);
    for (size_t q = 0; q < 12; ++q) {
      double sum = 0;
      for (size_t k = 0; k < 12; ++k) {
        double w = head[q][k].get<double>();
        if (k > q) EXPECT_EQ(w, 0.0) << "no weight on a future token";
        sum += w;
      }
      EXPECT_NEAR(sum, 1.0, 2e-3);
    }
  }
  // The first query attends only to itself.
  EXPECT_NEAR(j["weights"][0][0][0].get<double>(), 1.0, 1e-6);
}

TEST(Inspect, EmbeddingsProjectOnTheLeadingComponents) {
  InspectFixture f;
  auto j = runtime::inspect_model("embeddings", {{"limit", 280}}, f.target);
  EXPECT_EQ(j["method"], "pca");
  ASSERT_EQ(j["points"].size(), 280u);
  ASSERT_EQ(j["ids"].size(), 280u);
  EXPECT_EQ(j["tokens"][65], "A");
  EXPECT_EQ(j["tokens"][279], "#279") << "ids the tokenizer does not have are named by number";
  double v0 = j["explained_variance"][0], v1 = j["explained_variance"][1];
  EXPECT_GT(v0, 0.0);
  EXPECT_GE(v0, v1);
  EXPECT_LT(v0 + v1, 1.0);
  // The projection is centred: each coordinate averages to ~0, and the first
  // component's spread is at least the second's.
  double m0 = 0, m1 = 0, s0 = 0, s1 = 0;
  for (const auto& p : j["points"]) {
    m0 += p[0].get<double>(), m1 += p[1].get<double>();
    s0 += p[0].get<double>() * p[0].get<double>(), s1 += p[1].get<double>() * p[1].get<double>();
  }
  EXPECT_NEAR(m0 / 280, 0.0, 1e-3);
  EXPECT_NEAR(m1 / 280, 0.0, 1e-3);
  EXPECT_GE(s0, s1 * 0.999);
}

TEST(Inspect, ActivationsPerLayerAndATopNeuron) {
  InspectFixture f;
  auto j = runtime::inspect_model(
      "activations", {{"prompt", "the dog ran home"}, {"layer", 2}, {"neuron", 5}}, f.target);
  ASSERT_EQ(j["layers"].size(), 3u);
  const int64_t F = f.gpt->config().ffn_dim();
  for (int l = 0; l < 3; ++l) {
    const auto& L = j["layers"][l];
    EXPECT_EQ(L["name"], "blocks." + std::to_string(l) + ".mlp");
    EXPECT_LE(L["min"].get<double>(), L["mean"].get<double>());
    EXPECT_LE(L["mean"].get<double>(), L["max"].get<double>());
    int64_t total = 0;
    for (const auto& c : L["histogram"]["counts"]) total += c.get<int64_t>();
    EXPECT_EQ(total, 12 * F) << "every activation of the 12 prompt tokens is counted once";
    EXPECT_EQ(L["histogram"]["edges"].size(), L["histogram"]["counts"].size() + 1);
  }
  const auto& n = j["neuron"];
  EXPECT_EQ(n["layer"], 2);
  EXPECT_EQ(n["index"], 5);
  ASSERT_EQ(n["top"].size(), 10u);
  for (size_t i = 1; i < 10; ++i)
    EXPECT_GE(n["top"][i - 1]["value"].get<double>(), n["top"][i]["value"].get<double>());
  // The hooks are removed afterwards.
  for (int l = 0; l < 3; ++l) EXPECT_FALSE(f.gpt->blocks[l]->as<model::BlockImpl>()->mlp->observe);
}

TEST(Inspect, ArchitectureCountsEveryParameterOnce) {
  InspectFixture f;
  auto j = runtime::inspect_model("architecture", nlohmann::json::object(), f.target);
  int64_t n = 0;
  for (const auto& p : f.gpt->parameters()) n += p.numel();
  EXPECT_EQ(j["root"]["params"], n);
  EXPECT_EQ(j["root"]["type"], "GPT");
  int64_t children = 0;
  for (const auto& c : j["root"]["children"]) children += c["params"].get<int64_t>();
  EXPECT_EQ(children, n) << "the children's counts add up to the root's";
}

TEST(Inspect, BadRequestsNameTheProblem) {
  InspectFixture f;
  auto msg = [&](const std::string& what, const nlohmann::json& args) {
    try {
      runtime::inspect_model(what, args, f.target);
    } catch (const core::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg("attention", {{"prompt", "x"}, {"layer", 7}}).find("layers 0..2"),
            std::string::npos);
  EXPECT_NE(msg("activations", {{"neuron", 100000}}).find("out of range"), std::string::npos);
  EXPECT_NE(msg("weights", nlohmann::json::object()).find("cannot inspect 'weights'"),
            std::string::npos);
  f.target.tokenizer = nullptr;
  EXPECT_NE(msg("attention", {{"prompt", "x"}}).find("no tokenizer"), std::string::npos);
}
