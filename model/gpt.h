// The GPT decoder: token (+ position) embeddings, n_layer Transformer blocks
// (causal multi-head self-attention and a position-wise feed-forward network,
// each inside a residual connection with LayerNorm), a final LayerNorm and the
// output projection to vocabulary logits.
//
// Single-device code: it knows nothing of ranks. parallel/ wraps it from outside
// (ForwardOptions::block_runner) for ZeRO-3 gathers and activation checkpointing.
// docs/model.md has the mathematics; model/README.md the map of this folder.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "model/config.h"

namespace shardlm::model {

// ---- options of one forward pass -------------------------------------------------

// Which implementation computes softmax(q k^T / sqrt(d) + mask) v.
//   kAuto:  the fused kernel when LibTorch provides it (>= 2.0) and nothing needs
//           the probabilities (capture), else the written-out math.
//   kMath:  always the written-out math (the reference; docs/model.md).
//   kFused: torch::scaled_dot_product_attention; throws NotCompiled on LibTorch < 2.
enum class AttentionPath { kAuto, kMath, kFused };
// Whether this build's LibTorch has scaled_dot_product_attention.
bool fused_attention_available();

// Keys and values of every layer for incremental decoding. Rows may hold
// different amounts of real tokens (left padding, or prompts of different
// lengths): `key_mask` says which slots are real and `next_pos` gives each row's
// next position id, so a padded row decodes exactly like the same row alone.
// The cache is for inference (under torch::NoGradGuard).
struct KVCache {
  std::vector<torch::Tensor> k, v;  // per layer (B, H, capacity, head_dim)
  torch::Tensor key_mask;           // (B, capacity) bool: a real token sits in the slot
  torch::Tensor next_pos;           // (B) int64: position id of each row's next real token
  int64_t length = 0;               // slots filled, the same for every row
  int64_t capacity = 0;             // slots allocated; grows (doubling) when exceeded

  // `capacity` 0 means: context_length slots on first use.
  explicit KVCache(int64_t capacity = 0) : capacity(capacity) {}
  int64_t batch() const { return next_pos.defined() ? next_pos.size(0) : 0; }
  bool empty() const { return length == 0; }
  void reset();
  // Keeps rows `index` (int64, (B')) in that order: beam search reorders beams.
  void reorder(const torch::Tensor& index);
};

// Attention whose keys and values live outside the model: a serving engine's
// paged KV cache (serve/paged_kv.h) keeps them in blocks shared between
// requests and decides which keys each query sees. Every layer hands it this
// call's queries, keys and values, (B, H, T, D) with RoPE applied; it stores
// the keys and values and returns softmax(q K^T / sqrt(D) + mask) V over the
// keys it holds, (B, H, T, D). The model stays single-device and knows nothing
// of blocks or requests.
class AttentionBackend {
 public:
  virtual ~AttentionBackend() = default;
  virtual torch::Tensor attend(int64_t layer, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v) = 0;
};

using BlockFn = std::function<torch::Tensor(const torch::Tensor&)>;
// How each block is run: runner(layer, run_block, x) must return run_block(x) or
// an equivalent (recomputation for checkpointing, parameter gathers around it).
using BlockRunner =
    std::function<torch::Tensor(int64_t layer, const BlockFn& run_block, const torch::Tensor& x)>;

struct ForwardOptions {
  torch::Tensor attention_mask;    // optional (B, T): 1 = real token, 0 = padding
  bool capture_attention = false;  // keep per-layer (B, H, T, T_keys) probabilities (a
                                   // runner that recomputes a block records it twice)
  KVCache* cache = nullptr;        // incremental decoding: append keys/values, attend to all
  BlockRunner block_runner;        // default: block(x)
  AttentionPath attention = AttentionPath::kAuto;
  // Position ids (B, T) int64 of the tokens, for packed batches whose tokens
  // belong to different sequences (the attention backend's case); without it
  // positions are 0..T-1 (or follow the mask and the cache). Not with `cache`.
  torch::Tensor positions;
  // Keys, values and masking handled outside the model (see AttentionBackend);
  // excludes cache, attention_mask and capture_attention.
  AttentionBackend* attention_backend = nullptr;
};

// What every block needs from one forward call: computed once by GPTImpl.
struct AttentionContext {
  // Additive mask (0 = may attend, -inf = may not) in the activations' dtype:
  // (Tq, Tk) for the plain causal case, (B, 1, Tq, Tk) with padding or a cache.
  torch::Tensor bias;
  bool plain_causal = true;  // no padding, no cache: a fused kernel may use is_causal
  torch::Tensor rope_cos;    // (1|B, T, 1, head_dim) for RoPE, else undefined
  torch::Tensor rope_sin;    // same shape; the first half of the last dim is negated
  KVCache* cache = nullptr;
  int64_t cache_offset = 0;  // slots already in the cache before this call
  AttentionPath path = AttentionPath::kAuto;
  bool training = false;
  std::vector<torch::Tensor>* captured = nullptr;  // non-null: append (B, H, Tq, Tk) probs
  AttentionBackend* backend = nullptr;             // non-null: it attends (bias unused)
};

// softmax(q k^T / sqrt(D) + bias) v with dropout on the probabilities.
// q (B, H, Tq, D), k and v (B, H, Tk, D), bias (Tq, Tk) or (B, 1, Tq, Tk) additive
// (0 / -inf); plain_causal: bias is the plain causal mask (a fused kernel may use
// is_causal instead). probs_out, when given, receives (B, H, Tq, Tk) probabilities
// (math path only). Returns (B, H, Tq, D).
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& bias, bool plain_causal, double dropout_p,
                        AttentionPath path, torch::Tensor* probs_out = nullptr);

