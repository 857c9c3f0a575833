// The GPT decoder: attention, feed-forward, blocks, positions and the model.
//
// Speed notes (the CPU train step is benchmarked against PyTorch, bench/model):
// the residual stream is (B, T, C) but every linear layer runs as one 2-D addmm
// on a (B*T, C) view; Q, K and V come from one fused matmul and are split by
// views; the 1/sqrt(d) scale and the (cached, additive) causal mask are applied
// in one pass over the scores; the loss is one fused autograd function.
#include "model/gpt.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cmath>
#include <limits>

#include "core/error.h"

namespace shardlm::model {

using torch::Tensor;
namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

std::string str(c10::IntArrayRef sizes) {
  return c10::str(sizes);
}

Tensor maybe_dropout(const Tensor& x, double p, bool training) {
  return (p > 0 && training) ? torch::dropout(x, p, true) : x;
}

torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

// RoPE on the last dim, rotate-half convention: x = [x1, x2] ->
// [x1 cos - x2 sin, x2 cos + x1 sin]; `sin` has its first half negated.
Tensor apply_rope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  Tensor rotated = torch::cat({x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}
}  // namespace

// ---- attention core ----------------------------------------------------------------

bool fused_attention_available() {
#if TORCH_VERSION_MAJOR >= 2
  return true;
#else
  return false;
#endif
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                 bool plain_causal, double dropout_p, AttentionPath path, Tensor* probs_out) {
  // q (B, H, Tq, D), k and v (B, H, Tk, D); bias (Tq, Tk) or (B, 1, Tq, Tk).
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3), Tk = k.size(2);
  SHARDLM_CHECK(path != AttentionPath::kFused || probs_out == nullptr, core::ModelError,
                "attention capture needs the math path (AttentionPath::kMath or kAuto)");
  const bool fused = path == AttentionPath::kFused ||
                     (path == AttentionPath::kAuto && fused_attention_available() && !probs_out);
#if TORCH_VERSION_MAJOR >= 2
  if (fused) {
    if (plain_causal && Tq == Tk)
      return at::scaled_dot_product_attention(q, k, v, {}, dropout_p, /*is_causal=*/true);
    Tensor mask = bias.scalar_type() == q.scalar_type() ? bias : bias.to(q.scalar_type());
    return at::scaled_dot_product_attention(q, k, v, mask, dropout_p, /*is_causal=*/false);
  }
#else
  SHARDLM_CHECK(
      !fused, core::NotCompiled,
      "fused attention needs LibTorch >= 2.0 (this build has {}); use AttentionPath::kMath",
      TORCH_VERSION);
#endif
  // The written-out math, one head per batch entry of a batched matmul:
  //   scores = q k^T / sqrt(D) + bias      (B*H, Tq, Tk)   bias: 0 or -inf
  //   probs  = softmax(scores) over keys   rows sum to 1; -inf keys get exactly 0
  //   out    = dropout(probs) v            (B*H, Tq, D)
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  Tensor q3 = q.reshape({B * H, Tq, D});
  Tensor k3 = k.reshape({B * H, Tk, D});
  Tensor v3 = v.reshape({B * H, Tk, D});
  // One pass for scale and mask: scores = bias + scale * (q k^T), the bias broadcast
  // over heads ((Tq, Tk) or (B, 1, Tq, Tk)). (baddbmm would fuse it into the matmul,
  // but LibTorch's CPU baddbmm runs one BLAS call per batch entry: slower.)
  Tensor qk = at::bmm(q3, k3.transpose(1, 2)).view({B, H, Tq, Tk});
  Tensor b = bias.scalar_type() == qk.scalar_type() ? bias : bias.to(qk.scalar_type());
  Tensor scores = at::add(b, qk, /*alpha=*/scale).view({B * H, Tq, Tk});
  Tensor probs = at::softmax(scores, -1);
  if (probs_out) *probs_out = probs.detach().view({B, H, Tq, Tk});
  if (dropout_p > 0) probs = torch::dropout(probs, dropout_p, true);
  return at::bmm(probs, v3).view({B, H, Tq, D});
}

// ---- layers -----------------------------------------------------------------------------

