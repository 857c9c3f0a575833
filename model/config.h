// ModelConfig: every architecture choice of the GPT decoder in one small struct.
// Torch-free on purpose (config.cpp compiles in a second): the trainer, the memory
// planner and the CLI read it without pulling in LibTorch.
//
// The defaults are GPT-2 small (124M): learned positions, tanh GELU, pre-LayerNorm,
// tied embeddings, biases everywhere. docs/model.md explains each option.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/config.h"

namespace shardlm::model {

struct ModelConfig {
  // ---- sizes
  int64_t vocab_size = 50257;
  int64_t context_length = 1024;  // T the model is trained at (learned positions: a hard limit)
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t d_model = 768;
  int64_t d_ff = 0;      // feed-forward width; 0 = ff_mult * d_model (see ffn_dim())
  double ff_mult = 4.0;  // used only when d_ff == 0

  // ---- positions: "learned" (GPT-2), "sinusoidal" (Vaswani et al.) or "rope" (Su et al.)
  std::string positional = "learned";
  double rope_theta = 10000.0;        // RoPE base
  std::string rope_scaling = "none";  // "none" | "linear" (position interpolation) | "ntk"
  double rope_scaling_factor = 1.0;   // run at factor * context_length

  // ---- block
  std::string activation = "gelu_tanh";  // "gelu" (exact erf) | "gelu_tanh" | "relu" | "silu"
  bool tied_embeddings = true;           // lm_head shares the token embedding's storage
  bool scale_embeddings = false;         // multiply token embeddings by sqrt(d_model)
  bool bias = true;                      // biases in linear layers and LayerNorms
  bool pre_norm = true;                  // pre-LN (GPT-2); false = post-LN (original Transformer)
  bool fused_qkv = true;                 // one (C -> 3C) projection instead of three (C -> C)
  double layernorm_eps = 1e-5;

  // ---- regularisation and initialisation
  double embd_dropout = 0.0;
  double attn_dropout = 0.0;
  double resid_dropout = 0.0;
  double init_std = 0.02;  // N(0, init_std); residual projections get init_std / sqrt(2 n_layer)

  // Reads the [model] section; every key defaults to the value above.
  static ModelConfig from(const core::ConfigSection& s);
  // Throws ConfigError naming the first field that is wrong and what was expected.
  void validate() const;

  nlohmann::json to_json() const;
  // Accepts what to_json() writes; absent keys keep their defaults, unknown keys throw.
  static ModelConfig from_json(const nlohmann::json& j);

  int64_t ffn_dim() const;  // d_ff, or ff_mult * d_model rounded when d_ff == 0
  int64_t head_dim() const { return d_model / n_head; }
  // GPT-2's exact architecture: learned positions, tanh GELU, pre-LN, tied, biases,
  // unscaled embeddings. Such models are saved in Hugging Face's GPT-2 layout.
  bool is_gpt2_architecture() const;

  // Number of trainable parameters (a tied lm_head counts once).
  int64_t num_parameters() const;
  // Training FLOPs (forward + backward = 3 x forward) per token at sequence length
  // `seq_len` (default: context_length): every matmul counted as 2 m n k, attention
  // scores and weighted sum over the full T x T (the causal half is not subtracted,
  // as in PaLM's MFU convention). docs/model.md derives it.
  double flops_per_token(int64_t seq_len = 0) const;
  // Forward-only FLOPs per token (inference).
  double forward_flops_per_token(int64_t seq_len = 0) const;
};

}  // namespace shardlm::model
