// The Trainer's checkpoints: the model (runtime/model_checkpoint.h), every
// resumable part (Impl::resumables(), runtime/state.h) and what describes the
// run, and how a run continues from one written by any world size and ZeRO stage.
#include <chrono>
#include <filesystem>

#include <fmt/format.h>

#include "core/error.h"
#include "core/json_int.h"
#include "core/log.h"
#include "model/safetensors.h"
#include "runtime/model_checkpoint.h"
#include "runtime/trainer_impl.h"

namespace shardlm::runtime {

namespace fs = std::filesystem;
using core::CheckpointError;

// ---- save ---------------------------------------------------------------------------------

void Trainer::Impl::save_checkpoint(bool async) {
  read_log(false, false);  // the losses and tokens of the steps not yet read
  const int64_t n = counters.step;
  if (n == 0) return;  // nothing trained yet
  // The training loop's stall: the host snapshot plus whatever save() waits for
  // (the previous save in flight, or the whole write when not async).
  auto t0 = std::chrono::steady_clock::now();
  ckpt::Snapshot snap;
  snap.step = n;
  ModelPieces pieces = model_pieces(engine->sharded(), s.opt.name);
  snap.units = std::move(pieces.units);
  snap.rank_tensors = rng_states(s.device);
  snap.state = save_states(resumables());
  // What describes the run (read back to check and to reshard, not restored).
  snap.state.update({{"step", n},
                     {"model", s.model.to_json()},
                     {"optimizer", s.opt.name},
                     {"optimizer_steps", pieces.optimizer_steps},
                     {"zero_stage", s.shard.zero_stage},
                     {"cpu_offload", s.shard.cpu_offload},
                     {"offload_params", s.shard.offload_params},
                     {"tokenizer_hash", data->manifest().tokenizer_hash},
                     {"seed", s.train.seed},
                     {"config", nlohmann::json::parse(s.run.to_json())}});
  snap.val_loss = validator->last_loss();
  checkpointer->save(std::move(snap), async);
  const double stall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double snapshot_s = stall_s - checkpointer->last_stall_seconds();
  const std::string name = ckpt::step_dir_name(n);
  reporter->event(monitor::EventKind::kCheckpointSaved, n,
                  fmt::format("checkpoint {}{}", name, async ? " (writing)" : ""),
                  {{"path", (fs::path(checkpointer->checkpoints_dir()) / name).string()},
                   {"stall_s", stall_s},
                   {"snapshot_s", snapshot_s}});
  core::log::info0("checkpoint: step {} {} (training waited {:.3f} s, of which {:.3f} s snapshot)",
                   n, async ? "being written in the background" : "written", stall_s, snapshot_s);
}

// ---- restore --------------------------------------------------------------------------------

void Trainer::Impl::restore_checkpoint(const std::string& dir) {
  ckpt::CheckpointReader reader(dir);
  const auto& st = reader.manifest().at("state");
  require_same_model(st.at("model"), s.model, dir);  // the same architecture, or nothing fits
  const auto saved_stage = core::json_int<int64_t, core::CheckpointError>(
      st.at("zero_stage"), dir + ": state.zero_stage");
  const bool same_layout = reader.world_size() == env.world_size &&
                           saved_stage == s.shard.zero_stage &&
                           st.at("optimizer").get<std::string>() == s.opt.name;
  load_model_pieces(reader, engine->sharded(), s.opt.name, st.at("optimizer_steps"), same_layout);
  load_states(resumables(), st, dir);
  restore_rng(reader, env.rank, env.world_size, s.device, s.train.seed, counters.step);
  core::log::info0(
      "resumed from {} at step {} (saved by {} rank(s), ZeRO-{}; now {} rank(s), ZeRO-{})", dir,
      counters.step, reader.world_size(), saved_stage, env.world_size, s.shard.zero_stage);
}

void Trainer::Impl::init_from_safetensors(const std::string& path) {
  model::GPT src = model::load_safetensors(path);
  require_same_model(src->config().to_json(), s.model, path);
  torch::NoGradGuard no_grad;
  auto from = src->named_parameters();
  for (auto& p : model->named_parameters()) {
    const torch::Tensor* t = from.find(p.key());
    SHARDLM_CHECK(t, CheckpointError, "{}: no tensor for parameter {}", path, p.key());
    p.value().copy_(*t);
  }
  core::log::info0("initialised the model from {}", path);
}

}  // namespace shardlm::runtime