LayerNormImpl::LayerNormImpl(int64_t dim, bool with_bias, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({dim}));
}

Tensor LayerNormImpl::forward(const Tensor& x) {
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const ModelConfig& cfg)
    : n_head_(cfg.n_head),
      head_dim_(cfg.head_dim()),
      attn_dropout_(cfg.attn_dropout),
      resid_dropout_(cfg.resid_dropout),
      fused_(cfg.fused_qkv) {
  const int64_t C = cfg.d_model;
  if (fused_) {
    c_attn = register_module("c_attn", make_linear(C, 3 * C, cfg.bias));
  } else {
    q_proj = register_module("q_proj", make_linear(C, C, cfg.bias));
    k_proj = register_module("k_proj", make_linear(C, C, cfg.bias));
    v_proj = register_module("v_proj", make_linear(C, C, cfg.bias));
  }
  c_proj = register_module("c_proj", make_linear(C, C, cfg.bias));
}

Tensor CausalSelfAttentionImpl::forward(const Tensor& x, const AttentionContext& ctx,
                                        int64_t layer) {
  // x (B, T, C) -> (B, T, C)
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), H = n_head_, D = head_dim_;
  const Tensor x2 = x.reshape({B * T, C});
  Tensor q, k, v;  // (B, H, T, D), views where possible
  const bool rope = ctx.rope_cos.defined();
  if (fused_) {
    Tensor qkv = c_attn(x2).view({B, T, 3, H, D});  // one matmul for all three
    Tensor qk = qkv.narrow(2, 0, 2);                // (B, T, 2, H, D)
    if (rope) {
      Tensor cos = ctx.rope_cos.to(qk.scalar_type()).unsqueeze(2);  // (1|B, T, 1, 1, D)
      Tensor sin = ctx.rope_sin.to(qk.scalar_type()).unsqueeze(2);
      qk = apply_rope(qk, cos, sin);
    }
    q = qk.select(2, 0).transpose(1, 2);
    k = qk.select(2, 1).transpose(1, 2);
    v = qkv.select(2, 2).transpose(1, 2);
  } else {
    q = q_proj(x2).view({B, T, H, D});
    k = k_proj(x2).view({B, T, H, D});
    v = v_proj(x2).view({B, T, H, D}).transpose(1, 2);
    if (rope) {
      Tensor cos = ctx.rope_cos.to(q.scalar_type()), sin = ctx.rope_sin.to(q.scalar_type());
      q = apply_rope(q, cos, sin);
      k = apply_rope(k, cos, sin);
    }
    q = q.transpose(1, 2);
    k = k.transpose(1, 2);
  }

  if (ctx.backend) {  // keys, values and masking live outside the model
    Tensor y = ctx.backend->attend(layer, q, k, v);  // (B, H, T, D)
    y = c_proj(y.transpose(1, 2).reshape({B * T, C}));
    return maybe_dropout(y, resid_dropout_, ctx.training).view({B, T, C});
  }
  if (ctx.cache) {
    // Append this call's keys and values at slots [offset, offset + T) and attend
    // to every slot filled so far (masking is in ctx.bias).
    KVCache& cache = *ctx.cache;
    const int64_t off = ctx.cache_offset;
    auto grow = [&](Tensor& buf, const Tensor& fresh) {
      if (!buf.defined() || buf.size(2) < cache.capacity ||
          buf.scalar_type() != fresh.scalar_type()) {
        Tensor bigger = torch::zeros({B, H, cache.capacity, D}, fresh.options());
        if (buf.defined() && off > 0) bigger.narrow(2, 0, off).copy_(buf.narrow(2, 0, off));
        buf = bigger;
      }
      buf.narrow(2, off, T).copy_(fresh);
      return buf.narrow(2, 0, off + T);
    };
    k = grow(cache.k[layer], k);
    v = grow(cache.v[layer], v);
  }

  Tensor probs;
  const double p = ctx.training ? attn_dropout_ : 0.0;
  Tensor y = attention(q, k, v, ctx.bias, ctx.plain_causal, p, ctx.path,
                       ctx.captured ? &probs : nullptr);  // (B, H, T, D)
  if (ctx.captured) ctx.captured->push_back(probs);
  y = c_proj(y.transpose(1, 2).reshape({B * T, C}));
  return maybe_dropout(y, resid_dropout_, ctx.training).view({B, T, C});
}

