// Pruning of a GPT: unstructured magnitude pruning (the smallest |w| of the block
// Linear weights set to zero, globally or per matrix, with masks that keep them
// zero during fine-tuning), and structured pruning by an importance score of
// MLP neurons (a genuinely smaller model: d_ff shrinks, the same in every layer,
// as ModelConfig has one d_ff) and of attention heads (masked to zero in place:
// ModelConfig ties d_model = n_head x head_dim, so fewer heads cannot be a
// smaller model of the same family; docs/compression.md says more).
//
// Importance scores, per neuron j of a layer (heads alike, over the head's rows
// of q, k, v and columns of c_proj):
//   "l2":     sqrt(|c_fc.w[j, :]|^2 + |c_fc.b[j]|^2 + |c_proj.w[:, j]|^2)
//   "taylor": sum over batches of (sum over the neuron's parameters of w * dL/dw)^2,
//             the first-order estimate of the loss change when the neuron is removed
//             (Molchanov et al., "Importance Estimation for Neural Network Pruning", 2019).
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "model/gpt.h"

namespace shardlm::model::compress {

struct PruneConfig {
  std::string method = "magnitude";  // "magnitude" | "neurons" | "heads"
  double sparsity = 0.5;             // share of weights (magnitude), of d_ff (neurons) or
                                     // of heads per layer (heads) removed, in [0, 1)
  std::string scope = "global";      // magnitude: "global" | "layer" (per weight matrix)
  std::string score = "l2";          // neurons, heads: "l2" | "taylor" (needs batches)

  // Reads the [prune] section.
  static PruneConfig from(const core::ConfigSection& s);
  void validate() const;  // ConfigError naming the wrong field
};

// Parameter name -> bool mask of its shape (true = kept).
using Masks = std::map<std::string, torch::Tensor>;
// (input ids (B, T), targets (B, T)) pairs for the Taylor score.
using Batches = std::vector<std::pair<torch::Tensor, torch::Tensor>>;

// ---- unstructured -------------------------------------------------------------------------

// Zeroes exactly round(sparsity * N) block Linear weights of smallest magnitude, N
// counted over all of them (global) or per matrix (per layer); ties are broken by
// position. Biases, norms and embeddings are kept. Returns the masks.
Masks prune_magnitude(GPT& model, double sparsity, bool global);
// Multiplies every masked parameter by its mask (call after each optimizer step
// so pruned weights stay zero while fine-tuning).
void apply_masks(GPT& model, const Masks& masks);
// Share of exact zeros among the block Linear weights.
double block_weight_sparsity(const GPT& model);

// ---- structured ---------------------------------------------------------------------------

// Per layer (F) importance of each MLP neuron, or (H) of each attention head.
// "taylor" runs forward and backward over `batches` (gradients are cleared after).
std::vector<torch::Tensor> neuron_importance(GPT& model, const std::string& score,
                                             const Batches& batches = {});
std::vector<torch::Tensor> head_importance(GPT& model, const std::string& score,
                                           const Batches& batches = {});
// Per layer, the sorted int64 indices of the `keep` largest entries.
std::vector<torch::Tensor> top_indices(const std::vector<torch::Tensor>& importance, int64_t keep);

// A new GPT whose MLPs hold only the neurons in keep[l] (all of the same size k):
// d_ff = k. Its logits equal those of `model` after mask_neurons(keep).
GPT prune_neurons(const GPT& model, const std::vector<torch::Tensor>& keep);
// In place: neurons not in keep[l] get zero c_fc rows and biases and zero c_proj
// columns. Returns the masks.
Masks mask_neurons(GPT& model, const std::vector<torch::Tensor>& keep);
// In place: heads not in keep[l] get zero q/k/v rows (and biases) and zero
// c_proj input columns, so they add nothing to the residual. Returns the masks.
Masks mask_heads(GPT& model, const std::vector<torch::Tensor>& keep);

struct PruneResult {
  GPT model{nullptr};   // a new model: `model` passed in is not changed
  Masks masks;          // keep pruned entries zero when fine-tuning (apply_masks)
  double sparsity = 0;  // share of zeros among the block Linear weights
};
// Applies cfg to a copy of `model`. Taylor scores need `batches`.
PruneResult prune(const GPT& model, const PruneConfig& cfg, const Batches& batches = {});

}  // namespace shardlm::model::compress
