// The Trainer's checkpoints: what goes into one (every unit's parameters and
// Adam moments as ranges of its flat layout, RNG states, loader position, LR
// schedule, loss scaler, early stopping, counters) and how a run continues
// from one written by any world size and ZeRO stage.
#include <chrono>
#include <filesystem>

#include <fmt/format.h>

#include "model/safetensors.h"
#include "core/error.h"
#include "core/log.h"
#include "runtime/trainer_impl.h"

namespace shardlm::runtime {

namespace fs = std::filesystem;
using core::CheckpointError;

std::string Trainer::Impl::unit_name(size_t i) const {
  // ShardedModel's names: the blocks are unit0.., everything else the root.
  return i < static_cast<size_t>(model_cfg.n_layer) ? "unit" + std::to_string(i) : "root";
}

namespace {
nlohmann::json layout_json(const parallel::FlatParams& flat) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : flat.entries())
    out.push_back({{"name", e.name}, {"shape", e.shape}, {"offset", e.offset}});
  return out;
}
}  // namespace

// ---- save ---------------------------------------------------------------------------------

ckpt::Snapshot Trainer::Impl::snapshot() {
  auto& sm = engine->sharded();
  const int W = env.world_size, r = env.rank;
  ckpt::Snapshot snap;
  snap.step = step_;
  nlohmann::json opt_steps = nlohmann::json::object();
  for (size_t i = 0; i < sm.num_units(); ++i) {
    const auto& flat = sm.unit_layout(i);
    ckpt::UnitPiece u;
    u.name = unit_name(i);
    u.numel = flat.numel();
    u.layout = layout_json(flat);
    auto [b, e] = sm.unit_range(i);
    torch::Tensor params = sm.unit_params(i);  // host copy of [b, e)
    parallel::StateDict dense = sm.unit_dense_state(i);
    // At stage 0 every rank holds the whole unit: each saves only its 1/W.
    int64_t lo = b, hi = e;
    if (shard_cfg.zero_stage == 0) {
      int64_t P = flat.padded_numel();
      lo = P * r / W;
      hi = P * (r + 1) / W;
    }
    lo = std::min(lo, u.numel);
    hi = std::min(hi, u.numel);
    u.begin = lo;
    u.end = hi;
    u.params = params.narrow(0, lo - b, hi - lo).clone();
    if (!dense.empty()) {
      u.exp_avg = dense.at("exp_avg").narrow(0, lo - b, hi - lo).clone();
      u.exp_avg_sq = dense.at("exp_avg_sq").narrow(0, lo - b, hi - lo).clone();
      opt_steps[u.name] = dense.at("step").item<int64_t>();
      // 8-bit states: also the exact state, for a resume with the same layout.
      if (opt_cfg.name == "adam8bit")
        for (auto& [k, v] : sm.unit_optimizer(i).state_dict())
          u.raw[k] = v.to(torch::kCPU, false, true);
    }
    snap.units.push_back(std::move(u));
  }
  snap.rank_tensors["rng_cpu"] = at::detail::getDefaultCPUGenerator().get_state();
  if (device.is_cuda())
    snap.rank_tensors["rng_cuda"] = at::globalContext().defaultGenerator(device).get_state();

  std::vector<parallel::StateDict> none;
  nlohmann::json scaler_state = {{"scale", scaler.scale()},
                                 {"clean_steps", scaler.clean_steps()},
                                 {"skipped_steps", scaler.skipped_steps()}};
  snap.state = {{"step", step_},
                {"tokens_seen", tokens_seen},
                {"losses", summary.losses},
                {"model", model_cfg.to_json()},
                {"optimizer", opt_cfg.name},
                {"optimizer_steps", opt_steps},
                {"zero_stage", shard_cfg.zero_stage},
                {"cpu_offload", shard_cfg.cpu_offload},
                {"offload_params", shard_cfg.offload_params},
                {"loader", loader->state().to_json()},
                {"schedule", schedule->state()},
                {"early_stopping", early.state()},
                {"best_val_loss", summary.best_val_loss},
                {"best_step", summary.best_step},
                {"loss_scaler", scaler_state},
                {"clip", clip},
                {"weight_decay", engine->weight_decay()},
                {"micro_batch", micro_batch},
                {"accumulation", train.accumulation},
                {"tokenizer_hash", loader->manifest().tokenizer_hash},
                {"seed", train.seed},
                {"config", nlohmann::json::parse(run_cfg.to_json())}};
  snap.val_loss = last_val_loss;
  return snap;
}

void Trainer::Impl::save_checkpoint(bool async) {
  if (step_ == 0) return;  // nothing trained yet
  // The training loop's stall: the host snapshot plus whatever save() waits for
  // (the previous save in flight, or the whole write when not async).
  auto t0 = std::chrono::steady_clock::now();
  checkpointer->save(snapshot(), async);
  const double stall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  monitor::Event ev;
  ev.kind = monitor::EventKind::kCheckpointSaved;
  ev.step = step_;
  ev.message =
      fmt::format("checkpoint {}{}", ckpt::step_dir_name(step_), async ? " (writing)" : "");
  ev.data = {
      {"path", (fs::path(checkpointer->checkpoints_dir()) / ckpt::step_dir_name(step_)).string()},
      {"stall_s", stall_s},
      {"snapshot_s", stall_s - checkpointer->last_stall_seconds()}};
  mon.sink->event(ev);
  core::log::info0("checkpoint: step {} {} (training waited {:.3f} s, of which {:.3f} s snapshot)",
                   step_, async ? "being written in the background" : "written", stall_s,
                   stall_s - checkpointer->last_stall_seconds());
}

// ---- restore --------------------------------------------------------------------------------