MLPImpl::MLPImpl(const ModelConfig& cfg)
    : activation_(cfg.activation), resid_dropout_(cfg.resid_dropout) {
  c_fc = register_module("c_fc", make_linear(cfg.d_model, cfg.ffn_dim(), cfg.bias));
  c_proj = register_module("c_proj", make_linear(cfg.ffn_dim(), cfg.d_model, cfg.bias));
}

Tensor MLPImpl::forward(const Tensor& x) {
  // x (..., C) -> (..., C); the matmuls run on the (N, C) view.
  Tensor h = c_fc(x.reshape({-1, x.size(-1)}));  // (N, F)
  if (activation_ == "gelu_tanh") {
    h = at::gelu(h, "tanh");
  } else if (activation_ == "gelu") {
    h = at::gelu(h);
  } else if (activation_ == "relu") {
    h = at::relu_(h);  // safe in place: addmm's backward does not need its output
  } else {
    h = at::silu(h);
  }
  if (observe) observe(h);
  h = c_proj(h);
  return maybe_dropout(h, resid_dropout_, is_training()).view(x.sizes());
}

BlockImpl::BlockImpl(const ModelConfig& cfg) : pre_norm_(cfg.pre_norm) {
  ln_1 = register_module("ln_1", LayerNorm(cfg.d_model, cfg.bias, cfg.layernorm_eps));
  attn = register_module("attn", CausalSelfAttention(cfg));
  ln_2 = register_module("ln_2", LayerNorm(cfg.d_model, cfg.bias, cfg.layernorm_eps));
  mlp = register_module("mlp", MLP(cfg));
}

Tensor BlockImpl::forward(const Tensor& x, const AttentionContext& ctx, int64_t layer) {
  // x (B, T, C) -> (B, T, C)
  if (pre_norm_) {
    Tensor h = x + attn->forward(ln_1(x), ctx, layer);
    return h + mlp(ln_2(h));
  }
  Tensor h = ln_1(x + attn->forward(x, ctx, layer));
  return ln_2(h + mlp(h));
}

// ---- KV cache ---------------------------------------------------------------------------

void KVCache::reset() {
  k.clear();
  v.clear();
  key_mask = Tensor();
  next_pos = Tensor();
  length = 0;
}

void KVCache::reorder(const Tensor& index) {
  for (auto* list : {&k, &v})
    for (auto& t : *list)
      if (t.defined()) t = t.index_select(0, index);
  if (key_mask.defined()) key_mask = key_mask.index_select(0, index);
  if (next_pos.defined()) next_pos = next_pos.index_select(0, index);
}

// ---- the model ----------------------------------------------------------------------------

GPTImpl::GPTImpl(const ModelConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  cfg_.d_ff = cfg_.ffn_dim();
  const int64_t C = cfg_.d_model;
  wte = register_module("wte", torch::nn::Embedding(cfg_.vocab_size, C));
  if (cfg_.positional == "learned")
    wpe = register_module("wpe", torch::nn::Embedding(cfg_.context_length, C));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t l = 0; l < cfg_.n_layer; ++l) blocks->push_back(Block(cfg_));
  ln_f = register_module("ln_f", LayerNorm(C, cfg_.bias, cfg_.layernorm_eps));
  if (!cfg_.tied_embeddings)
    lm_head = register_parameter("lm_head", torch::empty({cfg_.vocab_size, C}));
  init_gpt2(*this);
}

void GPTImpl::reset_parameters() {
  init_gpt2(*this);
}

void GPTImpl::set_rope_scaling(const std::string& kind, double factor) {
  ModelConfig next = cfg_;
  next.rope_scaling = kind;
  next.rope_scaling_factor = factor;
  next.validate();
  std::lock_guard<std::mutex> lock(tables_mu_);
  cfg_ = next;
  rope_cos_ = rope_sin_ = Tensor();
}

