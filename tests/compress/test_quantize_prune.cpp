// INT8 / INT4 quantisation and pruning (compress): round-trip error
// bounds per element, exact int4 packing, quantised logits and perplexity close
// to fp32, save / load of the quantised format, exact sparsity, masks that keep
// pruned weights zero, and a neuron-pruned model equal to the masked original.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "compress/io.h"
#include "compress/prune.h"
#include "compress/quantize.h"
#include "load/model_bundle.h"
#include "model/generate.h"
#include "model/safetensors.h"
#include "tests/compress/compress_helpers.h"
#include "tests/model/helpers.h"

using namespace shardlm::model;
using namespace shardlm::model::compress;
using shardlm::model::compress::test_util::held_out_loss;
using shardlm::model::compress::test_util::tiny_config;
using shardlm::model::compress::test_util::trained_tiny;
using shardlm::model::test_util::rel_err;
using shardlm::model::test_util::what_of;
using torch::Tensor;
namespace fs = std::filesystem;
namespace ct = shardlm::model::compress::test_util;

namespace {

std::string tmp_dir(const std::string& name) {
  fs::path p = fs::path(SHARDLM_TEST_TMP) / ("compress_" + name + std::to_string(::getpid()));
  fs::remove_all(p);
  return p.string();
}

// Heavy-tailed test weights (outliers stress per-row and per-group scales), with an
// all-zero row and some exact zeros.
Tensor test_weight(int64_t out, int64_t in) {
  torch::manual_seed(3);
  Tensor w = torch::randn({out, in}) * 0.02;
  w.index_put_({torch::rand({out, in}) < 0.01}, 0.5);  // outliers
  w[1].zero_();
  w.index_put_({torch::rand({out, in}) < 0.05}, 0.0);
  return w;
}

Tensor logits_of(GPT m, const Tensor& ids) {
  torch::NoGradGuard g;
  return m->forward(ids);
}

Tensor test_ids() {
  torch::manual_seed(5);
  return torch::randint(0, 64, {3, 20}, torch::kLong);
}

}  // namespace

// ---- the schemes -------------------------------------------------------------------------

TEST(QuantInt8, RoundTripErrorIsAtMostHalfAScalePerElement) {
  Tensor w = test_weight(48, 96);
  QuantizedTensor q = quantize_int8(w);
  EXPECT_EQ(q.q.scalar_type(), torch::kChar);
  EXPECT_EQ(q.scale.sizes(), torch::IntArrayRef({48}));
  EXPECT_LE(q.q.abs().max().item<int>(), 127);
  Tensor err = (w - q.dequantize()).abs();
  Tensor bound = q.scale.unsqueeze(1) / 2 * (1 + 1e-6);
  EXPECT_TRUE((err <= bound).all().item<bool>()) << "max excess " << (err - bound).max();
  EXPECT_TRUE((q.dequantize()[1] == 0).all().item<bool>());  // zero row stays zero
  EXPECT_TRUE((q.dequantize().masked_select(w == 0) == 0).all().item<bool>());
  // The largest |w| of each row maps to +-127 exactly: the range is fully used.
  EXPECT_EQ(q.q[0].abs().max().item<int>(), 127);
  EXPECT_EQ(q.nbytes(), 48 * 96 + 48 * 4);
  // The same codes as PyTorch's own per-channel quantiser (torch.ao) given our scales.
  Tensor ref = at::quantize_per_channel(w, q.scale.to(torch::kDouble),
                                        torch::zeros({48}, torch::kLong), 0, torch::kQInt8)
                   .int_repr();
  EXPECT_TRUE(torch::equal(ref, q.q));
}

TEST(QuantInt4, PackingIsExactAndNibbleOrdered) {
  torch::manual_seed(1);
  Tensor codes = torch::randint(0, 16, {5, 34}, torch::kByte);
  Tensor packed = pack_int4(codes);
  EXPECT_EQ(packed.sizes(), torch::IntArrayRef({5, 17}));
  EXPECT_TRUE(torch::equal(unpack_int4(packed), codes));
  Tensor pair = torch::tensor({1, 2, 15, 0}, torch::kByte);
  Tensor p = pack_int4(pair);
  EXPECT_EQ(p[0].item<int>(), 0x21);  // element 0 in the low nibble
  EXPECT_EQ(p[1].item<int>(), 0x0F);
  EXPECT_NE(what_of([&] { pack_int4(torch::zeros({3}, torch::kByte)); }).find("even"),
            std::string::npos);
  EXPECT_NE(what_of([&] { pack_int4(torch::full({2}, 16, torch::kByte)); }).find("[0, 15]"),
            std::string::npos);
}

