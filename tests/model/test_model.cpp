// The GPT model: config, shapes, causality, masks, init, tying, positions, the
// attention paths, capture, the KV cache, the block runner, bf16 and the loss.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "core/config.h"
#include "model/config.h"
#include "model/gpt.h"
#include "tests/model/helpers.h"

using namespace shardlm::model;
using shardlm::core::ConfigError;
using shardlm::core::ModelError;
using shardlm::core::NotCompiled;
using shardlm::model::test_util::rel_err;
using shardlm::model::test_util::what_of;
using torch::Tensor;

namespace {

ModelConfig tiny(const std::string& positional = "learned") {
  ModelConfig c;
  c.vocab_size = 37;
  c.context_length = 16;
  c.n_layer = 2;
  c.n_head = 2;
  c.d_model = 16;
  c.positional = positional;
  return c;
}

GPT make(const ModelConfig& c, uint64_t seed = 0) {
  torch::manual_seed(seed);
  GPT m(c);
  m->eval();
  return m;
}

const std::vector<std::string> kPositional{"learned", "sinusoidal", "rope"};

}  // namespace

// ---- config --------------------------------------------------------------------------------

TEST(ModelConfig, ReadsTomlAndRejectsWidthNotDivisibleByHeads) {
  auto rc = shardlm::core::RunConfig::parse(
      "[model]\nvocab_size = 100\nd_model = 64\nn_head = 4\nn_layer = 3\npositional = \"rope\"\n"
      "dropout = 0.1\nattn_dropout = 0.0\nff_mult = 2.5\n",
      "run.toml");
  auto c = rc.get<ModelConfig>("model");
  EXPECT_EQ(c.vocab_size, 100);
  EXPECT_EQ(c.n_layer, 3);
  EXPECT_EQ(c.positional, "rope");
  EXPECT_EQ(c.ffn_dim(), 160);
  EXPECT_DOUBLE_EQ(c.embd_dropout, 0.1);
  EXPECT_DOUBLE_EQ(c.resid_dropout, 0.1);
  EXPECT_DOUBLE_EQ(c.attn_dropout, 0.0);

  auto bad = shardlm::core::RunConfig::parse("[model]\nd_model = 100\nn_head = 3\n", "run.toml");
  std::string msg = what_of([&] { bad.get<ModelConfig>("model"); });
  EXPECT_NE(msg.find("run.toml:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.d_model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("n_head = 3"), std::string::npos) << msg;
}

TEST(ModelConfig, ValidateNamesTheField) {
  auto fails_on = [](const std::function<void(ModelConfig&)>& edit) {
    ModelConfig c = tiny();
    edit(c);
    try {
      c.validate();
    } catch (const ConfigError& e) {
      return e.key();
    }
    return std::string("<none>");
  };
  EXPECT_EQ(fails_on([](ModelConfig&) {}), "<none>");
  EXPECT_EQ(fails_on([](ModelConfig& c) { c.vocab_size = 0; }), "vocab_size");
  EXPECT_EQ(fails_on([](ModelConfig& c) { c.positional = "alibi"; }), "positional");
  EXPECT_EQ(fails_on([](ModelConfig& c) { c.activation = "swish"; }), "activation");
  EXPECT_EQ(fails_on([](ModelConfig& c) { c.rope_scaling = "linear"; }), "rope_scaling");
  EXPECT_EQ(fails_on([](ModelConfig& c) { c.attn_dropout = 1.0; }), "attn_dropout");
  EXPECT_EQ(fails_on([](ModelConfig& c) {
              c.positional = "rope";
              c.n_head = 16;  // head dim 1: odd
            }),
            "d_model");
  EXPECT_EQ(fails_on([](ModelConfig& c) {
              c.positional = "rope";
              c.rope_scaling = "ntk";
              c.rope_scaling_factor = 0.5;
            }),
            "rope_scaling_factor");
}

TEST(ModelConfig, JsonRoundTripAndUnknownKey) {
  ModelConfig c = tiny("rope");
  c.rope_scaling = "ntk";
  c.rope_scaling_factor = 4;
  c.bias = false;
  c.d_ff = 40;
  ModelConfig back = ModelConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  auto j = c.to_json();
  j["n_layers"] = 3;
  EXPECT_NE(what_of([&] { ModelConfig::from_json(j); }).find("n_layers"), std::string::npos);
  j.erase("n_layers");
  j["n_layer"] = "two";
  EXPECT_NE(what_of([&] { ModelConfig::from_json(j); }).find("model.n_layer"), std::string::npos);
}

TEST(ModelConfig, ParameterCountEqualsTheModel) {
  std::vector<ModelConfig> configs;
  for (const auto& pos : kPositional) {
    for (int variant = 0; variant < 4; ++variant) {
      ModelConfig c = tiny(pos);
      c.tied_embeddings = variant % 2 == 0;
      c.bias = variant < 2;
      c.fused_qkv = variant != 1;
      c.d_ff = variant == 3 ? 24 : 0;
      configs.push_back(c);
    }
  }
  for (const auto& c : configs) {
    GPT m(c);
    int64_t n = 0;
    for (const auto& p : m->parameters()) n += p.numel();
    EXPECT_EQ(n, c.num_parameters()) << c.to_json().dump();
  }
}

TEST(ModelConfig, FlopsMatchTheSixNPlusAttentionRule) {
  ModelConfig c;  // GPT-2 small
  // Kaplan et al. / PaLM: 6 N + 12 L T C per token, N = the parameters in matmuls
  // (blocks + the output projection); biases and LayerNorms are negligible.
  const double C = 768, L = 12, T = 1024, V = 50257;
  const double n_matmul = L * 12 * C * C + V * C;
  EXPECT_NEAR(c.flops_per_token(), 6 * n_matmul + 12 * L * T * C, 1e-9 * c.flops_per_token());
  EXPECT_NEAR(c.flops_per_token(), 3 * c.forward_flops_per_token(), 1.0);
  EXPECT_LT(c.flops_per_token(256), c.flops_per_token(1024));
  EXPECT_EQ(c.num_parameters(), 124439808);  // GPT-2 small as published by HF (tied)
}

// ---- shapes, causality, masks ----------------------------------------------------------------

TEST(GPT, OutputShapesAndLogProbs) {
  for (const auto& pos : kPositional) {
    GPT m = make(tiny(pos));
    Tensor ids = torch::randint(0, 37, {3, 7}, torch::kLong);
    Tensor logits = m->forward(ids);
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{3, 7, 37}));
    EXPECT_EQ(m->hidden(ids).sizes(), (std::vector<int64_t>{3, 7, 16}));
    Tensor lp = log_probs(logits);
    EXPECT_LT(lp.logsumexp(-1).abs().max().item<double>(), 1e-5);
  }
}