Tensor GPTImpl::causal_bias(int64_t T, torch::ScalarType dtype, torch::Device device) {
  std::lock_guard<std::mutex> lock(tables_mu_);
  if (!causal_bias_.defined() || causal_bias_.size(0) < T || causal_bias_.scalar_type() != dtype ||
      causal_bias_.device() != device) {
    const int64_t n = std::max(T, cfg_.context_length);
    // (n, n): 0 on and below the diagonal, -inf above (key after query).
    causal_bias_ = torch::full({n, n}, kNegInf, torch::dtype(dtype).device(device)).triu_(1);
  }
  return causal_bias_.narrow(0, 0, T).narrow(1, 0, T);
}

Tensor GPTImpl::sinusoid_table(int64_t n, torch::Device device) {
  std::lock_guard<std::mutex> lock(tables_mu_);
  if (!sinusoid_.defined() || sinusoid_.size(0) < n || sinusoid_.device() != device) {
    const int64_t len = std::max(n, cfg_.context_length), C = cfg_.d_model;
    // PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(p / 10000^(2i/C)); computed in
    // double so that long extrapolated positions keep their precision.
    auto pos = torch::arange(len, torch::kFloat64).unsqueeze(1);  // (L, 1)
    auto inv = torch::exp(torch::arange(0, C, 2, torch::kFloat64) * (-std::log(10000.0) / C));
    auto angle = pos * inv;  // (L, C/2)
    sinusoid_ = torch::stack({angle.sin(), angle.cos()}, -1)
                    .reshape({len, C})
                    .to(torch::kFloat32)
                    .to(device);
  }
  return sinusoid_;
}

void GPTImpl::rope_tables(int64_t n, torch::Device device, Tensor* cos, Tensor* sin) {
  std::lock_guard<std::mutex> lock(tables_mu_);
  if (!rope_cos_.defined() || rope_cos_.size(0) < n || rope_cos_.device() != device) {
    const int64_t D = cfg_.head_dim();
    const double s = cfg_.rope_scaling_factor;
    const int64_t len =
        std::max<int64_t>(n, static_cast<int64_t>(std::ceil(cfg_.context_length * s)));
    double theta = cfg_.rope_theta;
    double pos_scale = 1.0;
    if (cfg_.rope_scaling == "linear") pos_scale = 1.0 / s;  // position interpolation
    if (cfg_.rope_scaling == "ntk") theta *= std::pow(s, static_cast<double>(D) / (D - 2));
    // angle[p, i] = (p * pos_scale) * theta^(-2i/D), i < D/2
    auto inv = torch::pow(theta, torch::arange(0, D, 2, torch::kFloat64) / -static_cast<double>(D));
    auto angle = (torch::arange(len, torch::kFloat64) * pos_scale).unsqueeze(1) * inv;  // (L, D/2)
    rope_cos_ = torch::cat({angle.cos(), angle.cos()}, -1).to(torch::kFloat32).to(device);
    rope_sin_ = torch::cat({-angle.sin(), angle.sin()}, -1).to(torch::kFloat32).to(device);
  }
  *cos = rope_cos_;
  *sin = rope_sin_;
}

Tensor GPTImpl::embed(const Tensor& ids, const Tensor& positions, int64_t offset) {
  // ids (B, T) -> (B, T, C)
  const int64_t T = ids.size(1), C = cfg_.d_model;
  Tensor x;
  try {
    x = wte(ids);
  } catch (const c10::Error&) {
    SHARDLM_FAIL(core::ModelError, "token ids must lie in [0, {}) (vocab_size); got min {} max {}",
                 cfg_.vocab_size, ids.min().item<int64_t>(), ids.max().item<int64_t>());
  }
  if (cfg_.scale_embeddings) x = x * std::sqrt(static_cast<double>(C));
  if (cfg_.positional == "learned") {
    int64_t top = offset + T;  // positions never exceed the slot index
    if (top > cfg_.context_length && positions.defined()) top = positions.max().item<int64_t>() + 1;
    SHARDLM_CHECK(top <= cfg_.context_length, core::ModelError,
                  "learned positional embedding has {} positions (context_length) but the input "
                  "needs position {}; use positional = \"rope\" (with rope_scaling) or "
                  "\"sinusoidal\" for longer inputs",
                  cfg_.context_length, top - 1);
    x = x + (positions.defined() ? wpe(positions) : wpe->weight.narrow(0, 0, T));
  } else if (cfg_.positional == "sinusoidal") {
    // A position never exceeds its slot index: offset + T rows suffice (no device sync).
    Tensor table = sinusoid_table(offset + T, x.device()).to(x.scalar_type());
    x = x + (positions.defined() ? at::embedding(table, positions) : table.narrow(0, 0, T));
  }
  return maybe_dropout(x, cfg_.embd_dropout, is_training());
}