TEST(QuantInt4, RoundTripErrorIsAtMostHalfAScaleForEveryGroupSizeAndMode) {
  Tensor w = test_weight(16, 256);
  for (int64_t g : {32, 64, 128}) {
    for (bool sym : {true, false}) {
      SCOPED_TRACE("group " + std::to_string(g) + (sym ? " symmetric" : " asymmetric"));
      QuantizedTensor q = quantize_int4(w, g, sym);
      EXPECT_EQ(q.q.sizes(), torch::IntArrayRef({16, 128}));  // two codes per byte
      EXPECT_EQ(q.scale.sizes(), torch::IntArrayRef({16, 256 / g}));
      EXPECT_EQ(q.zero.defined(), !sym);
      Tensor dq = q.dequantize();
      Tensor bound = q.scale.repeat_interleave(g, 1) / 2 * (1 + 1e-6);
      Tensor err = (w - dq).abs();
      EXPECT_TRUE((err <= bound).all().item<bool>()) << "max excess " << (err - bound).max();
      EXPECT_TRUE((dq.masked_select(w == 0) == 0).all().item<bool>());  // zero is exact
    }
  }
  EXPECT_NE(what_of([&] {
              quantize_int4(torch::randn({4, 48}), 32, true);
            }).find("multiple"),
            std::string::npos);
}

// ---- quantised models ----------------------------------------------------------------------

// Bounds: a weight's rounding error is uniform in [-s/2, s/2], std s/sqrt(12). A
// near-Gaussian row of 64-256 weights has max|w| ~ 3 sigma, so int8 (s = max / 127)
// perturbs each weight by ~0.7 % of sigma; an int4 group of 32 (max ~ 2.2 sigma,
// s = max / 7) by ~9 %. Independent errors average out in each dot product, so a
// matmul output moves by about that fraction of its own spread, and the measured
// max-logit error (0.35 % int8, 2.6 % int4 on this model) stays below it. The bounds
// (1 %, 8 %) are ~3x the measurement and still under the per-weight estimate.
TEST(QuantModel, LogitsStayCloseToFp32) {
  GPT m = trained_tiny();
  Tensor ids = test_ids();
  Tensor ref = logits_of(m, ids);
  struct Case {
    QuantConfig cfg;
    double bound;
  };
  QuantConfig i8, i4, i4a;
  i4.method = i4a.method = "int4";
  i4.group_size = 32;
  i4a.group_size = 64;
  i4a.symmetric = false;
  i8.embeddings = true;
  for (const Case& c : {Case{i8, 0.01}, Case{i4, 0.08}, Case{i4a, 0.08}}) {
    SCOPED_TRACE(c.cfg.to_json().dump());
    QuantizedModel qm = quantize(m, c.cfg);
    EXPECT_TRUE(torch::equal(logits_of(qm.model, ids), ref));  // not installed yet: fp32
    install_runtime(qm, "dequantized");
    const double e = rel_err(logits_of(qm.model, ids), ref);
    std::printf("%s: logits relative error %.4f\n", c.cfg.method.c_str(), e);
    EXPECT_LT(e, c.bound);
    EXPECT_GT(e, 0.0);
    // on_the_fly runs the same dequantised weights: the same logits, bit for bit.
    Tensor dequantized = logits_of(qm.model, ids);
    install_runtime(qm, "on_the_fly");
    EXPECT_TRUE(torch::equal(logits_of(qm.model, ids), dequantized));
  }
  EXPECT_TRUE(torch::equal(logits_of(m, ids), ref));  // the source model is untouched
}

