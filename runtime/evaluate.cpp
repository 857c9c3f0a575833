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
  auto sums = torch::zeros({4}, torch::TensorOptions(device).dtype(torch::kFloat64));
  int64_t n = 0;
  for (; n < batches; ++n) {
    data::Batch b = loader.next();
    // (B, 4) per row: nll, top-1 hits, top-5 hits, targets (eval/lm_metrics.h)
    sums += eval::token_stats(model, b, device, dtype, runner).sum(0).to(device, torch::kFloat64);
  }
  if (group && group->size() > 1) {
    auto f = sums.to(torch::kFloat32);  // on the group's device, as the group takes it
    group->all_reduce(f, parallel::ReduceOp::kSum);
    sums = f.to(torch::kFloat64);
  }
  if (was_training) model->train();
  auto h = sums.to(torch::kCPU);  // the one read
  const double* v = h.data_ptr<double>();
  EvalResult r;
  double tokens = v[3];
  r.tokens = static_cast<int64_t>(std::llround(tokens));
  r.batches = n;
  if (tokens > 0) {
    r.loss = v[0] / tokens;
    r.top1 = v[1] / tokens;
    r.top5 = v[2] / tokens;
  }
  r.perplexity = std::exp(r.loss);
  return r;
}

}  // namespace shardlm::runtime
