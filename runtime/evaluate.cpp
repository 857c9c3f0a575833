// Validation metrics over a loader, reduced over the ranks (see evaluate.h).
#include "runtime/evaluate.h"

#include <cmath>

namespace shardlm::runtime {

EvalResult evaluate(model::GPT& model, data::Loader& loader, int64_t batches,
                    parallel::ProcessGroup* group, torch::Device device, c10::ScalarType dtype,
                    model::BlockRunner runner) {
  bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  // Sums: loss (nats), top-1 hits, top-5 hits, tokens. fp64 so that long
  // validations do not lose precision.
  auto sums = torch::zeros({4}, torch::kFloat64);
  int64_t n = 0;
  for (; n < batches; ++n) {
    data::Batch b = loader.next();
    auto ids = b.input_ids.to(device);
    auto targets = b.targets.to(device);  // (B, L), kIgnoreIndex at padding
    auto mask = b.loss_mask.to(device);   // (B, L) float
    model::ForwardOptions opts;
    opts.block_runner = runner;
    if (b.attention_mask.defined() && !b.attention_mask.all().item<bool>())
      opts.attention_mask = b.attention_mask.to(device);
    torch::Tensor logits;
    {
      model::AutocastGuard ac(device.type(), dtype, dtype != c10::kFloat);
      logits = model->forward(ids, opts);  // (B, L, V)
    }
    auto lp = model::log_probs(logits);  // (B, L, V) fp32
    auto safe = targets.clamp_min(0);
    auto nll = -lp.gather(-1, safe.unsqueeze(-1)).squeeze(-1);  // (B, L)
    auto top5 = std::get<1>(lp.topk(5, -1));                    // (B, L, 5)
    auto hit1 = (top5.select(-1, 0) == safe).to(torch::kFloat32);
    auto hit5 = (top5 == safe.unsqueeze(-1)).any(-1).to(torch::kFloat32);
    sums[0] += (nll * mask).sum().to(torch::kCPU).to(torch::kFloat64);
    sums[1] += (hit1 * mask).sum().to(torch::kCPU).to(torch::kFloat64);
    sums[2] += (hit5 * mask).sum().to(torch::kCPU).to(torch::kFloat64);
    sums[3] += mask.sum().to(torch::kCPU).to(torch::kFloat64);
  }
  if (group && group->size() > 1) {
    auto f = sums.to(torch::kFloat32);  // the MPI group reduces fp32/fp16/bf16
    group->all_reduce(f, parallel::ReduceOp::kSum);
    sums = f.to(torch::kFloat64);
  }
  if (was_training) model->train();
  EvalResult r;
  double tokens = sums[3].item<double>();
  r.tokens = static_cast<int64_t>(std::llround(tokens));
  r.batches = n;
  if (tokens > 0) {
    r.loss = sums[0].item<double>() / tokens;
    r.top1 = sums[1].item<double>() / tokens;
    r.top5 = sums[2].item<double>() / tokens;
  }
  r.perplexity = std::exp(r.loss);
  return r;
}

}  // namespace shardlm::runtime