// ---- layers ---------------------------------------------------------------------------

// LayerNorm over the last dim with an optional bias (torch::nn::LayerNorm cannot
// drop the bias alone).
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, bool bias, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;  // (C), (C) or undefined
  double eps;
};
TORCH_MODULE(LayerNorm);

// Causal multi-head self-attention. Weights as torch::nn::Linear: (out, in).
class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const ModelConfig& cfg);
  // x (B, T, C) -> (B, T, C); `layer` indexes the cache and the capture list.
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& ctx, int64_t layer);

  torch::nn::Linear c_attn{nullptr};                                    // fused: C -> 3C
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr};  // separate: C -> C
  torch::nn::Linear c_proj{nullptr};                                    // C -> C (residual)

 private:
  int64_t n_head_, head_dim_;
  double attn_dropout_, resid_dropout_;
  bool fused_;
};
TORCH_MODULE(CausalSelfAttention);

// Position-wise feed-forward: c_proj(act(c_fc(x))).
class MLPImpl : public torch::nn::Module {
 public:
  explicit MLPImpl(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);  // (N, C) -> (N, C)
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};
  // Inspection hook (the dashboard's activations view): when set, called with
  // the (N, F) hidden activations after the nonlinearity, before c_proj.
  std::function<void(const torch::Tensor&)> observe;

 private:
  std::string activation_;
  double resid_dropout_;
};
TORCH_MODULE(MLP);

// One Transformer block. pre-LN:  x + attn(ln_1(x)), then h + mlp(ln_2(h))
//                        post-LN: ln_1(x + attn(x)), then ln_2(h + mlp(h))
class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& ctx, int64_t layer);
  LayerNorm ln_1{nullptr}, ln_2{nullptr};
  CausalSelfAttention attn{nullptr};
  MLP mlp{nullptr};

 private:
  bool pre_norm_;
};
TORCH_MODULE(Block);

// ---- the model --------------------------------------------------------------------------

class GPTImpl : public torch::nn::Module {
 public:
  // Builds and initialises (GPT-2 scheme, model/init.cpp) from the validated config.
  explicit GPTImpl(const ModelConfig& cfg);

