// Units of a GPT as ShardedModel sees them (see layout.h). The parameter
// order mirrors model/gpt.cpp: a Block registers ln_1, attn (c_attn or
// q/k/v_proj, then c_proj), ln_2, mlp (c_fc, c_proj); a LayerNorm its weight
// then bias; the GPT's own lm_head parameter comes before its submodules.
#include "plan/layout.h"

#include <algorithm>

#include "parallel/param_rules.h"

namespace shardlm::plan {

int64_t UnitInfo::numel() const {
  int64_t n = 0;
  for (const auto& p : params) n += p.numel;
  return n;
}

int64_t UnitInfo::padded(int world) const {
  const int64_t n = numel();
  const int64_t p = (n + world - 1) / world * world;
  return p == 0 ? world : p;
}

namespace {
ParamInfo param(const std::string& name, int64_t rows, int64_t cols = 0) {
  ParamInfo p;
  p.name = name;
  p.numel = cols > 0 ? rows * cols : rows;
  p.matrix = cols > 0;
  p.decay = parallel::default_decay(name, cols > 0 ? 2 : 1);
  p.embedding = parallel::looks_like_embedding(name);
  return p;
}

void linear(std::vector<ParamInfo>& out, const std::string& name, int64_t in, int64_t outdim,
            bool bias) {
  out.push_back(param(name + ".weight", outdim, in));
  if (bias) out.push_back(param(name + ".bias", outdim));
}

void layer_norm(std::vector<ParamInfo>& out, const std::string& name, int64_t dim, bool bias) {
  out.push_back(param(name + ".weight", dim));
  if (bias) out.push_back(param(name + ".bias", dim));
}
}  // namespace

std::vector<UnitInfo> model_units(const model::ModelConfig& cfg) {
  const int64_t C = cfg.d_model, F = cfg.ffn_dim(), V = cfg.vocab_size;
  const bool b = cfg.bias;
  std::vector<UnitInfo> units;
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    UnitInfo u;
    u.name = "unit" + std::to_string(l);
    const std::string pre = "blocks." + std::to_string(l) + ".";
    layer_norm(u.params, pre + "ln_1", C, b);
    if (cfg.fused_qkv) {
      linear(u.params, pre + "attn.c_attn", C, 3 * C, b);
    } else {
      for (const char* n : {"q_proj", "k_proj", "v_proj"})
        linear(u.params, pre + "attn." + n, C, C, b);
    }
    linear(u.params, pre + "attn.c_proj", C, C, b);
    layer_norm(u.params, pre + "ln_2", C, b);
    linear(u.params, pre + "mlp.c_fc", C, F, b);
    linear(u.params, pre + "mlp.c_proj", F, C, b);
    units.push_back(std::move(u));
  }
  UnitInfo root;
  root.name = "root";
  root.root = true;
  if (!cfg.tied_embeddings) root.params.push_back(param("lm_head", V, C));
  root.params.push_back(param("wte.weight", V, C));
  if (cfg.positional == "learned")
    root.params.push_back(param("wpe.weight", cfg.context_length, C));
  layer_norm(root.params, "ln_f", C, b);
  units.push_back(std::move(root));
  return units;
}

std::vector<Segment> segments(const UnitInfo& unit, int world, int64_t begin, int64_t end) {
  std::vector<Segment> out;
  int64_t offset = 0;
  for (const auto& p : unit.params) {
    const int64_t b = std::max(begin, offset), x = std::min(end, offset + p.numel);
    if (b < x) out.push_back(Segment{b - begin, x - begin, p.numel, p.decay, false, p.embedding});
    offset += p.numel;
  }
  const int64_t padded = unit.padded(world);
  const int64_t pad_b = std::max(begin, unit.numel());
  if (pad_b < end)
    out.push_back(Segment{pad_b - begin, end - begin, padded - unit.numel(), false, true, false});
  return out;
}

}  // namespace shardlm::plan
