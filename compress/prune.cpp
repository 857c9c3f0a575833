// Magnitude pruning and structured (neuron, head) pruning; prune.h has the scores.
//
// A structured unit (an MLP neuron, an attention head) owns slices of several
// parameters: a "Part" names one (the parameter, the dim it lies along, the first
// index of unit 0 and how many indices each unit takes). Scores and masks are
// computed over these parts, vectorised over units.
#include "compress/prune.h"

#include <cmath>

#include "compress/io.h"
#include "core/error.h"

namespace shardlm::model::compress {

using core::ModelError;
using torch::Tensor;

// ---- configuration ---------------------------------------------------------------------

PruneConfig PruneConfig::from(const core::ConfigSection& s) {
  PruneConfig c;
  c.method = s.get("method", c.method);
  c.sparsity = s.get("sparsity", c.sparsity);
  c.scope = s.get("scope", c.scope);
  c.score = s.get("score", c.score);
  return c;
}

void PruneConfig::validate() const {
  using core::config_require;
  config_require(method == "magnitude" || method == "neurons" || method == "heads", "method",
                 method, "one of magnitude, neurons, heads");
  config_require(sparsity >= 0 && sparsity < 1, "sparsity", std::to_string(sparsity),
                 "a fraction in [0, 1)");
  config_require(scope == "global" || scope == "layer", "scope", scope, "one of global, layer");
  config_require(score == "l2" || score == "taylor", "score", score, "one of l2, taylor");
}

// ---- unstructured -------------------------------------------------------------------------

namespace {
std::vector<std::pair<std::string, Tensor>> block_linear_weights(const GPT& model) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& p : model->named_parameters())
    if (p.key().rfind("blocks.", 0) == 0 && p.value().dim() == 2)
      out.emplace_back(p.key(), p.value());
  return out;
}

// Mask (same shape as `magnitudes`) with the k smallest entries false; ties by position.
Tensor keep_all_but_smallest(const Tensor& magnitudes, int64_t k) {
  Tensor flat = magnitudes.reshape({-1});
  Tensor keep = torch::ones(flat.sizes(), torch::kBool);
  if (k > 0) {
    Tensor order = std::get<1>(torch::sort(flat, /*stable=*/true, 0, /*descending=*/false));
    keep.index_fill_(0, order.narrow(0, 0, k), false);
  }
  return keep.view(magnitudes.sizes());
}
}  // namespace

Masks prune_magnitude(GPT& model, double sparsity, bool global) {
  SHARDLM_CHECK(sparsity >= 0 && sparsity < 1, ModelError,
                "prune_magnitude: sparsity {} is not in [0, 1)", sparsity);
  torch::NoGradGuard no_grad;
  auto weights = block_linear_weights(model);
  Masks masks;
  if (global) {
    std::vector<Tensor> flat;
    for (auto& [n, w] : weights) flat.push_back(w.detach().abs().reshape({-1}).cpu());
    Tensor all = torch::cat(flat);
    const auto k = static_cast<int64_t>(std::llround(sparsity * static_cast<double>(all.numel())));
    Tensor keep = keep_all_but_smallest(all, k);
    int64_t off = 0;
    for (auto& [n, w] : weights) {
      masks[n] = keep.narrow(0, off, w.numel()).view(w.sizes()).to(w.device());
      off += w.numel();
    }
  } else {
    for (auto& [n, w] : weights) {
      const auto k = static_cast<int64_t>(std::llround(sparsity * static_cast<double>(w.numel())));
      masks[n] = keep_all_but_smallest(w.detach().abs().cpu(), k).to(w.device());
    }
  }
  apply_masks(model, masks);
  return masks;
}

void apply_masks(GPT& model, const Masks& masks) {
  torch::NoGradGuard no_grad;
  auto params = model->named_parameters();
  for (const auto& [name, mask] : masks) {
    Tensor* p = params.find(name);
    SHARDLM_CHECK(p && p->sizes() == mask.sizes(), ModelError,
                  "apply_masks: no parameter '{}' of shape {}", name, c10::str(mask.sizes()));
    p->mul_(mask.to(p->device(), p->scalar_type()));
  }
}

double block_weight_sparsity(const GPT& model) {
  int64_t zeros = 0, total = 0;
  for (auto& [n, w] : block_linear_weights(model)) {
    zeros += (w == 0).sum().item<int64_t>();
    total += w.numel();
  }
  return total ? static_cast<double>(zeros) / static_cast<double>(total) : 0.0;
}