TEST(GPT, ChangingFutureTokensNeverChangesEarlierLogits) {
  for (const auto& pos : kPositional) {
    for (bool pre : {true, false}) {
      ModelConfig c = tiny(pos);
      c.pre_norm = pre;
      GPT m = make(c, 1);
      Tensor ids = torch::randint(0, 37, {2, 12}, torch::kLong);
      for (int64_t k : {1, 5, 11}) {
        Tensor other = ids.clone();
        other.narrow(1, k, 12 - k).random_(0, 37);
        other.select(1, k).remainder_(36).add_(1);  // certainly differs at k
        other.select(1, k).masked_fill_(other.select(1, k) == ids.select(1, k), 0);
        Tensor a = m->forward(ids), b = m->forward(other);
        EXPECT_TRUE(torch::allclose(a.narrow(1, 0, k), b.narrow(1, 0, k), 1e-6, 1e-6))
            << pos << " pre_norm=" << pre << " k=" << k;
        EXPECT_FALSE(torch::allclose(a.narrow(1, k, 1), b.narrow(1, k, 1), 1e-6, 1e-6));
      }
    }
  }
}

TEST(GPT, PaddedKeysAreIrrelevantAndPaddedRowsMatchUnpadded) {
  for (const auto& pos : kPositional) {
    GPT m = make(tiny(pos), 2);
    Tensor row = torch::randint(0, 37, {1, 6}, torch::kLong);
    Tensor alone = m->forward(row);
    // Left padding by 3 and right padding by 2, in one batch.
    Tensor ids = torch::zeros({2, 9}, torch::kLong);
    Tensor mask = torch::zeros({2, 9}, torch::kLong);
    ids[0].narrow(0, 3, 6).copy_(row[0]);
    mask[0].narrow(0, 3, 6).fill_(1);
    ids[1].narrow(0, 0, 6).copy_(row[0]);
    mask[1].narrow(0, 0, 6).fill_(1);
    ForwardOptions opts;
    opts.attention_mask = mask;
    Tensor padded = m->forward(ids, opts);
    EXPECT_LT(rel_err(padded[0].narrow(0, 3, 6), alone[0]), 1e-5) << pos;
    EXPECT_LT(rel_err(padded[1].narrow(0, 0, 6), alone[0]), 1e-5) << pos;
    // Different ids under the padding change nothing at real positions.
    Tensor ids2 = ids.clone();
    ids2.masked_fill_(mask == 0, 17);
    Tensor padded2 = m->forward(ids2, opts);
    EXPECT_TRUE(torch::allclose(padded2.masked_select(mask.unsqueeze(-1).to(torch::kBool)),
                                padded.masked_select(mask.unsqueeze(-1).to(torch::kBool)), 1e-6,
                                1e-6));
    EXPECT_TRUE(torch::isfinite(padded2).all().item<bool>());
  }
}

