// Knowledge distillation (Hinton, Vinyals and Dean, "Distilling the Knowledge in
// a Neural Network", 2015): a smaller student GPT learns the teacher's softened
// next-token distributions together with the true next tokens,
//
//   L = alpha * tau^2 * KL(softmax(z_t / tau) || softmax(z_s / tau))
//       + (1 - alpha) * CE(z_s, targets)
//
// averaged over the positions the loss mask keeps; tau^2 keeps the gradient of the
// soft term on the scale of the hard one as tau grows. Teacher and student must
// share the vocabulary (the tokenizer); any other size may differ.
//
// Single process on purpose: the teacher runs forward only, the student is small,
// and this loop stays readable. A distributed run would wrap the student with
// parallel/ as runtime::Trainer does (docs/compression.md).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <vector>

#include "core/config.h"
#include "data/loader.h"
#include "model/gpt.h"

namespace shardlm::model::compress {

struct DistillConfig {
  double temperature = 2.0;  // tau > 0
  double alpha = 0.5;        // weight of the soft (KL) term, in [0, 1]
  int64_t steps = 200;
  double lr = 1e-3;  // AdamW, constant after a short linear warm-up
  int64_t warmup = 10;
  double weight_decay = 0.0;
  double grad_clip = 1.0;  // global norm; 0 = off
  int64_t log_every = 10;
  int64_t seed = 1234;  // student initialisation when it is built from a config

  // Reads the [distill] section.
  static DistillConfig from(const core::ConfigSection& s);
  void validate() const;  // ConfigError naming the wrong field
};

// tau^2 * KL(p_teacher || p_student) at temperature tau, mean over positions where
// loss_mask != 0 (all when undefined). Logits (B, T, V); returns a scalar fp32.
torch::Tensor distill_kl(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                         const torch::Tensor& loss_mask, double temperature);
// The blended loss above; `kl_out` / `ce_out` receive its two terms (detached).
torch::Tensor distill_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                           const torch::Tensor& targets, const torch::Tensor& loss_mask,
                           const DistillConfig& cfg, torch::Tensor* kl_out = nullptr,
                           torch::Tensor* ce_out = nullptr);

struct DistillLog {
  int64_t step = 0;
  double loss = 0, kl = 0, ce = 0;  // of that step's batch; kl is tau^2-scaled
};
using BatchSource = std::function<data::Batch()>;

// cfg.steps AdamW steps on `student`, teacher frozen (eval, no grad). Throws
// ModelError when the vocabularies differ. `on_log` sees every log_every-th step.
std::vector<DistillLog> distill(GPT& teacher, GPT& student, const BatchSource& next_batch,
                                const DistillConfig& cfg,
                                const std::function<void(const DistillLog&)>& on_log = {});
// Mean KL(p_teacher || p_student) at temperature 1 (nats per token) over `batches`.
double mean_kl(GPT& teacher, GPT& student, const std::vector<data::Batch>& batches);

}  // namespace shardlm::model::compress