// ---- structured units ------------------------------------------------------------------------

namespace {
struct Part {
  std::string name;
  Tensor param;
  int64_t dim = 0, offset = 0, unit = 1;  // unit u spans [offset + u*unit, offset + (u+1)*unit)
};

// The parts of layer l's MLP neurons (F units).
std::vector<Part> neuron_parts(GPT& model, int64_t l) {
  auto mlp = model->blocks->ptr<BlockImpl>(l)->mlp;
  const std::string pre = "blocks." + std::to_string(l) + ".mlp.";
  std::vector<Part> parts{{pre + "c_fc.weight", mlp->c_fc->weight, 0, 0, 1},
                          {pre + "c_proj.weight", mlp->c_proj->weight, 1, 0, 1}};
  if (mlp->c_fc->bias.defined()) parts.push_back({pre + "c_fc.bias", mlp->c_fc->bias, 0, 0, 1});
  return parts;
}

// The parts of layer l's attention heads (H units of head_dim rows / columns).
std::vector<Part> head_parts(GPT& model, int64_t l) {
  auto attn = model->blocks->ptr<BlockImpl>(l)->attn;
  const int64_t C = model->config().d_model, D = model->config().head_dim();
  const std::string pre = "blocks." + std::to_string(l) + ".attn.";
  std::vector<Part> parts{{pre + "c_proj.weight", attn->c_proj->weight, 1, 0, D}};
  auto add = [&](const std::string& name, const torch::nn::Linear& lin, int64_t offset) {
    parts.push_back({pre + name + ".weight", lin->weight, 0, offset, D});
    if (lin->bias.defined()) parts.push_back({pre + name + ".bias", lin->bias, 0, offset, D});
  };
  if (attn->c_attn) {
    for (int64_t i = 0; i < 3; ++i) add("c_attn", attn->c_attn, i * C);  // q, k, v rows
  } else {
    add("q_proj", attn->q_proj, 0);
    add("k_proj", attn->k_proj, 0);
    add("v_proj", attn->v_proj, 0);
  }
  return parts;
}

using PartsFn = std::vector<Part> (*)(GPT&, int64_t);

// sum over each unit's slice of t (a tensor shaped like part.param): (n) fp64.
Tensor per_unit_sum(const Tensor& t, const Part& part, int64_t n) {
  return t.narrow(part.dim, part.offset, n * part.unit)
      .movedim(part.dim, 0)
      .reshape({n, -1})
      .to(torch::kDouble)
      .sum(1);
}

std::vector<Tensor> importance(GPT& model, const std::string& score, const Batches& batches,
                               PartsFn parts_of, int64_t n) {
  const int64_t L = model->config().n_layer;
  std::vector<Tensor> out(L);
  if (score == "l2") {
    torch::NoGradGuard no_grad;
    for (int64_t l = 0; l < L; ++l) {
      Tensor acc = torch::zeros({n}, torch::kDouble);
      for (const Part& p : parts_of(model, l))
        acc += per_unit_sum(p.param.detach().square(), p, n).cpu();
      out[l] = acc.sqrt();
    }
    return out;
  }
  SHARDLM_CHECK(score == "taylor", ModelError, "unknown importance score '{}' (l2, taylor)", score);
  SHARDLM_CHECK(!batches.empty(), ModelError, "the taylor score needs at least one batch");
  torch::AutoGradMode grad_on(true);
  const bool was_training = model->is_training();
  model->eval();  // no dropout: the score of the model as it will run
  for (int64_t l = 0; l < L; ++l) out[l] = torch::zeros({n}, torch::kDouble);
  for (const auto& [ids, targets] : batches) {
    model->zero_grad();
    loss(model->forward(ids), targets).backward();
    torch::NoGradGuard no_grad;
    for (int64_t l = 0; l < L; ++l) {
      Tensor s = torch::zeros({n}, torch::kDouble);
      for (const Part& p : parts_of(model, l))
        s += per_unit_sum(p.param.detach() * p.param.grad(), p, n).cpu();
      out[l] += s.square();
    }
  }
  model->zero_grad();
  model->train(was_training);
  return out;
}

Masks mask_units(GPT& model, const std::vector<Tensor>& keep, PartsFn parts_of, int64_t n) {
  const int64_t L = model->config().n_layer;
  SHARDLM_CHECK(static_cast<int64_t>(keep.size()) == L, ModelError,
                "keep lists {} layers, the model has {}", keep.size(), L);
  Masks masks;
  for (int64_t l = 0; l < L; ++l) {
    Tensor units = torch::zeros({n}, torch::kBool);
    units.index_fill_(0, keep[l].to(torch::kLong).cpu(), true);
    for (const Part& p : parts_of(model, l)) {
      Tensor& m = masks[p.name];
      if (!m.defined()) m = torch::ones(p.param.sizes(), torch::kBool);
      std::vector<int64_t> shape(p.param.dim(), 1);
      shape[p.dim] = n * p.unit;
      m.narrow(p.dim, p.offset, n * p.unit)
          .logical_and_(units.repeat_interleave(p.unit).view(shape));
    }
  }
  apply_masks(model, masks);
  return masks;
}
}  // namespace

