// Model-state and activation bytes per rank (see memory.h).
#include "plan/memory.h"

#include <algorithm>

namespace shardlm::plan {

// ---- model states -------------------------------------------------------------------------

// parallel/adam8bit.cpp, Adam8bit::init_state: neighbouring segments of one
// kind (8-bit or fp32, decay or not) merge into runs; 8-bit runs hold one byte
// per moment and element plus two fp32 absmax per block of the run; fp32 runs
// (parameters under min_8bit_numel, padding, embeddings when asked) two fp32 moments.
int64_t optimizer_state_bytes(const ShardingSpec& spec, const std::vector<Segment>& segs) {
  int64_t n = 0;
  for (const auto& s : segs) n += s.end - s.begin;
  if (spec.optimizer != "adam8bit") return 8 * n;  // AdamW, CpuAdam: m and v in fp32
  struct Run {
    int64_t len;
    bool quantized, decay;
  };
  std::vector<Run> runs;
  for (const auto& s : segs) {
    if (s.end == s.begin) continue;
    const int64_t whole = s.param_numel > 0 ? s.param_numel : s.end - s.begin;
    const bool q =
        !(s.padding || whole < spec.min_8bit_numel || (spec.embedding_fp32_state && s.embedding));
    if (!runs.empty() && runs.back().quantized == q && runs.back().decay == s.decay)
      runs.back().len += s.end - s.begin;
    else
      runs.push_back(Run{s.end - s.begin, q, s.decay});
  }
  int64_t bytes = 0;
  for (const Run& r : runs)
    bytes +=
        r.quantized ? 2 * r.len + 8 * ((r.len + spec.block_size - 1) / spec.block_size) : 8 * r.len;
  return bytes;
}

ModelStates model_states(const std::vector<UnitInfo>& units, const ShardingSpec& spec, int world,
                         int rank) {
  const int stage = spec.zero_stage;
  const bool streamed = spec.offload_params;
  int64_t full = 0, shard = 0, opt = 0, host = 0;
  int64_t root_full = 0, root_shard = 0;
  std::vector<int64_t> block_full, block_shard;  // fp32 bytes of each block unit
  for (const auto& u : units) {
    const int64_t n = u.padded(world), s = n / world;
    full += 4 * n;
    shard += 4 * s;
    if (u.root) {
      root_full = 4 * n, root_shard = 4 * s;
    } else {
      block_full.push_back(4 * n);
      block_shard.push_back(4 * s);
    }
    const int64_t begin = stage == 0 ? 0 : rank * s, end = stage == 0 ? n : (rank + 1) * s;
    const int64_t state = optimizer_state_bytes(spec, segments(u, world, begin, end));
    if (spec.cpu_offload)
      host += 4 * (end - begin) * 2 + state;  // master + gradient copy + states
    else
      opt += state;
  }
  std::sort(block_full.rbegin(), block_full.rend());
  std::sort(block_shard.rbegin(), block_shard.rend());
  const int64_t F = block_full.empty() ? 0 : block_full[0];
  const int64_t S = block_shard.empty() ? 0 : block_shard[0];
  const size_t gathered = spec.prefetch ? 2 : 1;  // blocks gathered at once (stage 3)
  int64_t blocks_gathered = 0;
  for (size_t i = 0; i < std::min(gathered, block_full.size()); ++i)
    blocks_gathered += block_full[i];

  ModelStates m;
  m.rest.optimizer = m.peak.optimizer = opt;
  m.rest.host = m.peak.host = host;
  if (streamed) {
    // Shards live in the host master; the device holds the root and the blocks
    // in use (plus, on a GPU, the staging copy of the shard being gathered).
    m.rest.params = 0;
    m.peak.params = std::max(root_full + blocks_gathered + (spec.gpu ? S : 0),
                             root_full + (spec.gpu ? root_shard : 0));
    // The root's gradient from the start; a block's from its backward until its
    // reduce-scatter landed on the host, which happens when the next one is ready.
    m.rest.grads = 0;
    if (block_full.size() >= 2)
      m.peak.grads = root_full + std::max(2 * (F + S), F + S + root_shard);
    else
      m.peak.grads = root_full + F + S + root_shard;
  } else if (stage == 3) {
    m.rest.params = shard;
    m.peak.params = shard + root_full + blocks_gathered;
  } else {
    m.rest.params = m.peak.params = full;
  }
  if (!streamed) {
    if (stage == 0) {
      m.rest.grads = m.peak.grads = full;
    } else if (stage == 1) {
      m.rest.grads = m.peak.grads = full + shard;
    } else {
      // Shard gradients stay; an accumulation buffer joins them from the second
      // micro-batch on; the full buffers exist only during a step.
      m.rest.grads = shard + (spec.accumulation > 1 ? shard : 0);
      m.peak.grads = full + m.rest.grads;
    }
  }
  return m;
}

ModelStates model_states_max(const std::vector<UnitInfo>& units, const ShardingSpec& spec,
                             int world) {
  ModelStates best = model_states(units, spec, world, 0);
  if (spec.optimizer != "adam8bit" || spec.zero_stage == 0) return best;
  for (int r = 1; r < world; ++r) {
    ModelStates m = model_states(units, spec, world, r);
    if (m.peak.total() > best.peak.total()) best = m;
  }
  return best;
}

// ---- activations ------------------------------------------------------------------------------

ActivationDtypes activation_dtypes(const std::string& precision, bool gpu) {
  ActivationDtypes d;
  const bool half = precision == "bf16" || (precision == "fp16" && gpu);
  if (!half) {
    d.name = "fp32";
    d.mask = gpu ? 1 : 4;  // native_dropout keeps a bool mask; the CPU path a float one
    return d;
  }
  if (gpu) {
    // CUDA autocast: embeddings and residual adds stay fp32, layer_norm and
    // softmax run in fp32 (their outputs are fp32, the next matmul keeps a
    // 16-bit copy), matmuls produce 16 bits, weights are cast once and cached.
    d.name = "cuda-autocast";
    d.residual = 4;
    d.norm_out = 2;
    d.matmul_out = 2;
    d.probs = 4 + 2;           // softmax output (fp32) + the copy bmm keeps
    d.probs_grad = 2 + 4 + 4;  // bmm's 16-bit gradient, widened, softmax's fp32 one
    d.mlp = 2;
    d.logits = 2;
    d.weight_copy = 2;
    d.mask = 1;
    return d;
  }
  // CPU autocast (bf16): matmuls in bf16 with cached weight copies; layer_norm,
  // softmax and GELU follow their input's dtype.
  d.name = "cpu-autocast";
  d.residual = 4;
  d.norm_out = 2;
  d.matmul_out = 2;
  d.probs = 2;
  d.probs_grad = 2 + 2;
  d.mlp = 2;
  d.logits = 2;
  d.weight_copy = 2;
  d.mask = 2;
  return d;
}

ActivationBytes activation_bytes(const model::ModelConfig& cfg, const ActivationSpec& spec) {
  const ActivationDtypes d = activation_dtypes(spec.precision, spec.gpu);
  const int64_t B = spec.micro_batch, T = spec.seq_len, C = cfg.d_model, F = cfg.ffn_dim(),
                H = cfg.n_head, V = cfg.vocab_size, L = cfg.n_layer;
  const int64_t E = B * T;  // tokens of the micro-batch
  const int64_t EC = E * C, scores = B * H * T * T;

  // One block's saved tensors (model/gpt.cpp; pre- and post-norm keep the same count):
  //   block input and the residual after attention     2 x residual       (B, T, C)
  //   the two layer-norm outputs a matmul keeps         2 x norm_out
  //   mean and rstd of both layer norms (fp32)          4 x 4 bytes        (B, T)
  //   math attention: q, k, v made contiguous for bmm   3 x matmul_out     (B*H, T, D)
  //                   softmax probabilities             probs              (B, H, T, T)
  //   fused (SDPA):   q, k, v (views of the qkv output) 3 x matmul_out
  //                   its output + logsumexp            matmul_out + 4 B H T
  //   heads merged for the output projection            matmul_out         (B*T, C)
  //   feed-forward hidden before and after activation   2 x mlp            (B, T, F)
  //                   (relu acts in place: one)
  int64_t layer = EC * (2 * d.residual + 2 * d.norm_out + 4 * d.matmul_out) + 16 * E;
  int64_t attention_scores = 0;
  if (spec.fused_attention) {
    layer += EC * d.matmul_out + 4 * B * H * T;
  } else {
    attention_scores = scores * d.probs;
    layer += attention_scores;
  }
  // RoPE keeps nothing large: its multiplications by the (constant) cos and
  // sin tables save only the tables.
  layer += E * F * d.mlp * (cfg.activation == "relu" ? 1 : 2);
  // Dropout (training): a mask per dropped tensor; LibTorch's CPU dropout also
  // keeps the dropped tensor for its multiply.
  if (cfg.attn_dropout > 0) layer += scores * (d.mask + d.probs);
  if (cfg.resid_dropout > 0) layer += 2 * EC * (d.mask + (spec.gpu ? 0 : d.matmul_out));
  // Checkpointing keeps the block input and the RNG states to replay (the CPU
  // generator's state is a 5056-byte tensor; CUDA's is 16 bytes).
  const int64_t layer_ckpt = EC * d.residual + 5056 + (spec.gpu ? 16 : 0);

  // Root: the final norm's input, statistics and output, the loss's fp32
  // log-softmax (B*T, V) and its weights (B*T). (Block 0's input, the
  // embeddings' output, is counted with block 0.)
  int64_t root = EC * (d.residual + d.norm_out) + 8 * E + 4 * E * V + 4 * E;
  if (cfg.embd_dropout > 0) root += EC * (d.mask + (spec.gpu ? 0 : d.residual));
  int64_t block_weights = 0;
  for (const auto& u : model_units(cfg))
    for (const auto& p : u.params)
      if (p.matrix && !p.embedding && !u.root) block_weights += p.numel;
  // Autocast casts each matmul weight once per forward and caches the copy
  // until the forward's autocast scope ends; a block's copies stay after it when
  // its matmuls keep them for backward (not with checkpointing, whose
  // recomputation casts them again). The head reads wte (tied) or lm_head.
  const int64_t block_copies = d.weight_copy * block_weights;
  const int64_t head_copy = d.weight_copy * V * C;

  ActivationBytes a;
  a.per_layer = layer;
  a.per_layer_ckpt = layer_ckpt;
  a.attention_scores = attention_scores;
  a.root = root;
  a.weight_copies = block_copies + head_copy;
  const int64_t blocks = L * (spec.checkpointing ? layer_ckpt : layer);
  a.saved = blocks + root + head_copy + (spec.checkpointing ? 0 : block_copies);

  // Transient peaks, each on top of what is kept at that moment.
  struct Moment {
    const char* what;
    int64_t bytes;
  };
  const int64_t EV = E * V;
  // End of forward: the logits live while the loss reads them (a 16-bit logit
  // tensor is first widened to fp32 by log_softmax).
  const int64_t cached = spec.weight_cache ? block_copies : 0;
  const int64_t fwd_end =
      a.saved + (spec.checkpointing ? cached : 0) + EV * d.logits + (d.logits != 4 ? 4 * EV : 0);
  // The loss's backward writes the (B*T, V) fp32 gradient next to the saved log-softmax.
  const int64_t loss_bwd = a.saved + 4 * EV + (d.logits != 4 ? EV * d.logits : 0);
  // The head's backward: gradient of the logits, of the final norm's output and
  // a (V, C) weight gradient before it is added into the gradient buffer (under
  // autocast a 16-bit one and its fp32 widening).
  const int64_t head_bwd =
      a.saved - 4 * EV - 4 * E + EV * d.logits + EC * 4 + (4 + d.weight_copy) * V * C;
  // A block's backward, the top one (the most is kept then): what the blocks
  // keep (with checkpointing: their inputs plus the top block's recomputed
  // tensors), the weight copies, the gradient arriving from above, and — tied
  // embeddings — the head's (V, C) contribution to wte's gradient, which
  // autograd holds until the embedding's own arrives at the very end. The
  // feed-forward goes first: the (B, T, F) input gradient of its output
  // projection and that projection's weight gradient; then the attention,
  // when the feed-forward's tensors are gone: the (T, T) gradients of the
  // probabilities and of the scores (fused: q, k, v and output gradients).
  const int64_t pending = cfg.tied_embeddings ? 4 * V * C : 0;
  const int64_t mlp_bytes = E * F * d.mlp * (cfg.activation == "relu" ? 1 : 2);
  int64_t layer_bwd = 0;
  if (L > 0) {
    // Weight copies: every block's without checkpointing (autograd keeps
    // them); with it, the cached ones, or the recomputed block's own.
    const int64_t copies =
        !spec.checkpointing ? block_copies : (spec.weight_cache ? block_copies : block_copies / L);
    const int64_t base =
        blocks + (spec.checkpointing ? layer - EC * d.residual : 0) + copies + pending + EC * 4;
    const int64_t mlp_phase = base + E * F * d.mlp + 4 * F * C;
    const int64_t attn_tmp = spec.fused_attention ? 4 * EC * d.matmul_out : scores * d.probs_grad;
    const int64_t attn_phase =
        base - mlp_bytes - EC * (d.norm_out + d.residual) + EC * 4 + attn_tmp;
    layer_bwd = std::max(mlp_phase, attn_phase);
  }
  // The embedding's backward: a dense (V, C) fp32 gradient.
  const int64_t embed_bwd =
      EC * 4 + 4 * V * C + pending + (cfg.positional == "learned" ? 4 * T * C : 0);
  const Moment moments[] = {{"end of forward (logits and loss)", fwd_end},
                            {"loss backward", loss_bwd},
                            {"head backward", head_bwd},
                            {"block backward", layer_bwd},
                            {"embedding backward", embed_bwd}};
  for (const Moment& m : moments)
    if (m.bytes > a.peak) a.peak = m.bytes, a.peak_at = m.what;
  return a;
}

}  // namespace shardlm::plan
