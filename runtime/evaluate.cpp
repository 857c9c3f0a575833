// Validation metrics over a loader, reduced over the ranks (see evaluate.h).
#include "runtime/evaluate.h"

#include <cmath>

#include "eval/lm_metrics.h"

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
    // (B, 4) per row: nll, top-1 hits, top-5 hits, targets (eval/lm_metrics.h)
    sums += eval::token_stats(model, b, device, dtype, runner).sum(0);
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