TEST(GPT, LearnedPositionsRefuseLongerInputs) {
  GPT m = make(tiny("learned"));
  Tensor ids = torch::zeros({1, 17}, torch::kLong);
  std::string msg = what_of([&] { m->forward(ids); });
  EXPECT_NE(msg.find("context_length"), std::string::npos) << msg;
  EXPECT_NE(msg.find("16 positions"), std::string::npos) << msg;
  EXPECT_THROW(m->forward(ids), ModelError);
  // Sinusoidal positions extrapolate; rope runs at any length.
  for (const char* pos : {"sinusoidal", "rope"}) {
    GPT n = make(tiny(pos));
    EXPECT_TRUE(
        torch::isfinite(n->forward(torch::zeros({1, 40}, torch::kLong))).all().item<bool>());
  }
}

TEST(GPT, BadIdsAndMasksGiveModelErrors) {
  GPT m = make(tiny());
  std::string msg = what_of([&] { m->forward(torch::full({1, 3}, 37, torch::kLong)); });
  EXPECT_NE(msg.find("[0, 37)"), std::string::npos) << msg;
  EXPECT_THROW(m->forward(torch::zeros({1, 3}, torch::kInt)), ModelError);
  ForwardOptions opts;
  opts.attention_mask = torch::ones({1, 4});
  EXPECT_THROW(m->forward(torch::zeros({1, 3}, torch::kLong), opts), ModelError);
}

// ---- init and tying
// ------------------------------------------------------------------------------

TEST(GPT, InitialisationStatistics) {
  ModelConfig c;
  c.vocab_size = 2000;
  c.context_length = 256;
  c.n_layer = 4;
  c.n_head = 4;
  c.d_model = 256;
  GPT m = make(c, 7);
  const double std = 0.02, resid = 0.02 / std::sqrt(8.0);
  EXPECT_NEAR(m->wte->weight.std().item<double>(), std, 0.02 * std);
  EXPECT_NEAR(m->wte->weight.mean().item<double>(), 0.0, 0.01 * std);
  EXPECT_NEAR(m->wpe->weight.std().item<double>(), std, 0.03 * std);
  for (size_t l = 0; l < m->blocks->size(); ++l) {
    auto b = m->blocks->ptr<BlockImpl>(l);
    EXPECT_NEAR(b->attn->c_attn->weight.std().item<double>(), std, 0.03 * std);
    EXPECT_NEAR(b->mlp->c_fc->weight.std().item<double>(), std, 0.03 * std);
    EXPECT_NEAR(b->attn->c_proj->weight.std().item<double>(), resid, 0.03 * resid);
    EXPECT_NEAR(b->mlp->c_proj->weight.std().item<double>(), resid, 0.03 * resid);
    EXPECT_EQ(b->attn->c_attn->bias.abs().max().item<double>(), 0.0);
    EXPECT_EQ(b->ln_1->weight.min().item<double>(), 1.0);
    EXPECT_EQ(b->ln_2->bias.abs().max().item<double>(), 0.0);
  }
  // Same seed, same weights; another seed, other weights.
  GPT again = make(c, 7), other = make(c, 8);
  EXPECT_TRUE(torch::equal(again->wte->weight, m->wte->weight));
  EXPECT_FALSE(torch::equal(other->wte->weight, m->wte->weight));
}

