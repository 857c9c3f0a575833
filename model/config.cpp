// ModelConfig: reading, validation, JSON, parameter and FLOP counts. No LibTorch here.
#include "model/config.h"

#include <cmath>
#include <set>

#include "core/json_int.h"

namespace shardlm::model {

using core::config_require;

namespace {

bool one_of(const std::string& v, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed)
    if (v == a) return true;
  return false;
}

std::string str(double v) {
  return fmt::format("{}", v);
}
std::string str(int64_t v) {
  return std::to_string(v);
}

}  // namespace

// ---- reading -----------------------------------------------------------------

ModelConfig ModelConfig::from(const core::ConfigSection& s) {
  ModelConfig c;
  c.vocab_size = s.get("vocab_size", c.vocab_size);
  c.context_length = s.get("context_length", c.context_length);
  c.n_layer = s.get("n_layer", c.n_layer);
  c.n_head = s.get("n_head", c.n_head);
  c.d_model = s.get("d_model", c.d_model);
  c.d_ff = s.get("d_ff", c.d_ff);
  c.ff_mult = s.get("ff_mult", c.ff_mult);
  c.positional = s.get("positional", c.positional);
  c.rope_theta = s.get("rope_theta", c.rope_theta);
  c.rope_scaling = s.get("rope_scaling", c.rope_scaling);
  c.rope_scaling_factor = s.get("rope_scaling_factor", c.rope_scaling_factor);
  c.activation = s.get("activation", c.activation);
  c.tied_embeddings = s.get("tied_embeddings", c.tied_embeddings);
  c.scale_embeddings = s.get("scale_embeddings", c.scale_embeddings);
  c.bias = s.get("bias", c.bias);
  c.pre_norm = s.get("pre_norm", c.pre_norm);
  c.fused_qkv = s.get("fused_qkv", c.fused_qkv);
  c.layernorm_eps = s.get("layernorm_eps", c.layernorm_eps);
  c.embd_dropout = s.get("embd_dropout", c.embd_dropout);
  c.attn_dropout = s.get("attn_dropout", c.attn_dropout);
  c.resid_dropout = s.get("resid_dropout", c.resid_dropout);
  // `dropout` sets all three at once (nanoGPT's single knob); the specific keys win.
  if (s.has("dropout")) {
    double p = s.get("dropout", 0.0);
    c.embd_dropout = s.get("embd_dropout", p);
    c.attn_dropout = s.get("attn_dropout", p);
    c.resid_dropout = s.get("resid_dropout", p);
  }
  c.init_std = s.get("init_std", c.init_std);
  return c;
}

// ---- validation ----------------------------------------------------------------

void ModelConfig::validate() const {
  config_require(vocab_size > 0, "vocab_size", str(vocab_size), "a positive integer");
  config_require(context_length > 0, "context_length", str(context_length), "a positive integer");
  config_require(n_layer > 0, "n_layer", str(n_layer), "a positive integer");
  config_require(n_head > 0, "n_head", str(n_head), "a positive integer");
  config_require(d_model > 0, "d_model", str(d_model), "a positive integer");
  config_require(
      d_model % n_head == 0, "d_model", str(d_model),
      fmt::format("a multiple of n_head = {} (each head gets d_model / n_head dims)", n_head));
  config_require(d_ff >= 0, "d_ff", str(d_ff), "a positive width, or 0 for ff_mult * d_model");
  config_require(d_ff > 0 || (ff_mult > 0 && std::isfinite(ff_mult)), "ff_mult", str(ff_mult),
                 "a positive multiplier of d_model");
  config_require(one_of(positional, {"learned", "sinusoidal", "rope"}), "positional", positional,
                 "one of learned, sinusoidal, rope");
  if (positional == "rope") {
    config_require(head_dim() % 2 == 0, "d_model", str(d_model),
                   fmt::format("an even head dim for RoPE (d_model / n_head = {})", head_dim()));
    config_require(rope_theta > 1, "rope_theta", str(rope_theta), "a base > 1 (usually 10000)");
  }
  if (positional == "sinusoidal")
    config_require(d_model % 2 == 0, "d_model", str(d_model),
                   "an even width for sinusoidal positions");
  config_require(one_of(rope_scaling, {"none", "linear", "ntk"}), "rope_scaling", rope_scaling,
                 "one of none, linear, ntk");
  config_require(rope_scaling == "none" || positional == "rope", "rope_scaling", rope_scaling,
                 "\"none\" unless positional = \"rope\"");
  config_require(rope_scaling_factor >= 1 && std::isfinite(rope_scaling_factor),
                 "rope_scaling_factor", str(rope_scaling_factor), "a factor >= 1");
  config_require(one_of(activation, {"gelu", "gelu_tanh", "relu", "silu"}), "activation",
                 activation, "one of gelu, gelu_tanh, relu, silu");
  config_require(layernorm_eps > 0, "layernorm_eps", str(layernorm_eps), "a small positive number");
  for (auto [key, p] : {std::pair<const char*, double>{"embd_dropout", embd_dropout},
                        {"attn_dropout", attn_dropout},
                        {"resid_dropout", resid_dropout}})
    config_require(p >= 0 && p < 1, key, str(p), "a probability in [0, 1)");
  config_require(init_std > 0, "init_std", str(init_std), "a positive standard deviation");
}

// ---- JSON ------------------------------------------------------------------------

