// The training loop (see trainer.h). Setup is the constructor; one optimizer
// step is Impl::step(); run() is the loop around it: controls and stop signals
// at the logged steps, validation, checkpoints. Checkpoints are in
// trainer_ckpt.cpp.
//
// Host and device: a step never waits for the device. Its loss, token count
// and gradient norm stay on the device (StepLog) and are read once, together,
// at the next logged step (train.log_every), where the ranks also agree on
// stop signals and control commands. The fp16 loss scaler is the exception:
// its skip-or-step verdict is read every step.
#include "runtime/trainer.h"
#include "runtime/trainer_impl.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_int.h"
#include "core/log.h"
#include "parallel/groups.h"
#include "parallel/mpi_group.h"
#include "runtime/auto_batch.h"
#include "runtime/signals.h"

namespace shardlm::runtime {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
// Seconds since `t`, and `t` moved to now: one phase of a step.
double lap(Clock::time_point& t) {
  auto now = Clock::now();
  double s = std::chrono::duration<double>(now - t).count();
  t = now;
  return s;
}
torch::Tensor scalar(double v, torch::Device device) {
  return torch::full({1}, v, torch::TensorOptions(device).dtype(torch::kDouble));
}
}  // namespace

// ---- setup --------------------------------------------------------------------

Trainer::Impl::Impl(const core::RunConfig& cfg, const core::Env& e, const core::MpiComm& comm,
                    const GroupDecorator& decorate)
    : s(RunSettings::read(cfg, e)), env(e), scaler(s.scaler) {
  const int per_device =
      s.device.is_cuda()
          ? std::max(1, env.local_size / std::max<int>(1, torch::cuda::device_count()))
          : 1;
  group = parallel::make_process_group(s.shard.backend, s.device, comm.native(), per_device,
                                       s.shard.group_options());
  if (decorate) group = decorate(group);
  SHARDLM_CHECK(group->size() == env.world_size && group->rank() == env.rank, core::ConfigError,
                "the communicator (rank {} of {}) does not match the environment (rank {} of {})",
                group->rank(), group->size(), env.rank, env.world_size);
  fs::create_directories(s.train.run_dir);
  if (env.is_root())
    core::write_file_atomic<core::ConfigError>((fs::path(s.train.run_dir) / "config.toml").string(),
                                               s.run.to_toml());

  // The same seed on every rank gives the same initial model (rank 0's is
  // broadcast anyway); dropout differs per rank through the rank offset.
  torch::manual_seed(static_cast<uint64_t>(s.train.seed));
  model = model::GPT(s.model);
  if (!s.train.init_from.empty()) init_from_safetensors(s.train.init_from);
  engine = std::make_unique<Engine>(model, s.shard, s.opt, group, s.device);
  torch::manual_seed(static_cast<uint64_t>(s.train.seed) + 1000003ULL * env.rank);
  model->train();
  apply_trainable(0);

  data = std::make_unique<TrainData>(s.data, env.rank, env.world_size);
  if (s.train.auto_batch) {
    BatchChoice b = choose_batch(s, model, *engine, env.world_size);
    data->set_batch_size(b.micro_batch);
    s.train.accumulation = b.accumulation;
  }
  validator = std::make_unique<Validator>(s.val, data->config(), env, s.train.run_dir);
  auto tokenizer = find_data_tokenizer(s.train.tokenizer, s.data.path, data->manifest(), *group);
  schedule = std::make_unique<LrSchedule>(
      s.train.schedule, s.opt.lr,
      s.train.schedule.total_steps > 0 ? s.train.schedule.total_steps : s.train.steps);
  reporter = std::make_unique<Reporter>(s, env, *group);
  Controls::Targets targets{model,
                            engine.get(),
                            schedule.get(),
                            data.get(),
                            &validator->early_stopping(),
                            reporter.get(),
                            &s.train.accumulation,
                            s.device};
  controls = std::make_unique<Controls>(targets, env, s.train.grad_clip, std::move(tokenizer));

  // Checkpoints talk between ranks from a thread of their own (async saves):
  // a channel of their own, beside the training group's, watched as it is (a
  // rank that stalls during a save ends the job within collective_timeout_s).
  parallel::ProcessGroupOptions ckpt_channel = s.shard.group_options();
  ckpt_channel.name = "checkpoints";
  checkpointer = std::make_unique<ckpt::Checkpointer>(
      s.ckpt, s.train.run_dir,
      std::make_shared<parallel::MpiGroup>(comm.native(), ckpt_channel, torch::kCPU));
  if (!s.ckpt.resume.empty()) {
    // Rank 0 chooses (verifying files), every rank loads the same checkpoint.
    std::string chosen;
    if (env.is_root())
      chosen = ckpt::resolve_checkpoint(s.train.run_dir, s.ckpt.resume).value_or("");
    chosen = core::broadcast_string(*group, chosen);
    if (chosen.empty())
      core::log::info0("no checkpoint in {} yet: starting from step 0", s.train.run_dir);
    else
      restore_checkpoint(chosen);
  }
  log.tokens_at_start = counters.tokens_seen;
  reporter->run_info(s, data->batch_size(), s.train.accumulation);
}

