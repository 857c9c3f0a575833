// choose_batch (see auto_batch.h): the arithmetic of runtime/batch_size.h on
// the memory this rank has, then (on a GPU) one trial step that confirms it.
#include "runtime/auto_batch.h"

#include <algorithm>
#include <string>

#include "core/log.h"
#include "parallel/device_memory.h"
#include "runtime/batch_size.h"

namespace shardlm::runtime {

namespace {
// One forward and backward of `b` rows through the engine, skipped: false
// when the device runs out of memory.
bool trial_step_fits(const RunSettings& s, model::GPT& model, Engine& engine, int64_t b) {
  try {
    auto ids = torch::randint(s.model.vocab_size, {b, s.data.seq_len},
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
}
}  // namespace

BatchChoice choose_batch(const RunSettings& s, model::GPT& model, Engine& engine, int world) {
  int64_t B = s.data.batch_size;
  ActivationOptions act;
  act.bytes = s.amp == c10::kFloat ? 4.0 : 2.0;
  act.fused_attention = s.device.is_cuda() && model::fused_attention_available();
  act.checkpointing = s.train.activation_checkpointing;
  const double per_sample = activation_bytes_per_sample(s.model, s.data.seq_len, act);
  int64_t free_bytes = -1;
  if (s.device.is_cuda()) {
    // What the driver has free plus what the caching allocator holds unused.
    if (auto m = parallel::cuda_memory(s.device.has_index() ? s.device.index() : 0))
      free_bytes = m->free + (m->reserved - m->allocated);
  } else if (s.train.memory_budget_mb > 0) {
    free_bytes = s.train.memory_budget_mb * 1048576 - engine.memory().total();
  }
  if (free_bytes >= 0) B = std::max<int64_t>(1, max_micro_batch(free_bytes, per_sample));
  // The estimate is confirmed (and halved while it does not fit) on a GPU.
  if (s.device.is_cuda())
    while (B > 1 && !trial_step_fits(s, model, engine, B)) B /= 2;
  BatchPlan plan = plan_batch(B, s.train.global_batch, world);
  core::log::info0(
      "auto batch: {} MB free, {:.1f} MB of activations per sample: micro-batch {} x "
      "accumulation {} x {} rank(s) = {} rows per step (asked for {})",
      free_bytes >= 0 ? free_bytes >> 20 : -1, per_sample / 1048576, plan.micro_batch,
      plan.accumulation, world, plan.rows() * world, s.train.global_batch);
  return {plan.micro_batch, plan.accumulation};
}

}  // namespace shardlm::runtime