nlohmann::json ModelConfig::to_json() const {
  return {{"vocab_size", vocab_size},
          {"context_length", context_length},
          {"n_layer", n_layer},
          {"n_head", n_head},
          {"d_model", d_model},
          {"d_ff", ffn_dim()},
          {"positional", positional},
          {"rope_theta", rope_theta},
          {"rope_scaling", rope_scaling},
          {"rope_scaling_factor", rope_scaling_factor},
          {"activation", activation},
          {"tied_embeddings", tied_embeddings},
          {"scale_embeddings", scale_embeddings},
          {"bias", bias},
          {"pre_norm", pre_norm},
          {"fused_qkv", fused_qkv},
          {"layernorm_eps", layernorm_eps},
          {"embd_dropout", embd_dropout},
          {"attn_dropout", attn_dropout},
          {"resid_dropout", resid_dropout},
          {"init_std", init_std}};
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object())
    throw core::ConfigError(
        fmt::format("model config: expected a JSON object, got {}", j.type_name()));
  ModelConfig c;
  const std::set<std::string> known{"vocab_size",
                                    "context_length",
                                    "n_layer",
                                    "n_head",
                                    "d_model",
                                    "d_ff",
                                    "ff_mult",
                                    "positional",
                                    "rope_theta",
                                    "rope_scaling",
                                    "rope_scaling_factor",
                                    "activation",
                                    "tied_embeddings",
                                    "scale_embeddings",
                                    "bias",
                                    "pre_norm",
                                    "fused_qkv",
                                    "layernorm_eps",
                                    "embd_dropout",
                                    "attn_dropout",
                                    "resid_dropout",
                                    "init_std"};
  for (const auto& [k, v] : j.items())
    if (!known.count(k))
      throw core::ConfigError(fmt::format("model config: unknown key \"{}\"", k));
  auto read = [&](const char* key, auto& field) {
    if (!j.contains(key)) return;
    using Field = std::decay_t<decltype(field)>;
    if constexpr (std::is_integral_v<Field> && !std::is_same_v<Field, bool>) {
      // not get_to: it casts a float to the integer (undefined when out of
      // range: "n_layer": 3.9e19 in a safetensors config, found by fuzz_safetensors)
      field = core::json_int<Field, core::ConfigError>(j.at(key), std::string("model.") + key);
      return;
    }
    try {
      j.at(key).get_to(field);
    } catch (const nlohmann::json::exception& e) {
      throw core::ConfigError("", std::string("model.") + key, j.at(key).dump(), e.what());
    }
  };
  read("vocab_size", c.vocab_size);
  read("context_length", c.context_length);
  read("n_layer", c.n_layer);
  read("n_head", c.n_head);
  read("d_model", c.d_model);
  read("d_ff", c.d_ff);
  read("ff_mult", c.ff_mult);
  read("positional", c.positional);
  read("rope_theta", c.rope_theta);
  read("rope_scaling", c.rope_scaling);
  read("rope_scaling_factor", c.rope_scaling_factor);
  read("activation", c.activation);
  read("tied_embeddings", c.tied_embeddings);
  read("scale_embeddings", c.scale_embeddings);
  read("bias", c.bias);
  read("pre_norm", c.pre_norm);
  read("fused_qkv", c.fused_qkv);
  read("layernorm_eps", c.layernorm_eps);
  read("embd_dropout", c.embd_dropout);
  read("attn_dropout", c.attn_dropout);
  read("resid_dropout", c.resid_dropout);
  read("init_std", c.init_std);
  return c;
}

// ---- derived sizes -----------------------------------------------------------------

int64_t ModelConfig::ffn_dim() const {
  return d_ff > 0 ? d_ff
                  : static_cast<int64_t>(std::llround(ff_mult * static_cast<double>(d_model)));
}

bool ModelConfig::is_gpt2_architecture() const {
  return positional == "learned" && activation == "gelu_tanh" && pre_norm && tied_embeddings &&
         bias && !scale_embeddings;
}

int64_t ModelConfig::num_parameters() const {
  const int64_t C = d_model, F = ffn_dim(), V = vocab_size, b = bias ? 1 : 0;
  const int64_t layer_norm = C + b * C;
  const int64_t attn = C * 3 * C + b * 3 * C + C * C + b * C;  // qkv + output projection
  const int64_t mlp = C * F + b * F + F * C + b * C;
  int64_t n = V * C;                                     // token embedding
  if (positional == "learned") n += context_length * C;  // position embedding
  n += n_layer * (2 * layer_norm + attn + mlp);
  n += layer_norm;                   // final LayerNorm
  if (!tied_embeddings) n += V * C;  // separate lm_head
  return n;
}

double ModelConfig::forward_flops_per_token(int64_t seq_len) const {
  const double T = static_cast<double>(seq_len > 0 ? seq_len : context_length);
  const double C = static_cast<double>(d_model), F = static_cast<double>(ffn_dim()),
               V = static_cast<double>(vocab_size);
  const double per_layer = 2 * C * 3 * C     // qkv projection
                           + 2 * T * C       // scores  q k^T  (all heads together)
                           + 2 * T * C       // weighted sum  P v
                           + 2 * C * C       // output projection
                           + 2 * 2 * C * F;  // two feed-forward matmuls
  return static_cast<double>(n_layer) * per_layer + 2 * C * V;  // + lm_head
}

double ModelConfig::flops_per_token(int64_t seq_len) const {
  return 3 *
         forward_flops_per_token(seq_len);  // backward = 2 x forward (grads of inputs and weights)
}

}  // namespace shardlm::model