Tensor GPTImpl::hidden(const Tensor& ids, const ForwardOptions& opts) {
  SHARDLM_CHECK(ids.dim() == 2 && ids.scalar_type() == torch::kLong, core::ModelError,
                "ids must be (B, T) int64, got {} of {}", str(ids.sizes()),
                c10::toString(ids.scalar_type()));
  const int64_t B = ids.size(0), T = ids.size(1);
  SHARDLM_CHECK(T > 0 && B > 0, core::ModelError, "ids must be non-empty, got {}",
                str(ids.sizes()));
  const Tensor& mask_in = opts.attention_mask;
  if (mask_in.defined())
    SHARDLM_CHECK(mask_in.sizes() == ids.sizes(), core::ModelError,
                  "attention_mask must match ids {} but is {}", str(ids.sizes()),
                  str(mask_in.sizes()));
  const auto dev = ids.device();

  AttentionContext ctx;
  ctx.path = opts.attention;
  ctx.training = is_training();
  if (opts.capture_attention) {
    captured_.clear();
    ctx.captured = &captured_;
  }

  // Positions and the key mask: plain 0..T-1 with a causal mask unless padding or
  // a cache is involved. A padded row's real tokens get positions 0, 1, 2, ... as if
  // the row were alone; a query may always attend to itself, so no softmax row is
  // ever fully masked (a padding query's output is ignored by the loss mask).
  Tensor positions, key_mask;  // (B, T) int64, (B, Tk) bool
  int64_t offset = 0;
  Tensor new_mask = mask_in.defined() ? mask_in.to(torch::kBool) : Tensor();
  if (opts.positions.defined()) {
    SHARDLM_CHECK(!opts.cache, core::ModelError,
                  "ForwardOptions::positions cannot be combined with a KV cache (the cache "
                  "keeps each row's positions)");
    SHARDLM_CHECK(opts.positions.sizes() == ids.sizes(), core::ModelError,
                  "positions must match ids {} but is {}", str(ids.sizes()),
                  str(opts.positions.sizes()));
  }
  if (opts.attention_backend) {
    SHARDLM_CHECK(!opts.cache && !mask_in.defined() && !opts.capture_attention, core::ModelError,
                  "an attention backend holds the keys and masks them itself: give no cache, "
                  "attention_mask or capture_attention with it");
    ctx.backend = opts.attention_backend;
    positions = opts.positions;
    // Tables (sinusoid, RoPE) are sized by offset + T: make that cover the
    // largest position (packed tokens can sit far beyond T).
    if (positions.defined()) offset = std::max<int64_t>(0, positions.max().item<int64_t>() + 1 - T);
  } else if (KVCache* cache = opts.cache) {
    if (cache->empty()) {
      cache->k.assign(cfg_.n_layer, Tensor());
      cache->v.assign(cfg_.n_layer, Tensor());
      cache->capacity = std::max(cache->capacity > 0 ? cache->capacity : cfg_.context_length, T);
      cache->key_mask = torch::zeros({B, cache->capacity}, torch::dtype(torch::kBool).device(dev));
      cache->next_pos = torch::zeros({B}, torch::dtype(torch::kLong).device(dev));
    }
    SHARDLM_CHECK(cache->batch() == B, core::ModelError,
                  "KV cache holds {} rows but ids has {}; reset() it for a new batch",
                  cache->batch(), B);
    offset = cache->length;
    if (offset + T > cache->capacity) {  // grow: the per-layer buffers follow in attention
      cache->capacity = std::max(2 * cache->capacity, offset + T);
      Tensor km = torch::zeros({B, cache->capacity}, cache->key_mask.options());
      km.narrow(1, 0, offset).copy_(cache->key_mask.narrow(1, 0, offset));
      cache->key_mask = km;
    }
    if (!new_mask.defined()) new_mask = torch::ones({B, T}, torch::dtype(torch::kBool).device(dev));
    cache->key_mask.narrow(1, offset, T).copy_(new_mask);
    key_mask = cache->key_mask.narrow(1, 0, offset + T);
    Tensor counts = new_mask.to(torch::kLong).cumsum(1);  // (B, T)
    positions = (cache->next_pos.unsqueeze(1) + counts - 1).clamp_min(0);
    cache->next_pos = cache->next_pos + counts.select(1, T - 1);
    ctx.cache = cache;
    ctx.cache_offset = offset;
  } else if (new_mask.defined()) {
    key_mask = new_mask;
    SHARDLM_CHECK(!opts.positions.defined(), core::ModelError,
                  "ForwardOptions::positions cannot be combined with an attention_mask (the "
                  "mask decides the positions)");
    positions = (new_mask.to(torch::kLong).cumsum(1) - 1).clamp_min(0);
  } else if (opts.positions.defined()) {
    positions = opts.positions;
    offset = std::max<int64_t>(0, positions.max().item<int64_t>() + 1 - T);
  }

  Tensor x = embed(ids, positions, offset);  // (B, T, C)
  const int64_t Tk = offset + T;
  if (key_mask.defined()) {
    auto qi = torch::arange(offset, Tk, torch::dtype(torch::kLong).device(dev)).unsqueeze(1);
    auto kj = torch::arange(Tk, torch::dtype(torch::kLong).device(dev)).unsqueeze(0);
    Tensor allowed = (kj <= qi).unsqueeze(0) &                               // causal
                     (key_mask.view({B, 1, Tk}) | (kj == qi).unsqueeze(0));  // real key or self
    ctx.bias = torch::zeros({B, 1, T, Tk}, x.options())
                   .masked_fill_(allowed.logical_not().unsqueeze(1), kNegInf);  // (B, 1, T, Tk)
    ctx.plain_causal = false;
  } else if (!ctx.backend) {
    ctx.bias = causal_bias(T, x.scalar_type(), dev);  // (T, T)
  }
  if (cfg_.positional == "rope") {
    Tensor cos, sin;
    rope_tables(Tk, dev, &cos, &sin);  // (L, D); positions <= slot index < Tk
    const int64_t D = cfg_.head_dim();
    if (positions.defined()) {
      ctx.rope_cos = at::embedding(cos, positions).view({B, T, 1, D});
      ctx.rope_sin = at::embedding(sin, positions).view({B, T, 1, D});
    } else {
      ctx.rope_cos = cos.narrow(0, 0, T).view({1, T, 1, D});
      ctx.rope_sin = sin.narrow(0, 0, T).view({1, T, 1, D});
    }
  }

  const BlockRunner& runner = opts.block_runner ? opts.block_runner : default_block_runner;
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    auto block = blocks->ptr<BlockImpl>(l);
    // By value: activation checkpointing calls `run` again during backward,
    // after this function has returned.
    BlockFn run = [block, ctx, l](const Tensor& h) { return block->forward(h, ctx, l); };
    x = runner ? runner(l, run, x) : run(x);
  }
  if (opts.cache) opts.cache->length = Tk;
  return ln_f(x);
}