TEST(QuantModel, PerplexityOfTheTrainedModelBarelyMoves) {
  GPT m = trained_tiny();
  const double fp32 = held_out_loss(m);
  QuantConfig i8, i4;
  i4.method = "int4";
  i4.group_size = 32;
  QuantizedModel q8 = quantize(m, i8), q4 = quantize(m, i4);
  install_runtime(q8, "dequantized");
  install_runtime(q4, "dequantized");
  const double l8 = held_out_loss(q8.model), l4 = held_out_loss(q4.model);
  std::printf("held-out perplexity: fp32 %.4f, int8 %.4f (%+.2f%%), int4/32 %.4f (%+.2f%%)\n",
              std::exp(fp32), std::exp(l8), 100 * (std::exp(l8 - fp32) - 1), std::exp(l4),
              100 * (std::exp(l4 - fp32) - 1));
  EXPECT_LT(fp32, 0.6 * std::log(64.0));  // it did learn the language
  // ppl ratio = exp(loss delta): int8 within 1 %, int4 within 5 %.
  EXPECT_LT(std::abs(l8 - fp32), std::log(1.01));
  EXPECT_LT(std::abs(l4 - fp32), std::log(1.05));
}

TEST(QuantModel, SavedModelLoadsBackExactlyAndIsSmaller) {
  GPT m = trained_tiny();
  const std::string fp = tmp_dir("fp32"), q8dir = tmp_dir("int8"), q4dir = tmp_dir("int4");
  save_safetensors(m, fp);
  Tensor ids = test_ids();
  QuantConfig i8, i4;
  i4.method = "int4";
  i4.group_size = 32;
  i4.symmetric = false;
  i4.embeddings = true;
  i4.runtime = "on_the_fly";
  for (const auto& [cfg, dir] : {std::pair{i8, q8dir}, std::pair{i4, q4dir}}) {
    QuantizedModel qm = quantize(m, cfg);
    save_quantized(qm, dir);
    install_runtime(qm, "dequantized");
    EXPECT_TRUE(is_quantized_dir(dir));
    QuantizedModel back = load_quantized(dir);
    EXPECT_EQ(back.cfg.runtime, cfg.runtime);
    ASSERT_EQ(back.weights.size(), qm.weights.size());
    for (const auto& [name, qt] : qm.weights) {
      const QuantizedTensor& b = back.weights.at(name);
      EXPECT_EQ(b.scheme, qt.scheme) << name;
      EXPECT_TRUE(torch::equal(b.q, qt.q)) << name;
      EXPECT_TRUE(torch::equal(b.scale, qt.scale)) << name;
      if (qt.zero.defined()) EXPECT_TRUE(torch::equal(b.zero, qt.zero)) << name;
    }
    EXPECT_TRUE(torch::equal(logits_of(back.model, ids), logits_of(qm.model, ids)));
  }
  EXPECT_FALSE(is_quantized_dir(fp));
  const double f = weights_file_bytes(fp), b8 = weights_file_bytes(q8dir),
               b4 = weights_file_bytes(q4dir);
  std::printf("weights file: fp32 %.0f B, int8 %.0f B (x%.2f), int4+emb %.0f B (x%.2f)\n", f, b8,
              f / b8, b4, f / b4);
  EXPECT_LT(b8, 0.6 * f);  // the unquantised embeddings keep int8 above 1/4
  EXPECT_LT(b4, 0.25 * f);
  // load::load_model finds it; the plain safetensors loader refuses.
  shardlm::load::ModelBundle im = shardlm::load::load_model(q4dir);
  EXPECT_EQ(im.format, "safetensors+int4");
  EXPECT_TRUE(torch::equal(logits_of(im.model, ids), logits_of(load_quantized(q4dir).model, ids)));
  const std::string refused = what_of([&] { load_safetensors(q4dir); });
  EXPECT_NE(refused.find("quantised"), std::string::npos) << refused;
  // A missing scale names the tensor.
  SafetensorsFile f8 = read_safetensors(q8dir + "/model.safetensors");
  NamedTensors kept;
  for (auto& [n, t] : f8.tensors)
    if (n != "blocks.0.mlp.c_fc.weight.scale") kept.emplace_back(n, t);
  write_safetensors(q8dir + "/model.safetensors", kept);
  EXPECT_NE(what_of([&] { load_quantized(q8dir); }).find("blocks.0.mlp.c_fc.weight.scale"),
            std::string::npos);
}