TEST(GPT, TiedWeightsShareStorageAndSumBothGradients) {
  ModelConfig c = tiny();
  GPT tied = make(c, 3);
  EXPECT_EQ(tied->lm_head_weight().data_ptr(), tied->wte->weight.data_ptr());
  for (const auto& p : tied->named_parameters())  // the shared tensor is listed once
    EXPECT_TRUE(p.key() == "wte.weight" || p.value().data_ptr() != tied->wte->weight.data_ptr());

  c.tied_embeddings = false;
  GPT untied = make(c, 3);
  {
    torch::NoGradGuard g;
    auto src = tied->named_parameters();
    for (auto& p : untied->named_parameters())
      if (p.key() != "lm_head") p.value().copy_(src[p.key()]);
    untied->lm_head.copy_(tied->wte->weight);
  }
  Tensor ids = torch::randint(0, 37, {2, 9}, torch::kLong);
  Tensor targets = torch::randint(0, 37, {2, 9}, torch::kLong);
  loss(tied->forward(ids), targets).backward();
  loss(untied->forward(ids), targets).backward();
  EXPECT_LT(rel_err(tied->forward(ids), untied->forward(ids)), 1e-6);
  Tensor sum = untied->wte->weight.grad() + untied->lm_head.grad();
  EXPECT_LT(rel_err(tied->wte->weight.grad(), sum), 1e-5);
  EXPECT_GT(untied->wte->weight.grad().abs().max().item<double>(), 0);  // both parts matter
  EXPECT_GT(untied->lm_head.grad().abs().max().item<double>(), 0);
}

// ---- attention paths and capture
// --------------------------------------------------------------------

