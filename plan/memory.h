// Bytes per rank: model states (a mirror of parallel::ShardedModel's buffers
// at rest and at their peaks) and activations (what autograd keeps between
// forward and backward, and the transient peak of the backward pass).
//
// Model states follow sharded_model.cpp buffer by buffer: fp32 parameters
// (the module computes on them; autocast casts per op), fp32 gradients, the
// optimizer's states over the range it steps, and with CPU offload an fp32
// master copy and a gradient copy on the host. Note the ZeRO-2/3 peak: every
// unit's full gradient buffer is allocated at begin_micro_batch and freed
// only when the reductions finish, so the peak holds them all (layer
// streaming allocates them unit by unit).
//
// Activations are counted tensor by tensor for model/gpt.cpp's forward (the
// list is in memory.cpp and docs/planning.md); the byte width of each tensor
// class depends on the precision and the device (ActivationDtypes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "plan/layout.h"

namespace shardlm::plan {

// What the model states depend on (the [parallel] and [optimizer] sections).
struct ShardingSpec {
  int zero_stage = 0;
  bool cpu_offload = false;
  bool offload_params = false;  // layer streaming (stage 3 + offload)
  bool prefetch = true;
  bool gpu = false;  // streaming copies shards through a device staging buffer on a GPU
  int64_t accumulation = 1;
  std::string optimizer = "adamw";  // adamw | cpu_adam | adam8bit
  int64_t block_size = 256;         // adam8bit
  int64_t min_8bit_numel = 4096;    // adam8bit
  bool embedding_fp32_state = false;
};

// parallel::ShardedModel::Memory, predicted.
struct StateBytes {
  int64_t params = 0, grads = 0, optimizer = 0, host = 0;
  int64_t device() const { return params + grads + optimizer; }
  int64_t total() const { return params + grads + optimizer + host; }
};

struct ModelStates {
  StateBytes rest;  // between steps (after the first step)
  StateBytes peak;  // each field's own peak during a step, as peak_memory() samples it
};

// Bytes of optimizer state over `segs` (one rank's range of one unit).
int64_t optimizer_state_bytes(const ShardingSpec& spec, const std::vector<Segment>& segs);

// Model states of `rank` in a world of `world` ranks.
ModelStates model_states(const std::vector<UnitInfo>& units, const ShardingSpec& spec, int world,
                         int rank);
// The largest model states over the ranks (they differ only through 8-bit Adam's
// block layout at shard boundaries).
ModelStates model_states_max(const std::vector<UnitInfo>& units, const ShardingSpec& spec,
                             int world);

// ---- activations ---------------------------------------------------------------------

// Bytes per element of each class of saved tensor.
struct ActivationDtypes {
  std::string name;
  int residual = 4;     // the residual stream (block inputs, layer-norm inputs)
  int norm_out = 4;     // layer-norm outputs as the next matmul keeps them
  int matmul_out = 4;   // q, k, v and the attention output as the matmuls produce them
  int probs = 4;        // attention probabilities kept for backward (all copies)
  int probs_grad = 8;   // the transient gradients of probabilities and scores in backward
  int mlp = 4;          // feed-forward hidden (before and after the activation)
  int logits = 4;       // the head's output
  int weight_copy = 0;  // a low-precision copy of each matmul weight that autocast keeps
  int mask = 4;         // a dropout mask element
};
// fp32 everywhere; CUDA autocast (bf16/fp16): fp32 residual stream, layer norms
// and softmax in fp32, matmuls in 16 bits, weight copies cached; CPU autocast
// (LibTorch's CPU policy; bf16 only).
ActivationDtypes activation_dtypes(const std::string& precision, bool gpu);

struct ActivationSpec {
  int64_t micro_batch = 1, seq_len = 128;
  std::string precision = "fp32";
  bool gpu = false;
  bool checkpointing = false;
  bool fused_attention = false;  // scaled_dot_product_attention (LibTorch >= 2): no (T, T) scores
  // Autocast caches each weight's low-precision copy until the autocast scope
  // ends: CUDA always, the CPU from LibTorch 2 on (1.13 casts CPU weights anew).
  bool weight_cache = true;
};

struct ActivationBytes {
  int64_t per_layer = 0;         // kept per block without checkpointing
  int64_t per_layer_ckpt = 0;    // kept per block with checkpointing (its input)
  int64_t attention_scores = 0;  // of per_layer: the (B, H, T, T) probabilities
  int64_t root = 0;              // embeddings, final norm, head and loss
  int64_t weight_copies = 0;     // autocast's low-precision weight copies (all layers)
  int64_t saved = 0;             // held at the end of forward (after the loss)
  int64_t peak = 0;              // the largest live amount during forward + backward
  std::string peak_at;           // which moment sets the peak
};

ActivationBytes activation_bytes(const model::ModelConfig& cfg, const ActivationSpec& spec);

}  // namespace shardlm::plan