TEST(QuantModel, OnTheFlyKeepsOnlyIntWeightsAndGeneratesLikeDequantized) {
  GPT m = trained_tiny();
  QuantConfig c;
  c.method = "int4";
  c.group_size = 32;
  QuantizedModel a = quantize(m, c), b = quantize(m, c);
  install_runtime(a, "dequantized");
  install_runtime(b, "on_the_fly");
  for (const auto& p : b.model->named_parameters())
    if (p.key().rfind("blocks.", 0) == 0 && p.key().find(".weight") != std::string::npos &&
        p.key().find("ln_") == std::string::npos)
      EXPECT_EQ(p.value().numel(), 0) << p.key() << " should be freed between forwards";
  GenerationConfig g;
  g.max_new_tokens = 12;
  auto ta = Generator(a.model, g).generate({{1, 2, 3}, {7}});
  auto tb = Generator(b.model, g).generate({{1, 2, 3}, {7}});
  EXPECT_EQ(ta.sequences[0][0].tokens, tb.sequences[0][0].tokens);
  EXPECT_EQ(ta.sequences[1][0].tokens, tb.sequences[1][0].tokens);
}

TEST(QuantConfig, ValidateNamesTheField) {
  QuantConfig c;
  c.method = "int3";
  EXPECT_NE(what_of([&] { c.validate(); }).find("method"), std::string::npos);
  c.method = "int4";
  c.group_size = 48;
  EXPECT_NE(what_of([&] { c.validate(); }).find("group_size"), std::string::npos);
}

// ---- pruning -------------------------------------------------------------------------------

TEST(PruneMagnitude, ReachesExactlyTheTargetSparsityGloballyAndPerLayer) {
  for (bool global : {true, false}) {
    torch::manual_seed(2);
    GPT m(tiny_config());
    Masks masks = prune_magnitude(m, 0.37, global);
    int64_t zeros = 0, total = 0;
    double max_pruned = 0, min_kept = 1e9;
    for (const auto& [name, mask] : masks) {
      Tensor w = m->named_parameters()[name];
      const int64_t z = (w == 0).sum().item<int64_t>();
      if (!global) EXPECT_EQ(z, std::llround(0.37 * w.numel())) << name;
      zeros += z;
      total += w.numel();
      EXPECT_TRUE(torch::equal(w == 0, mask.logical_not())) << name;
      Tensor a = m->named_parameters()[name].abs();  // pruned entries are 0 now: use the mask
      if (global) min_kept = std::min(min_kept, a.masked_select(mask).min().item<double>());
    }
    EXPECT_EQ(masks.size(), 4u * 2);  // c_attn, c_proj, c_fc, mlp.c_proj per layer
    if (global) EXPECT_EQ(zeros, std::llround(0.37 * total));
    EXPECT_NEAR(block_weight_sparsity(m), 0.37, 1e-3);
    // Globally, everything pruned was at most as large as everything kept.
    if (global) {
      torch::manual_seed(2);
      GPT fresh(tiny_config());
      for (const auto& [name, mask] : masks)
        max_pruned = std::max(max_pruned, fresh->named_parameters()[name]
                                              .abs()
                                              .masked_select(mask.logical_not())
                                              .max()
                                              .item<double>());
      EXPECT_LE(max_pruned, min_kept);
    }
  }
}

TEST(PruneMagnitude, MasksKeepPrunedWeightsZeroWhileFineTuning) {
  torch::manual_seed(4);
  GPT m(tiny_config());
  Masks masks = prune_magnitude(m, 0.5, true);
  Tensor before = m->named_parameters()["blocks.0.attn.c_attn.weight"].clone();
  torch::optim::SGD opt(m->parameters(), 0.1);
  for (int step = 0; step < 3; ++step) {
    auto b = ct::synthetic_batch(4, 16, step);
    opt.zero_grad();
    loss(m->forward(b.input_ids), b.targets).backward();
    opt.step();
    apply_masks(m, masks);
  }
  Tensor after = m->named_parameters()["blocks.0.attn.c_attn.weight"];
  Tensor keep = masks.at("blocks.0.attn.c_attn.weight");
  EXPECT_TRUE((after.masked_select(keep.logical_not()) == 0).all().item<bool>());
  EXPECT_FALSE(torch::equal(after.masked_select(keep), before.masked_select(keep)));  // trained
  EXPECT_NEAR(block_weight_sparsity(m), 0.5, 1e-3);
}