// What a checkpoint holds beside the model: one entry per resumable part.
std::vector<StateSlot> Trainer::Impl::resumables() {
  StateSlot sched{"schedule", [this] { return schedule->state(); },
                  [this](const nlohmann::json& j) {
                    const std::string changed = schedule->load_state(j);
                    if (!changed.empty())
                      core::log::warn0(
                          "resume: the LR schedule's configuration changed ({}); from step {} the "
                          "LR follows the new schedule ({:.3g} now) instead of the saved one",
                          changed, counters.step, schedule->at(counters.step));
                  }};
  StateSlot scale{"loss_scaler",
                  [this] {
                    return nlohmann::json{{"scale", scaler.scale()},
                                          {"clean_steps", scaler.clean_steps()},
                                          {"skipped_steps", scaler.skipped_steps()}};
                  },
                  [this](const nlohmann::json& j) {
                    auto steps = [&j](const char* k) {
                      return core::json_int<int64_t, core::CheckpointError>(
                          j.at(k), std::string("loss_scaler.") + k);
                    };
                    scaler.load_state_dict(
                        {{"scale", torch::tensor(j.at("scale").get<double>(), torch::kDouble)},
                         {"clean_steps", torch::tensor(steps("clean_steps"))},
                         {"skipped_steps", torch::tensor(steps("skipped_steps"))}});
                  }};
  return {StateSlot::of(counters),
          data->state_slot(),
          sched,
          scale,
          StateSlot::of(validator->early_stopping()),
          StateSlot::of(*controls)};
}

void Trainer::Impl::apply_trainable(int64_t step) {
  int64_t k = s.train.trainable_blocks(step, s.model.n_layer);
  int64_t before = engine->trainable_top_blocks();
  if (k == before) return;
  engine->set_trainable_top_blocks(k);
  if (before >= 0 || k < s.model.n_layer)
    core::log::info0(
        "layer-wise training: from step {} the top {} of {} blocks train ({} parameters)", step, k,
        s.model.n_layer, engine->num_trainable());
}

// ---- one optimizer step -----------------------------------------------------------

bool Trainer::Impl::step() {
  const int64_t n = counters.step;
  StepRecord& r = log.last;
  r = StepRecord{};
  r.step = n;
  auto t0 = Clock::now(), t = t0;
  std::vector<data::Batch> batches = data->next(s.train.accumulation);
  r.time.data = lap(t);
  for (const auto& b : batches) r.local_tokens += b.tokens;
  // The loss of every micro-batch is weighted by its share of the global
  // batch's real tokens, so that any world size, accumulation and padding give
  // the same loss and gradient for the same global batch.
  auto tokens = torch::full({1}, static_cast<float>(r.local_tokens),
                            torch::TensorOptions(s.device).dtype(torch::kFloat));
  group->all_reduce(tokens, parallel::ReduceOp::kSum);
  tokens = tokens.clamp_min(1.0f).to(torch::kDouble);
  r.lr = schedule->at(n);
  torch::Tensor loss_sum = forward_backward(batches, tokens);  // forward, loss, backward
  t = Clock::now();
  // The scaler's verdict is agreed over the ranks (shards differ at ZeRO >= 1).
  const bool finite = !scaler.config().enabled || scaler.unscale_(engine->grads(), group.get());
  r.time.reduce = lap(t);
  torch::Tensor norm;
  if (finite) {
    norm = engine->step(r.lr, controls->clip()).reshape({1}).to(torch::kDouble);  // clip, optimizer
  } else {
    engine->skip_step();
    norm = scalar(NAN, s.device);
  }
  r.skipped = scaler.config().enabled ? !scaler.update(!finite) : false;
  r.time.optimizer = lap(t);
  // The global mean loss: this rank's sum of token losses, over all ranks.
  auto ls = loss_sum.to(torch::kFloat);
  group->all_reduce(ls, parallel::ReduceOp::kSum);
  log.losses.push_back(ls.to(torch::kDouble) / tokens);
  log.tokens = log.tokens.defined() ? log.tokens + tokens : tokens;
  log.last_norm = norm;
  log.last_tokens = tokens;
  r.time.total = std::chrono::duration<double>(Clock::now() - t0).count();
  log.seconds += r.time.total;
  ++counters.step;
  return n % s.train.log_every == 0 || n + 1 == s.train.steps;
}