TEST(Attention, MathPathEqualsTheFormula) {
  torch::manual_seed(0);
  const int64_t B = 2, H = 3, T = 5, D = 4;
  Tensor q = torch::randn({B, H, T, D}), k = torch::randn({B, H, T, D}),
         v = torch::randn({B, H, T, D});
  Tensor bias = torch::full({T, T}, -INFINITY).triu(1);
  Tensor probs;
  Tensor y = attention(q, k, v, bias, true, 0.0, AttentionPath::kMath, &probs);
  Tensor want = torch::zeros({B, H, T, D});
  for (int64_t i = 0; i < T; ++i) {
    Tensor s = torch::matmul(q.narrow(2, i, 1), k.narrow(2, 0, i + 1).transpose(2, 3)) / 2.0;
    want.narrow(2, i, 1).copy_(torch::matmul(torch::softmax(s, -1), v.narrow(2, 0, i + 1)));
  }
  EXPECT_LT(rel_err(y, want), 1e-6);
  EXPECT_LT((probs.sum(-1) - 1).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(probs.triu(1).abs().max().item<double>(), 0.0);
}

TEST(FusedAttention, AgreesWithTheMathPath) {
  for (const auto& pos : kPositional) {
    GPT m = make(tiny(pos), 4);
    Tensor ids = torch::randint(0, 37, {2, 10}, torch::kLong);
    ForwardOptions math;
    math.attention = AttentionPath::kMath;
    ForwardOptions fused;
    fused.attention = AttentionPath::kFused;
    if (!fused_attention_available()) {
      EXPECT_THROW(m->forward(ids, fused), NotCompiled);
      continue;
    }
    EXPECT_LT(rel_err(m->forward(ids, fused), m->forward(ids, math)), 1e-5);
    Tensor mask = torch::ones({2, 10}, torch::kLong);
    mask[1].narrow(0, 0, 4).zero_();
    math.attention_mask = fused.attention_mask = mask;
    EXPECT_LT(rel_err(m->forward(ids, fused), m->forward(ids, math)), 1e-5);
  }
  if (!fused_attention_available()) GTEST_SKIP() << "LibTorch < 2.0: no fused attention to compare";
}

TEST(Attention, CaptureReturnsPerLayerCausalProbabilities) {
  ModelConfig c = tiny("rope");
  c.n_layer = 3;
  GPT m = make(c, 5);
  Tensor ids = torch::randint(0, 37, {2, 8}, torch::kLong);
  ForwardOptions opts;
  opts.capture_attention = true;
  Tensor with = m->forward(ids, opts);
  auto probs = m->captured_attention();
  ASSERT_EQ(probs.size(), 3u);
  for (const auto& p : probs) {
    EXPECT_EQ(p.sizes(), (std::vector<int64_t>{2, 2, 8, 8}));
    EXPECT_LT((p.sum(-1) - 1).abs().max().item<double>(), 1e-5);
    EXPECT_EQ(p.triu(1).abs().max().item<double>(), 0.0);  // no weight on future keys
    EXPECT_FALSE(p.requires_grad());
  }
  EXPECT_TRUE(torch::allclose(with, m->forward(ids), 1e-6, 1e-6));
  EXPECT_EQ(m->captured_attention().size(), 3u);  // a forward without capture keeps the last one
  opts.attention = AttentionPath::kFused;
  EXPECT_THROW(m->forward(ids, opts), ModelError);
}

// ---- RoPE scaling
// --------------------------------------------------------------------------------

TEST(Rope, ScalingAtTwiceTheContextGivesSensibleLogits) {
  // Train a tiny RoPE model at T = 16 to continue random period-4 patterns, then run
  // it at 2T. NTK-aware scaling keeps the high-frequency (short-range) rotations, so
  // it works without training: the first T positions stay good and the whole 2T
  // beats chance. Linear position interpolation (Chen et al. 2023) squeezes every
  // angle, so, as its paper prescribes, it needs a short fine-tune at 2T (here 40 steps
  // take it from about chance to well below).
  ModelConfig c = tiny("rope");
  c.vocab_size = 12;
  c.d_model = 32;
  c.n_head = 2;
  c.n_layer = 2;
  c.context_length = 16;
  GPT m = make(c, 11);
  torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(1e-2));
  auto batch = [&](int64_t B, int64_t T) {
    Tensor period = torch::randint(0, 12, {B, 4}, torch::kLong);
    return period.repeat({1, (T + 4) / 4}).narrow(1, 0, T + 1).contiguous();
  };
  auto train = [&](int steps, int64_t T) {
    m->train();
    for (int step = 0; step < steps; ++step) {
      Tensor seq = batch(16, T);
      Tensor l = loss(m->forward(seq.narrow(1, 0, T)), seq.narrow(1, 1, T));
      opt.zero_grad();
      l.backward();
      opt.step();
    }
    m->eval();
  };
  Tensor seq = batch(32, 32);
  Tensor mask = torch::ones({32, 32});
  mask.narrow(1, 0, 4).zero_();  // the first period cannot be predicted
  auto eval = [&](int64_t T, Tensor* logits_out = nullptr) {
    torch::NoGradGuard g;
    Tensor logits = m->forward(seq.narrow(1, 0, T));
    if (logits_out) *logits_out = logits;
    return loss(logits, seq.narrow(1, 1, T), mask.narrow(1, 0, T)).item<double>();
  };
  const double chance = std::log(12.0);
  train(150, 16);
  const double at_t = eval(16);
  ASSERT_LT(at_t, 0.3 * chance) << "the model did not learn the pattern at T";

  m->set_rope_scaling("ntk", 2.0);
  Tensor logits;
  const double ntk_2t = eval(32, &logits);
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  EXPECT_LT(ntk_2t, 0.8 * chance);
  {
    torch::NoGradGuard g;
    EXPECT_LT(
        loss(logits.narrow(1, 0, 16), seq.narrow(1, 1, 16), mask.narrow(1, 0, 16)).item<double>(),
        2 * at_t);
  }

  m->set_rope_scaling("linear", 2.0);
  const double linear_before = eval(32, &logits);
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  train(40, 32);
  const double linear_after = eval(32, &logits);
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  EXPECT_LT(linear_after, 0.8 * chance) << "before the fine-tune: " << linear_before;
  EXPECT_LT(linear_after, 0.8 * linear_before);
  EXPECT_THROW(m->set_rope_scaling("ntk", 0.5), ConfigError);
}

// ---- KV cache
// ---------------------------------------------------------------------------------------

