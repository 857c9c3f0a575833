// choose_batch (see auto_batch.h).
#include "runtime/auto_batch.h"

#include <algorithm>
#include <string>

#include "core/log.h"
#include "model/autocast.h"

namespace shardlm::runtime {

BatchChoice choose_batch(const RunSettings& s, model::GPT& model, Engine& engine, int world) {
  const int64_t T = s.data.seq_len;
  int64_t B = s.data.batch_size;
  auto fits_gpu = [&](int64_t b) {
    try {
      auto ids = torch::randint(s.model.vocab_size, {b, T},
                                torch::TensorOptions(s.device).dtype(torch::kLong));
      engine.begin_micro_batch(true);
      model::ForwardOptions opts;
      opts.block_runner = engine.block_runner(s.train.activation_checkpointing);
      torch::Tensor loss;
      {
        model::AutocastGuard ac(s.device.type(), s.amp, s.amp != c10::kFloat);
        loss = model::loss(model->forward(ids, opts), ids);
      }
      loss.backward();
      engine.skip_step();
      return true;
    } catch (const c10::Error& e) {
      if (std::string(e.what()).find("out of memory") == std::string::npos) throw;
      engine.skip_step();
      return false;
    }
  };
  if (s.device.is_cuda()) {
    while (B > 1 && !fits_gpu(B)) B /= 2;
  } else if (s.train.memory_budget_mb > 0) {
    // Activation bytes per sample (Korthikanti et al. 2022, eq. 2, scaled to the
    // dtype): T d (34 + 5 H T / d) per layer at 2 bytes, plus logits and their
    // gradient (3 T V at 4 bytes).
    double bytes = s.amp == c10::kFloat ? 4.0 : 2.0;
    double d = s.model.d_model, H = s.model.n_head, L = s.model.n_layer;
    double per_sample =
        L * T * d * (34 + 5 * H * T / d) * bytes / 2 + 3.0 * T * s.model.vocab_size * 4;
    auto mem = engine.memory();
    double free = s.train.memory_budget_mb * 1048576.0 - static_cast<double>(mem.total());
    B = std::max<int64_t>(1, static_cast<int64_t>(free / per_sample));
  }
  const int64_t gb = s.train.global_batch;
  int64_t accum = std::max<int64_t>(1, (gb + B * world - 1) / (B * world));
  B = std::min(B, std::max<int64_t>(1, gb / (accum * world)));
  core::log::info0(
      "auto batch: micro-batch {} x accumulation {} x {} rank(s) = {} rows per step "
      "(asked for {})",
      B, accum, world, B * accum * world, gb);
  return {B, accum};
}

}  // namespace shardlm::runtime