void Trainer::Impl::restore_checkpoint(const std::string& dir) {
  ckpt::CheckpointReader reader(dir);
  const auto& st = reader.manifest().at("state");
  // The same architecture, or nothing fits.
  model::ModelConfig saved = model::ModelConfig::from_json(st.at("model"));
  nlohmann::json a = saved.to_json(), b = model_cfg.to_json();
  for (const auto& [k, v] : b.items())
    SHARDLM_CHECK(a.contains(k) && a[k] == v, CheckpointError,
                  "{}: a checkpoint of another model configuration: model.{} is {} there, {} here",
                  dir, k, a.contains(k) ? a[k].dump() : "absent", v.dump());

  auto& sm = engine->sharded();
  const bool same_layout = reader.world_size() == env.world_size &&
                           st.at("zero_stage").get<int64_t>() == shard_cfg.zero_stage &&
                           st.at("optimizer").get<std::string>() == opt_cfg.name;
  for (size_t i = 0; i < sm.num_units(); ++i) {
    std::string name = unit_name(i);
    const auto& flat = sm.unit_layout(i);
    SHARDLM_CHECK(reader.unit_numel(name) == flat.numel(), CheckpointError,
                  "{}: unit '{}' has {} elements there, {} here", dir, name,
                  reader.unit_numel(name), flat.numel());
    auto [lo, hi] = sm.unit_range(i);
    int64_t end = std::min(hi, flat.numel());
    auto read = [&](const char* what) {
      auto t = torch::zeros({hi - lo}, torch::kFloat);  // padding stays zero
      if (end > lo) t.narrow(0, 0, end - lo).copy_(reader.read_range(name, what, lo, end));
      return t;
    };
    torch::Tensor params = read("params");
    parallel::StateDict opt;
    bool dense = true;
    if (reader.has_optimizer_state(name)) {
      auto raw = same_layout && opt_cfg.name == "adam8bit" ? reader.unit_raw(env.rank, name)
                                                           : std::map<std::string, torch::Tensor>{};
      if (!raw.empty()) {
        opt = raw;
        dense = false;
      } else {
        opt["exp_avg"] = read("exp_avg");
        opt["exp_avg_sq"] = read("exp_avg_sq");
        opt["step"] = torch::tensor(st.at("optimizer_steps").at(name).get<int64_t>());
      }
    }
    sm.load_unit(i, params, opt.empty() ? nullptr : &opt, dense);
  }
  sm.finish_load();

  step_ = st.at("step").get<int64_t>();
  tokens_seen = st.at("tokens_seen").get<int64_t>();
  tokens_at_start = tokens_seen;
  // The report's best so far (checkpoints before this field: unknown until the next best).
  summary.best_val_loss = st.value("best_val_loss", summary.best_val_loss);
  summary.best_step = st.value("best_step", summary.best_step);
  summary.losses = st.at("losses").get<std::vector<double>>();
  summary.steps_done = step_;
  loader->load_state(data::LoaderState::from_json(st.at("loader")));
  const std::string changed = schedule->load_state(st.at("schedule"));
  if (!changed.empty())
    core::log::warn0(
        "resume: the LR schedule's configuration changed ({}); from step {} the LR follows the "
        "new schedule ({:.3g} now) instead of the saved one",
        changed, step_, schedule->at(step_));
  early.load_state(st.at("early_stopping"));
  parallel::StateDict sc = {
      {"scale", torch::tensor(st.at("loss_scaler").at("scale").get<double>(), torch::kDouble)},
      {"clean_steps", torch::tensor(st.at("loss_scaler").at("clean_steps").get<int64_t>())},
      {"skipped_steps", torch::tensor(st.at("loss_scaler").at("skipped_steps").get<int64_t>())}};
  scaler.load_state_dict(sc);
  clip = st.at("clip").get<double>();
  engine->set_weight_decay(st.at("weight_decay").get<double>());
  // The RNG continues exactly on the same world; otherwise a fresh stream per rank.
  if (reader.world_size() == env.world_size) {
    auto rt = reader.rank_tensors(env.rank);
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    gen.set_state(rt.at("rng_cpu"));
    if (device.is_cuda() && rt.count("rng_cuda")) {
      at::Generator g = at::globalContext().defaultGenerator(device);
      g.set_state(rt.at("rng_cuda"));
    }
  } else {
    torch::manual_seed(static_cast<uint64_t>(train.seed) + 7919ULL * step_ + 1000003ULL * env.rank);
  }
  core::log::info0(
      "resumed from {} at step {} (saved by {} rank(s), ZeRO-{}; now {} rank(s), ZeRO-{})", dir,
      step_, reader.world_size(), st.at("zero_stage").get<int64_t>(), env.world_size,
      shard_cfg.zero_stage);
}

void Trainer::Impl::init_from_safetensors(const std::string& path) {
  model::GPT src = model::load_safetensors(path);
  nlohmann::json a = src->config().to_json(), b = model_cfg.to_json();
  for (const auto& [k, v] : b.items())
    SHARDLM_CHECK(a.contains(k) && a[k] == v, CheckpointError,
                  "{}: model.{} is {} there, {} in this run's configuration", path, k,
                  a.contains(k) ? a[k].dump() : "absent", v.dump());
  torch::NoGradGuard no_grad;
  auto from = src->named_parameters();
  for (auto& p : model->named_parameters()) {
    const torch::Tensor* s = from.find(p.key());
    SHARDLM_CHECK(s, CheckpointError, "{}: no tensor for parameter {}", path, p.key());
    p.value().copy_(*s);
  }
  core::log::info0("initialised the model from {}", path);
}

}  // namespace shardlm::runtime