TEST(KVCache, IncrementalDecodingEqualsTheFullForward) {
  for (const auto& pos : kPositional) {
    GPT m = make(tiny(pos), 6);
    torch::NoGradGuard g;
    Tensor ids = torch::randint(0, 37, {2, 12}, torch::kLong);
    Tensor full = m->forward(ids);
    KVCache cache(4);  // small on purpose: it has to grow
    ForwardOptions opts;
    opts.cache = &cache;
    Tensor first = m->forward(ids.narrow(1, 0, 5), opts);
    EXPECT_LT(rel_err(first, full.narrow(1, 0, 5)), 1e-5) << pos;
    for (int64_t t = 5; t < 12; ++t) {
      Tensor step = m->forward(ids.narrow(1, t, 1), opts);
      EXPECT_LT(rel_err(step, full.narrow(1, t, 1)), 1e-5) << pos << " t=" << t;
    }
    EXPECT_EQ(cache.length, 12);
    EXPECT_GE(cache.capacity, 12);
  }
}

TEST(KVCache, LeftPaddedRowsDecodeLikeRowsAlone) {
  for (const auto& pos : kPositional) {
    GPT m = make(tiny(pos), 8);
    torch::NoGradGuard g;
    Tensor a = torch::randint(0, 37, {1, 7}, torch::kLong);  // prompt 3 + 4 generated
    Tensor b = torch::randint(0, 37, {1, 9}, torch::kLong);  // prompt 5 + 4 generated
    Tensor alone_a = m->forward(a), alone_b = m->forward(b);
    Tensor prompt = torch::zeros({2, 5}, torch::kLong), mask = torch::zeros({2, 5}, torch::kLong);
    prompt[0].narrow(0, 2, 3).copy_(a[0].narrow(0, 0, 3));
    mask[0].narrow(0, 2, 3).fill_(1);
    prompt[1].copy_(b[0].narrow(0, 0, 5));
    mask[1].fill_(1);
    KVCache cache;
    ForwardOptions opts;
    opts.cache = &cache;
    opts.attention_mask = mask;
    Tensor out = m->forward(prompt, opts);
    EXPECT_LT(rel_err(out[0].narrow(0, 2, 3), alone_a[0].narrow(0, 0, 3)), 1e-5) << pos;
    EXPECT_LT(rel_err(out[1], alone_b[0].narrow(0, 0, 5)), 1e-5) << pos;
    opts.attention_mask = Tensor();
    for (int64_t s = 0; s < 4; ++s) {
      Tensor next = torch::stack({a[0][3 + s], b[0][5 + s]}).view({2, 1});
      Tensor step = m->forward(next, opts);
      EXPECT_LT(rel_err(step[0][0], alone_a[0][3 + s]), 1e-5) << pos << " s=" << s;
      EXPECT_LT(rel_err(step[1][0], alone_b[0][5 + s]), 1e-5) << pos << " s=" << s;
    }
    // reorder(): swapping the rows swaps what the next step continues.
    cache.reorder(torch::tensor({1, 0}, torch::kLong));
    EXPECT_EQ(cache.next_pos[0].item<int64_t>(), 9);
    EXPECT_EQ(cache.next_pos[1].item<int64_t>(), 7);
  }
}

TEST(KVCache, RejectsAnotherBatchSizeUntilReset) {
  GPT m = make(tiny("rope"));
  torch::NoGradGuard g;
  KVCache cache;
  ForwardOptions opts;
  opts.cache = &cache;
  m->forward(torch::zeros({2, 3}, torch::kLong), opts);
  EXPECT_THROW(m->forward(torch::zeros({3, 1}, torch::kLong), opts), ModelError);
  cache.reset();
  EXPECT_EQ(m->forward(torch::zeros({3, 1}, torch::kLong), opts).size(0), 3);
}

// ---- block runner, training mode, precision, loss ----------------------------------------------

TEST(GPT, BlockRunnerWrapsEveryBlock) {
  GPT m = make(tiny("rope"), 9);
  Tensor ids = torch::randint(0, 37, {2, 6}, torch::kLong);
  Tensor plain = m->forward(ids);
  std::vector<int64_t> seen;
  ForwardOptions opts;
  opts.block_runner = [&](int64_t layer, const BlockFn& run, const Tensor& x) {
    seen.push_back(layer);
    EXPECT_EQ(x.sizes(), (std::vector<int64_t>{2, 6, 16}));
    // What activation checkpointing does: run once without a graph, then again.
    {
      torch::NoGradGuard g;
      run(x);
    }
    return run(x);
  };
  Tensor wrapped = m->forward(ids, opts);
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1}));
  EXPECT_TRUE(torch::equal(plain, wrapped));
  // A runner that skips the block changes the output: the runner is really used.
  opts.block_runner = [](int64_t, const BlockFn&, const Tensor& x) { return x; };
  EXPECT_FALSE(torch::allclose(m->forward(ids, opts), plain));
}