Tensor GPTImpl::project(const Tensor& h) const {
  // h (..., C) -> (..., V): one matmul with the (V, C) output weight.
  auto sizes = h.sizes().vec();
  sizes.back() = cfg_.vocab_size;
  return at::mm(h.reshape({-1, h.size(-1)}), lm_head_weight().t()).view(sizes);
}

Tensor GPTImpl::forward(const Tensor& ids, const ForwardOptions& opts) {
  return project(hidden(ids, opts));
}

// ---- autocast ---------------------------------------------------------------------------

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define SHARDLM_AUTOCAST_BY_DEVICE 1  // 2.4 made the per-device functions the API
#endif

AutocastGuard::AutocastGuard(torch::DeviceType device, torch::ScalarType dtype, bool enabled)
    : device_(device), active_(enabled) {
  if (!active_) return;
#ifdef SHARDLM_AUTOCAST_BY_DEVICE
  prev_enabled_ = at::autocast::is_autocast_enabled(device);
  prev_dtype_ = at::autocast::get_autocast_dtype(device);
  at::autocast::set_autocast_enabled(device, enabled);
  at::autocast::set_autocast_dtype(device, dtype);
#else
  const bool cpu = device == torch::kCPU;
  prev_enabled_ = cpu ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
  prev_dtype_ =
      cpu ? at::autocast::get_autocast_cpu_dtype() : at::autocast::get_autocast_gpu_dtype();
  if (cpu) {
    at::autocast::set_cpu_enabled(enabled);
    // LibTorch < 2 accepts only bfloat16 here, even with autocast off (fp32 runs).
    if (enabled) at::autocast::set_autocast_cpu_dtype(dtype);
  } else {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  }
#endif
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#ifdef SHARDLM_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_enabled(device_, prev_enabled_);
  at::autocast::set_autocast_dtype(device_, prev_dtype_);
#else
  if (device_ == torch::kCPU) {
    at::autocast::set_cpu_enabled(prev_enabled_);
    at::autocast::set_autocast_cpu_dtype(prev_dtype_);
  } else {
    at::autocast::set_enabled(prev_enabled_);
    at::autocast::set_autocast_gpu_dtype(prev_dtype_);
  }
#endif
}