TEST(PruneNeurons, SmallerModelGivesTheLogitsOfTheMaskedOriginal) {
  GPT m = trained_tiny();
  Tensor ids = test_ids();
  Batches batches;
  for (int i = 0; i < 2; ++i) {
    auto b = ct::synthetic_batch(8, 32, 50 + i);
    batches.emplace_back(b.input_ids, b.targets);
  }
  for (const std::string score : {"l2", "taylor"}) {
    SCOPED_TRACE(score);
    GPT work = copy_gpt(m);
    auto imp = neuron_importance(work, score, batches);
    ASSERT_EQ(imp.size(), 2u);
    EXPECT_EQ(imp[0].numel(), 256);
    EXPECT_TRUE((imp[0] >= 0).all().item<bool>());
    auto keep = top_indices(imp, 96);
    GPT small = prune_neurons(work, keep);
    EXPECT_EQ(small->config().d_ff, 96);
    EXPECT_LT(small->config().num_parameters(), m->config().num_parameters());
    mask_neurons(work, keep);
    Tensor a = logits_of(small, ids), b = logits_of(work, ids);
    EXPECT_LT((a - b).abs().max().item<double>(), 1e-5);
    EXPECT_GT((b - logits_of(m, ids)).abs().max().item<double>(), 1e-3);  // pruning did act
    // The importance order is what was kept: every kept neuron scores >= every dropped one.
    Tensor kept = torch::zeros({256}, torch::kBool).index_fill_(0, keep[0], true);
    EXPECT_GE(imp[0].masked_select(kept).min().item<double>(),
              imp[0].masked_select(kept.logical_not()).max().item<double>());
  }
  // Through prune(): held-out loss of a 25 % neuron cut stays near the original.
  PruneConfig pc;
  pc.method = "neurons";
  pc.sparsity = 0.25;
  PruneResult r = prune(m, pc);
  EXPECT_EQ(r.model->config().d_ff, 192);
  std::printf("neurons -25%% (l2): held-out loss %.4f -> %.4f\n", held_out_loss(m),
              held_out_loss(r.model));
}

TEST(PruneHeads, MaskedHeadsAddNothingAndScoreZero) {
  GPT m = copy_gpt(trained_tiny());
  std::vector<Tensor> keep{torch::tensor({0, 2}, torch::kLong), torch::tensor({1, 2, 3})};
  Masks masks = mask_heads(m, keep);
  auto imp = head_importance(m, "l2");
  EXPECT_EQ(imp[0][1].item<double>(), 0.0);
  EXPECT_EQ(imp[0][3].item<double>(), 0.0);
  EXPECT_GT(imp[0][0].item<double>(), 0.0);
  EXPECT_EQ(imp[1][0].item<double>(), 0.0);
  // Scrambling the q/k/v rows of a masked head changes nothing: its output is cut by
  // the zero c_proj columns.
  Tensor ids = test_ids();
  Tensor before = logits_of(m, ids);
  {
    torch::NoGradGuard g;
    m->named_parameters()["blocks.0.attn.c_attn.weight"].narrow(0, 16, 16).normal_();
  }
  EXPECT_TRUE(torch::allclose(logits_of(m, ids), before, 1e-5, 1e-6));
  PruneConfig pc;
  pc.method = "heads";
  pc.sparsity = 0.5;
  PruneResult r = prune(trained_tiny(), pc);
  EXPECT_EQ(head_importance(r.model, "l2")[0].eq(0).sum().item<int64_t>(), 2);
}

TEST(PruneConfig, ValidateNamesTheField) {
  PruneConfig c;
  c.sparsity = 1.0;
  EXPECT_NE(what_of([&] { c.validate(); }).find("sparsity"), std::string::npos);
  c.sparsity = 0.5;
  c.score = "fisher";
  EXPECT_NE(what_of([&] { c.validate(); }).find("score"), std::string::npos);
}