  // ids (B, T) int64 -> logits (B, T, V). Throws ModelError for ids out of range,
  // learned positions beyond context_length, or a mask of the wrong shape.
  torch::Tensor forward(const torch::Tensor& ids, const ForwardOptions& opts = {});
  // The final hidden states (B, T, C) before the output projection.
  torch::Tensor hidden(const torch::Tensor& ids, const ForwardOptions& opts = {});
  // hidden (..., C) -> logits (..., V).
  torch::Tensor project(const torch::Tensor& hidden) const;

  // Per-layer (B, H, Tq, Tk) probabilities of the last capture_attention forward.
  std::vector<torch::Tensor> captured_attention() const { return captured_; }

  // Output projection weight (V, C): wte->weight itself when tied.
  torch::Tensor lm_head_weight() const { return cfg_.tied_embeddings ? wte->weight : lm_head; }
  // Re-applies the GPT-2 initialisation (init.cpp); uses the global torch RNG.
  void reset_parameters();
  // Changes RoPE scaling at inference (a model trained at T run at factor * T).
  void set_rope_scaling(const std::string& kind, double factor);
  const ModelConfig& config() const { return cfg_; }

  // Runs each block when ForwardOptions::block_runner is empty (empty: block(x)).
  // compress installs one that dequantises a block's int8/int4 weights just
  // before the block runs and releases them after (QuantizedRuntime::kOnTheFly).
  BlockRunner default_block_runner;

  torch::nn::Embedding wte{nullptr};  // (V, C)
  torch::nn::Embedding wpe{nullptr};  // (context_length, C), learned positions only
  torch::nn::ModuleList blocks;       // n_layer Blocks; parallel/ shards per block
  LayerNorm ln_f{nullptr};
  torch::Tensor lm_head;  // (V, C) when untied; undefined when tied

 private:
  // Positions (1|B, T) as int64, or undefined for the plain 0..T-1.
  torch::Tensor embed(const torch::Tensor& ids, const torch::Tensor& positions, int64_t offset);
  torch::Tensor causal_bias(int64_t T, torch::ScalarType dtype, torch::Device device);
  torch::Tensor sinusoid_table(int64_t n, torch::Device device);
  void rope_tables(int64_t n, torch::Device device, torch::Tensor* cos, torch::Tensor* sin);

  ModelConfig cfg_;
  std::vector<torch::Tensor> captured_;
  // Tables built on first use and grown on demand (not parameters, not saved).
  std::mutex tables_mu_;
  torch::Tensor causal_bias_, sinusoid_, rope_cos_, rope_sin_;
};
TORCH_MODULE(GPT);

// ---- evaluation helpers ----------------------------------------------------------------

// log softmax over the vocabulary, computed in fp32: (B, T, V) -> (B, T, V).
torch::Tensor log_probs(const torch::Tensor& logits);
// Mean cross entropy over positions where loss_mask != 0 (all positions when
// loss_mask is undefined). logits (B, T, V), targets (B, T) int64, loss_mask (B, T).
// A batch with no unmasked position gives 0 (with a zero gradient), not NaN.
torch::Tensor loss(const torch::Tensor& logits, const torch::Tensor& targets,
                   const torch::Tensor& loss_mask = {});

// Autocast for one scope, as Python's torch.autocast: matmuls run in `dtype`
// (bf16 on CPU, bf16/fp16 on CUDA) while weights stay fp32; the previous state is
// restored and the cast cache cleared on exit. Works on LibTorch 1.13 and 2.x.
// With enabled = false it does nothing (so callers can write one code path).
class AutocastGuard {
 public:
  AutocastGuard(torch::DeviceType device, torch::ScalarType dtype, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  torch::DeviceType device_;
  bool active_ = true;  // enabled = false: the guard changes nothing
  bool prev_enabled_ = false;
  torch::ScalarType prev_dtype_;
};

// GPT-2 initialisation (init.cpp): normal(0, init_std) weights, zero biases, unit
// LayerNorm gains, residual projections (attn.c_proj, mlp.c_proj) scaled by
// 1/sqrt(2 n_layer). Uses the global torch RNG: seed with torch::manual_seed.
void init_gpt2(GPTImpl& model);

}  // namespace shardlm::model