// ---- evaluation helpers ------------------------------------------------------------------

Tensor log_probs(const Tensor& logits) {
  return at::log_softmax(logits, -1, torch::kFloat);
}

namespace {
// Weighted cross entropy as one autograd function: loss = -sum_i w_i log p_i[t_i].
// Forward keeps only log_softmax (fp32); backward writes
// w_i g (softmax_i - onehot(t_i)) in two passes over (N, V), where log_softmax +
// nll_loss would zero-fill, scatter and run log_softmax's own backward.
struct WeightedCrossEntropy : torch::autograd::Function<WeightedCrossEntropy> {
  // logits (N, V), targets (N) int64 (any value where w = 0), w (N) fp32 -> scalar fp32
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& logits,
                        const Tensor& targets, const Tensor& w) {
    Tensor lsm = at::log_softmax(logits, 1, torch::kFloat);  // (N, V)
    Tensor t = targets.unsqueeze(1);                         // (N, 1)
    Tensor picked = lsm.gather(1, t).squeeze(1);             // (N)
    ctx->save_for_backward({lsm, t, w});
    return -(picked * w).sum();
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    Tensor coef = (saved[2] * grads[0]).unsqueeze(1);  // (N, 1): w_i g
    Tensor grad = saved[0].exp().mul_(coef);           // softmax * w g (a new tensor)
    grad.scatter_add_(1, saved[1], -coef);
    return {grad, Tensor(), Tensor()};
  }
};
}  // namespace

Tensor loss(const Tensor& logits, const Tensor& targets, const Tensor& loss_mask) {
  // logits (B, T, V), targets (B, T) -> scalar fp32
  const int64_t V = logits.size(-1);
  SHARDLM_CHECK(targets.sizes() == logits.sizes().slice(0, logits.dim() - 1), core::ModelError,
                "targets {} must match logits {} without the vocabulary dim", str(targets.sizes()),
                str(logits.sizes()));
  Tensor flat = logits.reshape({-1, V});
  Tensor t = targets.reshape({-1});
  const int64_t N = t.size(0);
  Tensor w;  // (N): 1 / count at kept positions, 0 elsewhere
  if (!loss_mask.defined()) {
    w = torch::full({N}, 1.0 / static_cast<double>(std::max<int64_t>(N, 1)),
                    torch::dtype(torch::kFloat).device(logits.device()));
  } else {
    SHARDLM_CHECK(loss_mask.sizes() == targets.sizes(), core::ModelError,
                  "loss_mask {} must match targets {}", str(loss_mask.sizes()),
                  str(targets.sizes()));
    Tensor keep = loss_mask.reshape({-1}).to(torch::kBool);
    w = keep.to(torch::kFloat) / keep.sum().clamp_min(1).to(torch::kFloat);
    t = t.masked_fill(keep.logical_not(), 0);  // masked targets may be any value (e.g. -100)
  }
  return WeightedCrossEntropy::apply(flat, t, w);
}

}  // namespace shardlm::model