std::vector<Tensor> neuron_importance(GPT& model, const std::string& score,
                                      const Batches& batches) {
  return importance(model, score, batches, neuron_parts, model->config().ffn_dim());
}

std::vector<Tensor> head_importance(GPT& model, const std::string& score, const Batches& batches) {
  return importance(model, score, batches, head_parts, model->config().n_head);
}

std::vector<Tensor> top_indices(const std::vector<Tensor>& importance, int64_t keep) {
  std::vector<Tensor> out;
  for (const Tensor& s : importance) {
    SHARDLM_CHECK(keep > 0 && keep <= s.numel(), ModelError,
                  "top_indices: cannot keep {} of {} units", keep, s.numel());
    out.push_back(std::get<0>(std::get<1>(s.topk(keep)).sort()));
  }
  return out;
}

Masks mask_neurons(GPT& model, const std::vector<Tensor>& keep) {
  return mask_units(model, keep, neuron_parts, model->config().ffn_dim());
}

Masks mask_heads(GPT& model, const std::vector<Tensor>& keep) {
  return mask_units(model, keep, head_parts, model->config().n_head);
}

GPT prune_neurons(const GPT& model, const std::vector<Tensor>& keep) {
  const ModelConfig& src_cfg = model->config();
  SHARDLM_CHECK(static_cast<int64_t>(keep.size()) == src_cfg.n_layer && !keep.empty(), ModelError,
                "prune_neurons: keep lists {} layers, the model has {}", keep.size(),
                src_cfg.n_layer);
  ModelConfig cfg = src_cfg;
  cfg.d_ff = keep[0].numel();
  for (const Tensor& k : keep)
    SHARDLM_CHECK(k.numel() == cfg.d_ff, ModelError,
                  "prune_neurons: every layer must keep the same number of neurons (ModelConfig "
                  "has one d_ff); got {} and {}",
                  cfg.d_ff, k.numel());
  GPT small(cfg);
  torch::NoGradGuard no_grad;
  auto src = model->named_parameters();
  for (auto& p : small->named_parameters()) {
    const std::string& name = p.key();
    Tensor from = src[name];
    if (name.find(".mlp.c_fc.") != std::string::npos) {
      from = from.index_select(0, keep[layer_index(name)].to(from.device()));
    } else if (name.find(".mlp.c_proj.weight") != std::string::npos) {
      from = from.index_select(1, keep[layer_index(name)].to(from.device()));
    }
    p.value().copy_(from);
  }
  return small;
}

PruneResult prune(const GPT& model, const PruneConfig& cfg, const Batches& batches) {
  cfg.validate();
  PruneResult r;
  GPT work = copy_gpt(model);
  const ModelConfig& mc = model->config();
  auto kept = [&](int64_t n) {
    return std::max<int64_t>(1, n - std::llround(cfg.sparsity * static_cast<double>(n)));
  };
  if (cfg.method == "magnitude") {
    r.masks = prune_magnitude(work, cfg.sparsity, cfg.scope == "global");
    r.model = work;
  } else if (cfg.method == "neurons") {
    auto keep = top_indices(neuron_importance(work, cfg.score, batches), kept(mc.ffn_dim()));
    r.model = prune_neurons(work, keep);
  } else {
    auto keep = top_indices(head_importance(work, cfg.score, batches), kept(mc.n_head));
    r.masks = mask_heads(work, keep);
    r.model = work;
  }
  r.sparsity = block_weight_sparsity(r.model);
  return r;
}

}  // namespace shardlm::model::compress