TEST(GPT, DropoutActsOnlyInTraining) {
  ModelConfig c = tiny();
  c.embd_dropout = c.attn_dropout = c.resid_dropout = 0.2;
  GPT m = make(c);
  Tensor ids = torch::randint(0, 37, {2, 8}, torch::kLong);
  EXPECT_TRUE(torch::equal(m->forward(ids), m->forward(ids)));
  m->train();
  EXPECT_FALSE(torch::equal(m->forward(ids), m->forward(ids)));
}

TEST(GPT, Bfloat16ForwardExplicitAndAutocast) {
  ModelConfig c = tiny("rope");
  c.d_model = 64;
  c.n_head = 4;
  GPT m = make(c, 10);
  Tensor ids = torch::randint(0, 37, {2, 10}, torch::kLong);
  Tensor targets = torch::randint(0, 37, {2, 10}, torch::kLong);
  Tensor ref = m->forward(ids);
  {
    // Autocast: weights stay fp32, matmuls run in bf16, and backward works.
    Tensor logits, l;
    {
      AutocastGuard autocast(torch::kCPU, torch::kBFloat16);
      logits = m->forward(ids);
      l = loss(logits, targets);
    }
    EXPECT_FALSE(torch::equal(m->forward(ids), logits.to(torch::kFloat)));  // fp32 again
    EXPECT_EQ(logits.scalar_type(), torch::kBFloat16);
    EXPECT_LT(rel_err(logits, ref), 5e-2);
    l.backward();
    EXPECT_TRUE(torch::isfinite(m->wte->weight.grad()).all().item<bool>());
    EXPECT_EQ(m->wte->weight.grad().scalar_type(), torch::kFloat);
  }
  for (const auto& pos : kPositional) {  // explicit bf16 weights, with padding
    GPT b = make(tiny(pos), 10);
    Tensor want = b->forward(ids);
    b->to(torch::kBFloat16);
    ForwardOptions opts;
    opts.attention_mask = torch::ones({2, 10}, torch::kLong);
    Tensor got = b->forward(ids);
    EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
    EXPECT_LT(rel_err(got, want), 5e-2) << pos;
    EXPECT_LT(rel_err(b->forward(ids, opts), want), 5e-2) << pos;
    EXPECT_TRUE(std::isfinite(loss(got, targets).item<double>()));
  }
}

TEST(GPT, LossIsTheMaskedMeanCrossEntropy) {
  torch::manual_seed(0);
  Tensor logits = torch::randn({2, 5, 11}, torch::requires_grad());
  Tensor targets = torch::randint(0, 11, {2, 5}, torch::kLong);
  Tensor mask = torch::tensor({1, 1, 0, 1, 0, 0, 1, 1, 1, 1}, torch::kLong).view({2, 5});
  Tensor lp = torch::log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  const double want = -(lp * mask).sum().item<double>() / 7.0;
  Tensor ours = loss(logits, targets.masked_fill(mask == 0, -100), mask);  // masked: any value
  EXPECT_NEAR(ours.item<double>(), want, 1e-6);
  Tensor g_ours = torch::autograd::grad({ours * 3}, {logits})[0];
  Tensor g_ref = torch::autograd::grad({-(lp * mask).sum() / 7.0 * 3}, {logits})[0];
  EXPECT_LT(rel_err(g_ours, g_ref), 1e-6);
  Tensor half = logits.detach().to(torch::kBFloat16).requires_grad_();
  loss(half, targets).backward();
  EXPECT_EQ(half.grad().scalar_type(), torch::kBFloat16);
  EXPECT_NEAR(loss(logits, targets).item<double>(), -lp.mean().item<double>(), 1e-6);
  Tensor none = loss(logits, targets, torch::zeros({2, 5}));
  EXPECT_EQ(none.item<double>(), 0.0);
  none.backward();
  EXPECT_EQ(logits.grad().abs().max().item<double>(), 0.0);
  EXPECT_THROW(loss(logits, targets.narrow(1, 0, 4)), ModelError);
}
