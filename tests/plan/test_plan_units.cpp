// The planner's parts in one process: the unit layout and the 8-bit Adam
// state mirror against the real classes, sizes, network models, and the
// --search verdict for a 7B model on 8 x 80 GB GPUs against numbers worked
// out by hand below.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "core/error.h"
#include "model/gpt.h"
#include "parallel/adam8bit.h"
#include "parallel/flat_params.h"
#include "parallel/mpi_group.h"
#include "plan/plan.h"
#include "plan/search.h"
#include "runtime/engine.h"

namespace shardlm::plan {
namespace {

model::ModelConfig small(bool variant) {
  model::ModelConfig m;
  m.vocab_size = 101;
  m.context_length = 16;
  m.n_layer = 2;
  m.n_head = 2;
  m.d_model = 10;
  if (variant) {
    m.positional = "rope";
    m.d_model = 12;  // RoPE needs an even head dim
    m.tied_embeddings = false;
    m.bias = false;
    m.fused_qkv = false;
    m.d_ff = 23;
  }
  return m;
}

// ---- layout ------------------------------------------------------------------------------

TEST(PlanLayout, UnitsMatchTheShardedModel) {
  auto group = std::make_shared<parallel::MpiGroup>(MPI_COMM_SELF);
  for (bool variant : {false, true}) {
    const model::ModelConfig cfg = small(variant);
    runtime::Engine engine(model::GPT(cfg), parallel::ShardedConfig{}, parallel::OptimizerConfig{},
                           group, torch::kCPU);
    const auto units = model_units(cfg);
    ASSERT_EQ(units.size(), engine.sharded().num_units());
    int64_t total = 0;
    for (size_t i = 0; i < units.size(); ++i) {
      const auto& real = engine.sharded().unit_layout(i);
      ASSERT_EQ(units[i].params.size(), real.entries().size()) << units[i].name;
      for (size_t k = 0; k < units[i].params.size(); ++k) {
        EXPECT_EQ(units[i].params[k].name, real.entries()[k].name);
        EXPECT_EQ(units[i].params[k].numel, real.entries()[k].numel) << real.entries()[k].name;
        EXPECT_EQ(units[i].params[k].decay, real.entries()[k].decay) << real.entries()[k].name;
      }
      EXPECT_EQ(units[i].numel(), real.numel());
      total += units[i].numel();
    }
    EXPECT_EQ(total, cfg.num_parameters());
  }
}

TEST(PlanLayout, PaddingAndShardsFollowFlatParams) {
  UnitInfo u;
  u.params.push_back(ParamInfo{"w", 10, true, true, false});
  EXPECT_EQ(u.padded(4), 12);
  EXPECT_EQ(u.shard(4), 3);
  EXPECT_EQ(u.padded(1), 10);
  UnitInfo empty;
  EXPECT_EQ(empty.padded(4), 4);      // every rank owns at least one (padding) element
  auto segs = segments(u, 4, 9, 12);  // the last rank's shard: one weight, two padding
  ASSERT_EQ(segs.size(), 2u);
  EXPECT_EQ(segs[0].end - segs[0].begin, 1);
  EXPECT_TRUE(segs[1].padding);
  EXPECT_EQ(segs[1].end - segs[1].begin, 2);
}

// The 8-bit state mirror equals Adam8bit::state_bytes for every rank's shard
// of a block and of the root, at several world sizes and block sizes.
TEST(PlanLayout, Adam8bitStateBytesMatchTheOptimizer) {
  model::ModelConfig cfg = small(false);
  cfg.d_model = 40;
  cfg.vocab_size = 997;
  model::GPT gpt(cfg);
  const auto units = model_units(cfg);
  std::vector<std::vector<torch::Tensor>> params(2);
  std::vector<std::vector<std::string>> names(2);
  for (const auto& item : gpt->blocks[0]->named_parameters()) {
    params[0].push_back(item.value());
    names[0].push_back("blocks.0." + item.key());
  }
  for (const auto& item : gpt->named_parameters())
    if (item.key().rfind("blocks.", 0) != 0) {
      params[1].push_back(item.value());
      names[1].push_back(item.key());
    }
  const UnitInfo* info[2] = {&units[0], &units.back()};
  for (int world : {1, 3, 4})
    for (int64_t block : {256, 2048})
      for (int u = 0; u < 2; ++u) {
        parallel::FlatParams flat(params[u], names[u], world);
        ASSERT_EQ(flat.padded_numel(), info[u]->padded(world));
        for (int r = 0; r < world; ++r) {
          parallel::OptimizerConfig oc;
          oc.name = "adam8bit";
          oc.block_size = block;
          oc.min_8bit_numel = 1000;
          oc.embedding_fp32_state = u == 1 && world == 3;
          parallel::Adam8bit opt(oc);
          opt.set_segments(flat.shard_segments(r));
          auto p = flat.shard(r).clone();
          opt.step(p, torch::zeros_like(p));
          ShardingSpec spec;
          spec.optimizer = "adam8bit";
          spec.block_size = block;
          spec.min_8bit_numel = 1000;
          spec.embedding_fp32_state = oc.embedding_fp32_state;
          const auto range = flat.shard_range(r);
          EXPECT_EQ(
              optimizer_state_bytes(spec, segments(*info[u], world, range.first, range.second)),
              opt.state_bytes())
              << "unit " << u << " world " << world << " rank " << r << " block " << block;
        }
      }
}

// ---- sizes and profiles ---------------------------------------------------------------------

TEST(PlanProfiles, SizesParseAndBadOnesNameTheText) {
  EXPECT_DOUBLE_EQ(parse_bytes("80GB"), 80e9);
  EXPECT_DOUBLE_EQ(parse_bytes("80 GiB"), 80.0 * 1073741824);
  EXPECT_DOUBLE_EQ(parse_bytes("1.5TB"), 1.5e12);
  EXPECT_DOUBLE_EQ(parse_bytes("512MiB"), 512.0 * 1048576);
  EXPECT_DOUBLE_EQ(parse_bytes("1e9"), 1e9);
  try {
    parse_bytes("80 GX", "--device-memory");
    FAIL() << "no error";
  } catch (const core::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--device-memory"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("80 GX"), std::string::npos);
  }
  EXPECT_THROW(parse_bytes("-1GB"), core::ConfigError);
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
}

TEST(PlanProfiles, PresetsAndUnknownNames) {
  const DeviceProfile h100 = device_profile("h100"), h200 = device_profile("h200");
  EXPECT_DOUBLE_EQ(h100.peak_flops_bf16, 989.4e12);
  EXPECT_DOUBLE_EQ(h200.peak_flops_bf16, h100.peak_flops_bf16);  // same GH100 compute
  EXPECT_DOUBLE_EQ(h100.memory_bytes, 80e9);
  EXPECT_DOUBLE_EQ(h200.memory_bytes, 141e9);
  EXPECT_GT(h200.memory_bw, h100.memory_bw);
  const NetworkProfile n = network_profile("nvlink4,eth-100g");
  EXPECT_EQ(n.intra.name, "nvlink4");
  EXPECT_DOUBLE_EQ(n.inter.bandwidth, 12.5e9);
  EXPECT_EQ(network_profile("dgx-h100").inter.name, "ib-ndr8");
  EXPECT_THROW(device_profile("v100"), core::ConfigError);
  EXPECT_THROW(network_profile("nvlink9,ib-ndr"), core::ConfigError);
  EXPECT_THROW(network_profile("carrier-pigeon"), core::ConfigError);
}

// ---- network models ---------------------------------------------------------------------------

TEST(PlanComm, RingAndTreeModels) {
  using parallel::Collective;
  const double bw = 100e9, lat = 5e-6;
  // 1 GB all-reduce on 8 ranks: ring 2*7*5us + 2*7/8*1e9/1e11 s.
  EXPECT_NEAR(ring_seconds(Collective::kAllReduce, 1e9, 8, bw, lat), 14 * lat + 0.0175, 1e-12);
  // Tree: 2*log2(8)*5us + 2*1e9/1e11 s.
  EXPECT_NEAR(tree_seconds(Collective::kAllReduce, 1e9, 8, bw, lat), 6 * lat + 0.02, 1e-12);
  // Small messages on many ranks are latency-bound: the tree wins by far.
  EXPECT_LT(10 * tree_seconds(Collective::kAllReduce, 8, 1024, bw, lat),
            ring_seconds(Collective::kAllReduce, 8, 1024, bw, lat));
  // Reduce-scatter and all-gather each move half of an all-reduce.
  EXPECT_NEAR(2 * ring_seconds(Collective::kAllGather, 1e9, 8, bw, 0),
              ring_seconds(Collective::kAllReduce, 1e9, 8, bw, 0), 1e-12);
  EXPECT_EQ(ring_seconds(Collective::kAllReduce, 1e9, 1, bw, lat), 0);
}

TEST(PlanComm, BytesPerStepFollowTheZeroFormulas) {
  // psi = parameters; the ring sends 2 psi (P-1)/P per step for DDP and
  // ZeRO-1/2, 3 psi (P-1)/P for ZeRO-3 less the root's second gather (the
  // root stays gathered through forward and backward); fp32: 4 bytes each; plus the
  // trainer's two 4-byte all-reduces and, at stages 1-3, the 8-byte norm:
  // scalars = 2 (P-1)/P (4 + 4 (+ 8)).
  model::ModelConfig cfg = small(false);
  const auto units = model_units(cfg);
  const int P = 4;
  double psi = 0;
  for (const auto& u : units) psi += 4.0 * u.padded(P);
  const double ring = 3.0 / 4;
  const NetworkProfile net = network_profile("dgx-h100");
  for (int stage = 0; stage <= 3; ++stage) {
    ShardingSpec s;
    s.zero_stage = stage;
    const CommPlan c = comm_plan(units, s, P, 8, net);
    const double scalars = 2 * ring * (8 + (stage >= 1 ? 8 : 0));
    const double root = 4.0 * units.back().padded(P);
    const double want = (stage == 3 ? 3 * psi - root : 2 * psi) * ring + scalars;
    EXPECT_NEAR(static_cast<double>(c.total.wire_bytes), want, 1.0) << "stage " << stage;
  }
  // Accumulation: ZeRO-2 reduce-scatters every micro-batch, ZeRO-1 only the last.
  ShardingSpec s1, s2;
  s1.zero_stage = 1, s2.zero_stage = 2;
  s1.accumulation = s2.accumulation = 4;
  const double scalars = 2 * ring * 16;
  EXPECT_NEAR(static_cast<double>(comm_plan(units, s2, P, 8, net).total.wire_bytes),
              (4 + 1) * psi * ring + scalars, 1.0);
  EXPECT_NEAR(static_cast<double>(comm_plan(units, s1, P, 8, net).total.wire_bytes),
              2 * psi * ring + scalars, 1.0);
  // Across nodes the slowest hop sets the bandwidth.
  ShardingSpec s0;
  EXPECT_DOUBLE_EQ(comm_plan(units, s0, 16, 8, network_profile("nvlink4,eth-100g")).bus_bandwidth,
                   12.5e9 * 0.8);
}

// ---- activations ------------------------------------------------------------------------------

TEST(PlanActivations, ScaleAndCheckpointing) {
  model::ModelConfig cfg = small(false);
  ActivationSpec s;
  s.micro_batch = 2;
  s.seq_len = 16;
  const ActivationBytes a = activation_bytes(cfg, s);
  // fp32, math attention: per layer 16 BTC + 2 BTF... written out in memory.cpp:
  // C-sized: 2 residual + 2 norm + 4 matmul = 8, F-sized: 2, scores: B H T T, stats 16 B T.
  const int64_t B = 2, T = 16, C = 10, F = 40, H = 2;
  EXPECT_EQ(a.per_layer, 4 * (8 * B * T * C + 2 * B * T * F + B * H * T * T) + 16 * B * T);
  EXPECT_EQ(a.attention_scores, 4 * B * H * T * T);
  s.micro_batch = 4;
  EXPECT_EQ(activation_bytes(cfg, s).per_layer, 2 * a.per_layer);
  s.checkpointing = true;
  const ActivationBytes c = activation_bytes(cfg, s);
  // The block input (fp32) and the CPU generator's state to replay (5056 bytes).
  EXPECT_EQ(c.per_layer_ckpt, 4 * 4 * T * C + 5056);
  EXPECT_LT(c.saved, activation_bytes(cfg, ActivationSpec{4, 16}).saved);
  // Fused attention keeps no (T, T) scores.
  s.checkpointing = false;
  s.fused_attention = true;
  EXPECT_EQ(activation_bytes(cfg, s).attention_scores, 0);
}

// A CPU profile is the node: 2 ranks on it each get half its FLOP/s, so the
// same rows per rank take twice as long as with one rank per node; a GPU
// profile is per rank.
TEST(PlanCompute, CpuRanksShareTheNode) {
  PlanInput in;
  in.model.n_layer = 2;
  in.model.d_model = 64;
  in.model.n_head = 2;
  in.model.vocab_size = 100;
  in.seq_len = 32;
  in.micro_batch = 4;
  in.world = 2;
  in.device = cpu_profile(2, 2.0, 16e9, true);  // 2 x 2 GHz x 64 = 256 GFLOP/s
  in.net = network_profile("cpu");
  in.gpus_per_node = 1;  // one rank per node: the whole CPU
  const Plan alone = make_plan(in);
  in.gpus_per_node = 2;  // both ranks on one node
  const Plan shared = make_plan(in);
  EXPECT_DOUBLE_EQ(alone.compute.peak_flops, 256e9);
  EXPECT_DOUBLE_EQ(shared.compute.peak_flops, 128e9);
  EXPECT_DOUBLE_EQ(shared.compute.compute_s, 2 * alone.compute.compute_s);
  EXPECT_DOUBLE_EQ(alone.compute.compute_s,
                   alone.compute.flops_per_step / (256e9 * alone.compute.efficiency));
  in.device = device_profile("h100");
  in.net = network_profile("dgx-h100");
  EXPECT_DOUBLE_EQ(make_plan(in).compute.peak_flops, 67e12);  // fp32: the fp32 peak, per rank
}

// ---- the 7B search ----------------------------------------------------------------------------

// GPT-3 6.7B (Brown et al. 2020, table 2.1): 32 layers, width 4096, 32 heads,
// vocabulary 50257, context 2048; GPT-2's architecture (learned positions,
// tied head, biases). Trained in bf16 with AdamW on 8 x H100 80 GB (one DGX).
PlanInput seven_b() {
  PlanInput in;
  in.model.n_layer = 32;
  in.model.d_model = 4096;
  in.model.n_head = 32;
  in.model.vocab_size = 50257;
  in.model.context_length = 2048;
  in.seq_len = 2048;
  in.precision = "bf16";
  in.micro_batch = 1;
  in.world = 8;
  in.gpus_per_node = 8;
  in.device = device_profile("h100");
  in.device.memory_bytes = parse_bytes("80GB");
  in.net = network_profile("dgx-h100");
  in.fused_attention = true;
  return in;
}

TEST(PlanSearch, SevenBillionOnEightGpusNeedsZero3) {
  // Parameters by hand, C = 4096:
  //   a block: 12 C^2 + 13 C = 201,326,592 + 53,248         = 201,379,840
  //   32 blocks:                                              6,444,154,880
  //   root: wte 50257 C = 205,852,672 + wpe 2048 C = 8,388,608
  //         + ln_f 2 C = 8,192                              =   214,249,472
  //   psi                                                   = 6,658,404,352
  // Both unit sizes divide by 8: no padding.
  const int64_t block = 201379840, root = 214249472, psi = 32 * block + root;
  ASSERT_EQ(psi, 6658404352);
  PlanInput base = seven_b();
  ASSERT_EQ(base.model.num_parameters(), psi);

  // ZeRO-0 (DDP) per GPU: fp32 params 4 psi + fp32 grads 4 psi + AdamW m, v 8 psi
  //   = 16 psi = 106,534,469,632 bytes (99.2 GiB) > 80 GB before any activation.
  PlanInput z0 = base;
  const Plan p0 = make_plan(z0);
  EXPECT_EQ(p0.memory.states.peak.params, 4 * psi);
  EXPECT_EQ(p0.memory.states.peak.grads, 4 * psi);
  EXPECT_EQ(p0.memory.states.peak.optimizer, 8 * psi);
  EXPECT_EQ(p0.memory.states.peak.device(), 106534469632);
  EXPECT_FALSE(p0.fits);
  EXPECT_EQ(p0.bottleneck, "memory");

  // ZeRO-3, micro-batch 1, no checkpointing, per GPU:
  //   params: shards 4 psi / 8 = 3,329,202,176 + root gathered 4 x 214,249,472
  //           = 856,997,888 + two blocks gathered (current + prefetched)
  //           2 x 4 x 201,379,840 = 1,611,038,720                = 5,797,238,784
  //   grads:  every unit's full buffer during the step 4 psi = 26,633,617,408
  //           + the reduced shard 4 psi / 8 = 3,329,202,176       = 29,962,819,584
  //   AdamW:  8 psi / 8                                           = 6,658,404,352
  //   model states                                                = 42,418,462,720
  // Activations (bf16 autocast on CUDA, fused attention; E = B T = 2048 tokens,
  // EC = 2048 x 4096 = 8,388,608; F = 16384):
  //   a block: EC (2 x 4 residual + 2 x 2 norm + 5 x 2 matmul) = 22 EC = 184,549,376
  //            + 16 E (norm statistics) = 32,768 + 4 B H T (logsumexp) = 262,144
  //            + 2 x 2 E F (feed-forward) = 134,217,728          =   319,062,016
  //   32 blocks                                                  = 10,209,984,512
  //   root: EC (4 + 2) = 50,331,648 + 8 E = 16,384 + 4 E V (fp32 log-softmax)
  //         = 411,705,344 + 4 E = 8,192                          =    462,061,568
  //   bf16 weight copies autocast keeps: 2 x (32 x 12 C^2 + V C)
  //         = 2 x (6,442,450,944 + 205,852,672)                  = 13,296,607,232
  //   kept after forward                                         = 23,968,653,312
  //   the end of forward: + logits E V x 2 = 205,852,672 and their fp32 copy
  //         E V x 4 = 411,705,344                                = 24,586,211,328
  //   peak, the head's backward: kept - log-softmax 4 E V = 411,705,344
  //         - loss weights 4 E = 8,192 + logits' gradient 2 E V = 205,852,672
  //         + final norm output's gradient 4 EC = 33,554,432 + wte's gradient
  //         in bf16 2 V C = 411,705,344 and widened 4 V C = 823,410,688
  //                                                              = 25,031,462,912
  PlanInput z3 = base;
  z3.sharding.zero_stage = 3;
  const Plan p3 = make_plan(z3);
  EXPECT_EQ(p3.memory.states.peak.params, 5797238784);
  EXPECT_EQ(p3.memory.states.peak.grads, 29962819584);
  EXPECT_EQ(p3.memory.states.peak.optimizer, 6658404352);
  EXPECT_EQ(p3.memory.activations.per_layer, 319062016);
  EXPECT_EQ(p3.memory.activations.root, 462061568);
  EXPECT_EQ(p3.memory.activations.weight_copies, 13296607232);
  EXPECT_EQ(p3.memory.activations.saved, 23968653312);
  EXPECT_EQ(p3.memory.activations.peak, 25031462912);
  EXPECT_EQ(p3.memory.activations.peak_at, "head backward");
  // Device: 42,418,462,720 + 25,031,462,912 + NCCL buffers 268,435,456
  //         = 67,718,361,088; + 10% fragmentation + 0.6 GiB CUDA context
  //         = 67,718,361,088 x 1.1 + 644,245,094 = 75.13e9 < 80e9: fits.
  EXPECT_NEAR(p3.memory.device_total, 67718361088 * 1.1 + 0.6 * 1073741824, 1e3);
  EXPECT_TRUE(p3.fits) << p3.verdict;

  // The search over a global batch of 32 rows (4 per GPU): every ZeRO-0
  // configuration without offload is rejected for memory, ZeRO-3 fits and is
  // the fastest (no host Adam, its gathers hide behind compute).
  SearchOptions so;
  so.global_batch = 32;
  const SearchResult r = search(base, so);
  ASSERT_FALSE(r.fitting.empty());
  EXPECT_EQ(r.fitting.front().input.sharding.zero_stage, 3);
  EXPECT_FALSE(r.fitting.front().input.sharding.cpu_offload);
  int zero0_rejected = 0;
  for (const Plan& p : r.rejected)
    if (p.input.sharding.zero_stage == 0 && !p.input.sharding.cpu_offload) {
      ++zero0_rejected;
      EXPECT_NE(p.verdict.find("does not fit"), std::string::npos);
      EXPECT_GE(p.memory.states.peak.device(), 106534469632);
    }
  EXPECT_EQ(zero0_rejected, 2 * 3);  // checkpointing on/off x micro-batch 1, 2, 4
  for (const Plan& p : r.fitting)
    EXPECT_FALSE(p.input.sharding.zero_stage == 0 && !p.input.sharding.cpu_offload);
  const std::string table = format_search(r);
  EXPECT_NE(table.find("ZeRO-0, 1 x 4"), std::string::npos) << table;  // listed as rejected
  EXPECT_NE(table.find("does not fit"), std::string::npos);
  const nlohmann::json j = to_json(r);
  EXPECT_EQ(j["best"]["zero_stage"], 3);
}

// GPT-2 124M on 1,024 H100s, one row per GPU: the step is bound by the
// gradients' collectives, so checkpointing (which only hides more of them
// behind its recomputation) takes exactly as long; the search must then
// prefer the configuration without recomputation.
TEST(PlanSearch, TiesPreferNoRecomputation) {
  PlanInput base;  // ModelConfig's defaults: GPT-2 small
  base.seq_len = 1024;
  base.precision = "bf16";
  base.world = 1024;
  base.gpus_per_node = 8;
  base.device = device_profile("h100");
  base.net = network_profile("dgx-h100");
  SearchOptions so;
  so.global_batch = 1024;
  const SearchResult r = search(base, so);
  ASSERT_GE(r.fitting.size(), 2u);
  const Plan& best = r.fitting.front();
  EXPECT_FALSE(best.input.activation_checkpointing) << describe(best.input);
  EXPECT_FALSE(best.input.sharding.cpu_offload) << describe(best.input);
  EXPECT_EQ(best.bottleneck, "communication");
  bool tie_with_ckpt = false;
  for (const Plan& p : r.fitting) {
    EXPECT_GE(p.step_s, best.step_s * (1 - 1e-6)) << describe(p.input);
    if (p.input.activation_checkpointing && std::fabs(p.step_s - best.step_s) <= 1e-6 * best.step_s)
      tie_with_ckpt = true;
  }
  EXPECT_TRUE(tie_with_ckpt);  // the case this test is about exists

  // One GPU: no communication, every split of the batch takes as long; the
  // largest micro-batch that fits comes first.
  base.world = 1;
  base.gpus_per_node = 1;
  so.global_batch = 64;
  const SearchResult one = search(base, so);
  ASSERT_FALSE(one.fitting.empty());
  int64_t largest = 0;
  for (const Plan& p : one.fitting)
    if (!p.input.activation_checkpointing && !p.input.sharding.cpu_offload &&
        p.input.sharding.zero_stage == 0)
      largest = std::max(largest, p.input.micro_batch);
  EXPECT_EQ(one.fitting.front().input.micro_batch, largest) << describe(one.fitting.front().input);
  EXPECT_GT(largest, 1);
}

}  // namespace
}  // namespace shardlm::plan