// Forward and backward of every micro-batch; returns this rank's sum of token
// losses (1,) fp64 on the device. Records the forward and backward times.
torch::Tensor Trainer::Impl::forward_backward(std::vector<data::Batch>& batches,
                                              const torch::Tensor& tokens) {
  auto runner = engine->block_runner(s.train.activation_checkpointing);
  auto loss_sum = scalar(0, s.device);
  double t_fwd = 0, t_bwd = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    data::Batch& b = batches[i];
    auto t = Clock::now();
    engine->begin_micro_batch(i + 1 == batches.size());
    model::ForwardOptions opts;
    opts.block_runner = runner;
    if (b.attention_mask.defined() && !b.attention_mask.all().item<bool>())  // a host tensor
      opts.attention_mask = b.attention_mask.to(s.device);
    torch::Tensor loss;
    {
      model::AutocastGuard ac(s.device.type(), s.amp, s.amp != c10::kFloat);
      auto logits = model->forward(b.input_ids.to(s.device), opts);  // (B, L, V)
      loss = model::loss(logits, b.targets.to(s.device), b.loss_mask.to(s.device));
    }
    // mean over this micro-batch's tokens -> its share of the global mean; the
    // engine averages over ranks, hence the factor world_size.
    const double tw = static_cast<double>(b.tokens);
    auto weight = (scalar(tw * env.world_size, s.device) / tokens).to(torch::kFloat).reshape({});
    loss_sum.add_(loss.detach().to(torch::kDouble) * tw);
    t_fwd += lap(t);
    auto scaled = loss * weight;
    if (scaler.config().enabled) scaled = scaler.scale_loss(scaled);
    scaled.backward();
    t_bwd += lap(t);
  }
  log.last.time.forward = t_fwd;
  log.last.time.backward = t_bwd;
  return loss_sum;
}

// ---- the logged step: one read, metrics, agreement ---------------------------------

void Trainer::Impl::read_log(bool report, bool agree) {
  std::vector<torch::Tensor> parts = log.losses;
  const size_t k = parts.size();
  if (k > 0) parts.push_back(log.tokens);
  if (report) parts.insert(parts.end(), {log.last_norm, log.last_tokens});
  if (agree) {
    // Every rank's stop signal (max) and the length of rank 0's commands.
    log.commands = controls->poll();
    bool stop = pending_stop_signal() != StopSignal::kNone || controls->stop_requested();
    auto flags =
        torch::tensor({stop ? 1.0 : 0.0, static_cast<double>(log.commands.size())}, torch::kDouble)
            .to(s.device);
    group->all_reduce(flags, parallel::ReduceOp::kMax);
    parts.push_back(flags);
  }
  if (parts.empty()) return;
  auto host = torch::cat(parts).to(torch::kCPU);  // the one device-to-host read
  const double* v = host.data_ptr<double>();
  for (size_t i = 0; i < k; ++i) {
    const int64_t at = counters.step - static_cast<int64_t>(k) + static_cast<int64_t>(i);
    SHARDLM_CHECK(std::isfinite(v[i]) || scaler.config().enabled, core::ModelError,
                  "the loss is {} at step {}: lower optimizer.lr, set train.grad_clip, or use "
                  "precision = \"fp16\" with loss scaling",
                  v[i], at + 1);
    counters.losses.push_back(v[i]);
  }
  size_t at = k;
  if (k > 0) counters.tokens_seen += static_cast<int64_t>(v[at++]);
  log.losses.clear();
  log.tokens = torch::Tensor();
  if (report) {
    StepRecord& r = log.last;
    r.loss = counters.losses.back();
    r.grad_norm = v[at++];
    r.global_tokens = v[at++];
    r.tokens_seen = counters.tokens_seen;
    reporter->step(r, controls->knobs(), scaler, *engine);
  }
  if (agree) {
    log.stop = v[at++] > 0;
    log.command_bytes = static_cast<int64_t>(v[at++]);
    log.agreed = true;
  }
}

