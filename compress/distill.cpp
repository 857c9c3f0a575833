// Knowledge distillation: the loss and a single-process training loop (distill.h).
#include "compress/distill.h"

#include <cmath>

#include "core/error.h"
#include "core/log.h"

namespace shardlm::model::compress {

using core::ModelError;
using torch::Tensor;

DistillConfig DistillConfig::from(const core::ConfigSection& s) {
  DistillConfig c;
  c.temperature = s.get("temperature", c.temperature);
  c.alpha = s.get("alpha", c.alpha);
  c.steps = s.get("steps", c.steps);
  c.lr = s.get("lr", c.lr);
  c.warmup = s.get("warmup", c.warmup);
  c.weight_decay = s.get("weight_decay", c.weight_decay);
  c.grad_clip = s.get("grad_clip", c.grad_clip);
  c.log_every = s.get("log_every", c.log_every);
  c.seed = s.get("seed", c.seed);
  return c;
}

void DistillConfig::validate() const {
  using core::config_require;
  config_require(temperature > 0 && std::isfinite(temperature), "temperature",
                 std::to_string(temperature), "a finite number > 0");
  config_require(alpha >= 0 && alpha <= 1, "alpha", std::to_string(alpha), "a weight in [0, 1]");
  config_require(steps > 0, "steps", std::to_string(steps), "a positive integer");
  config_require(lr > 0 && std::isfinite(lr), "lr", std::to_string(lr), "a finite number > 0");
  config_require(warmup >= 0, "warmup", std::to_string(warmup), "an integer >= 0");
  config_require(weight_decay >= 0, "weight_decay", std::to_string(weight_decay), "a number >= 0");
  config_require(grad_clip >= 0, "grad_clip", std::to_string(grad_clip), "a number >= 0 (0 = off)");
  config_require(log_every > 0, "log_every", std::to_string(log_every), "a positive integer");
}

Tensor distill_kl(const Tensor& student_logits, const Tensor& teacher_logits,
                  const Tensor& loss_mask, double temperature) {
  // (B, T, V) each -> scalar
  SHARDLM_CHECK(student_logits.sizes() == teacher_logits.sizes(), ModelError,
                "distill: student logits {} and teacher logits {} differ (the vocabularies "
                "must match)",
                c10::str(student_logits.sizes()), c10::str(teacher_logits.sizes()));
  Tensor ls = at::log_softmax(student_logits / temperature, -1, torch::kFloat);
  Tensor lt = at::log_softmax(teacher_logits.detach() / temperature, -1, torch::kFloat);
  Tensor kl = (lt.exp() * (lt - ls)).sum(-1);  // (B, T)
  Tensor w = loss_mask.defined() ? loss_mask.to(torch::kFloat) : torch::ones_like(kl);
  return (kl * w).sum() / w.sum().clamp_min(1) * (temperature * temperature);
}

Tensor distill_loss(const Tensor& student_logits, const Tensor& teacher_logits,
                    const Tensor& targets, const Tensor& loss_mask, const DistillConfig& cfg,
                    Tensor* kl_out, Tensor* ce_out) {
  Tensor kl = distill_kl(student_logits, teacher_logits, loss_mask, cfg.temperature);
  Tensor ce = loss(student_logits, targets, loss_mask);
  if (kl_out) *kl_out = kl.detach();
  if (ce_out) *ce_out = ce.detach();
  return cfg.alpha * kl + (1.0 - cfg.alpha) * ce;
}

namespace {
Tensor teacher_logits(GPT& teacher, const data::Batch& b) {
  torch::NoGradGuard no_grad;
  ForwardOptions o;
  o.attention_mask = b.attention_mask;
  return teacher->forward(b.input_ids, o);
}
Tensor student_logits(GPT& student, const data::Batch& b) {
  ForwardOptions o;
  o.attention_mask = b.attention_mask;
  return student->forward(b.input_ids, o);
}
}  // namespace

std::vector<DistillLog> distill(GPT& teacher, GPT& student, const BatchSource& next_batch,
                                const DistillConfig& cfg,
                                const std::function<void(const DistillLog&)>& on_log) {
  cfg.validate();
  SHARDLM_CHECK(teacher->config().vocab_size == student->config().vocab_size, ModelError,
                "distill: teacher vocab_size {} != student vocab_size {} (they must share the "
                "tokenizer)",
                teacher->config().vocab_size, student->config().vocab_size);
  teacher->eval();
  student->train();
  torch::optim::AdamW opt(student->parameters(),
                          torch::optim::AdamWOptions(cfg.lr).weight_decay(cfg.weight_decay));
  std::vector<DistillLog> logs;
  for (int64_t step = 1; step <= cfg.steps; ++step) {
    const double lr =
        cfg.warmup > 0 ? cfg.lr * std::min(1.0, static_cast<double>(step) / cfg.warmup) : cfg.lr;
    for (auto& group : opt.param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    data::Batch b = next_batch();
    Tensor t = teacher_logits(teacher, b);
    Tensor kl, ce;
    // Targets at padding are kIgnoreIndex; loss() ignores them through the mask.
    Tensor l = distill_loss(student_logits(student, b), t, b.targets, b.loss_mask, cfg, &kl, &ce);
    opt.zero_grad();
    l.backward();
    if (cfg.grad_clip > 0) torch::nn::utils::clip_grad_norm_(student->parameters(), cfg.grad_clip);
    opt.step();
    DistillLog log{step, l.item<double>(), kl.item<double>(), ce.item<double>()};
    logs.push_back(log);
    if (on_log && (step % cfg.log_every == 0 || step == cfg.steps)) on_log(log);
  }
  student->eval();
  return logs;
}

double mean_kl(GPT& teacher, GPT& student, const std::vector<data::Batch>& batches) {
  torch::NoGradGuard no_grad;
  teacher->eval();
  student->eval();
  double sum = 0;
  for (const auto& b : batches)
    sum += distill_kl(student_logits(student, b), teacher_logits(teacher, b), b.loss_mask, 1.0)
               .item<double>();
  return batches.empty() ? 0.0 : sum / static_cast<double>(batches.size());
}

}  // namespace shardlm::model::compress