// At a step boundary after an agreement: apply the commands, stop when asked
// (a signal on any rank, or a stop command: the same commands on every rank).
bool Trainer::Impl::boundary() {
  log.agreed = false;
  if (log.command_bytes > 0) {
    std::string cmds = core::broadcast_string(*group, log.commands);
    controls->apply_all(cmds, counters.step);
  }
  if (!log.stop && !controls->stop_requested()) return false;
  summary.stopped = true;
  StopSignal sig = pending_stop_signal();
  core::log::info0("stopping at step {} ({})", counters.step,
                   sig == StopSignal::kNone ? "stop command" : to_string(sig));
  save_checkpoint(false);
  return true;
}

// ---- validation ----------------------------------------------------------------------

void Trainer::Impl::validate_now(bool final) {
  auto out = validator->run(counters.step, model, *engine, *group, s.device, s.amp);
  counters.final_val_loss = out.result.loss;
  if (out.best) {
    counters.best_val_loss = out.result.loss;
    counters.best_step = counters.step;
  }
  reporter->validation(counters.step, out.result, out.best, final);
}

// ---- the loop ----------------------------------------------------------------------------

int Trainer::Impl::run() {
  install_stop_handlers();
  reporter->event(monitor::EventKind::kRunStarted, counters.step, "training started");
  while (counters.step < s.train.steps) {
    if (!log.agreed) read_log(false, true);  // before the first step, and while paused
    if (boundary()) break;
    if (controls->paused()) {
      // A save asked for while paused happens now: the weights a viewer is looking at.
      if (controls->take_save_request()) save_checkpoint(false);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    apply_trainable(counters.step);
    if (step()) read_log(/*report=*/true, /*agree=*/true);
    const int64_t n = counters.step;
    const bool periodic = s.ckpt.every > 0 && n % s.ckpt.every == 0 && n < s.train.steps;
    if (s.val.every > 0 && n % s.val.every == 0 && n < s.train.steps) {
      validate_now(false);
      if (validator->should_stop()) {
        summary.early_stopped = true;
        core::log::info0("{}", validator->stop_reason(n));
        reporter->event(monitor::EventKind::kEarlyStop, n, "early stop");
        break;
      }
    }
    // After validation, so that keep_best sees this step's validation loss.
    if (periodic || controls->take_save_request()) save_checkpoint(s.ckpt.async);
  }
  read_log(false, false);
  // The final validation, unless this step has just been validated (early stop).
  if (!summary.stopped && validator->last_step() != counters.step) validate_now(true);
  if (!summary.stopped && s.ckpt.save_final) save_checkpoint(false);
  checkpointer->wait();
  summary.steps_done = counters.step;
  summary.losses = counters.losses;
  summary.final_val_loss = counters.final_val_loss;
  summary.best_val_loss = counters.best_val_loss;
  summary.best_step = counters.best_step;
  summary.tokens_per_s =
      log.seconds > 0
          ? static_cast<double>(counters.tokens_seen - log.tokens_at_start) / log.seconds
          : 0;
  nlohmann::json report = {{"steps", summary.steps_done},
                           {"final_val_loss", summary.final_val_loss},
                           {"best_val_loss", summary.best_val_loss},
                           {"best_step", summary.best_step},
                           {"early_stopped", summary.early_stopped},
                           {"tokens_per_s", summary.tokens_per_s}};
  std::string table = validator->write_report(report);
  if (!table.empty()) reporter->message("validation report:\n" + table);
  reporter->event(summary.stopped ? monitor::EventKind::kStopped : monitor::EventKind::kRunFinished,
                  counters.step, summary.stopped ? "stopped" : "finished");
  reporter->finish();
  StopSignal sig = pending_stop_signal();
  return summary.stopped && (sig == StopSignal::kTerminate || sig == StopSignal::kPreempt)
             ? kExitStoppedBySignal
             : 0;
}

// ---- public -------------------------------------------------------------------------------

Trainer::Trainer(const core::RunConfig& cfg, const core::Env& env, const core::MpiComm& comm,
                 GroupDecorator decorate)
    : impl_(std::make_unique<Impl>(cfg, env, comm, decorate)) {}
Trainer::~Trainer() = default;
int Trainer::run() {
  return impl_->run();
}
const TrainSummary& Trainer::summary() const {
  return impl_->summary;
}

}  // namespace shardlm::runtime
