// The training loop (see trainer.h). Setup is in the constructor; one
// optimizer step is Impl::step(); control commands, validation and the end of
// the run are small functions around it.
#include "runtime/trainer.h"
#include "runtime/trainer_impl.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "data/loader.h"
#include "model/config.h"
#include "model/gpt.h"
#include "monitor/config.h"
#include "monitor/control.h"
#include "monitor/hardware.h"
#include "monitor/websocket_sink.h"
#include "parallel/loss_scaler.h"
#include "parallel/mpi_group.h"
#include "parallel/nccl_group.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/mpi_check.h"
#include "runtime/engine.h"
#include "runtime/evaluate.h"
#include "runtime/inspect.h"
#include "runtime/progress.h"
#include "runtime/signals.h"
#include "runtime/train_config.h"

namespace shardlm::runtime {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
c10::ScalarType autocast_dtype(const std::string& precision) {
  if (precision == "bf16") return c10::kBFloat16;
  if (precision == "fp16") return c10::kHalf;
  return c10::kFloat;
}
}  // namespace

// ---- setup --------------------------------------------------------------------

void Trainer::Impl::setup() {
  train = run_cfg.get<TrainConfig>("train");
  val = run_cfg.get<ValidationConfig>("validation");
  model_cfg = run_cfg.get<model::ModelConfig>("model");
  data_cfg = run_cfg.get<data::LoaderConfig>("data");
  opt_cfg = run_cfg.get<parallel::OptimizerConfig>("optimizer");
  shard_cfg = run_cfg.get<parallel::ShardedConfig>("parallel");
  scaler_cfg = run_cfg.get<parallel::LossScalerConfig>("loss_scaler");
  mon_cfg = run_cfg.get<monitor::MonitorConfig>("monitor");
  ckpt_cfg = run_cfg.get<ckpt::CheckpointConfig>("ckpt");
  std::string level = run_cfg.section("log").get("level", std::string("info"));
  core::log::set_level(core::log::parse_level(level));
  run_cfg.check_unknown_keys();

  if (train.device == "cpu")
    device = torch::kCPU;
  else if (train.device == "auto")
    device = torch::Device(env.device);
  else
    device = torch::Device(train.device == "cuda" ? "cuda:" + std::to_string(env.local_rank)
                                                  : train.device);
  SHARDLM_CHECK(!device.is_cuda() || torch::cuda::is_available(), core::ConfigError,
                "train.device = {} but no CUDA device is usable in this process", train.device);
  amp = autocast_dtype(train.precision);
  if (amp == c10::kHalf && !device.is_cuda()) {
    // CPU autocast has no fp16: compute in fp32, keep the loss scaling (its
    // logic is then exercised on CPU, e.g. by tests that force an overflow).
    core::log::warn0("precision = \"fp16\" on CPU: computing in fp32 with dynamic loss scaling");
    amp = c10::kFloat;
  }
  scaler = parallel::LossScaler([&] {
    auto c = scaler_cfg;
    c.enabled = train.precision == "fp16";
    return c;
  }());
  if (data_cfg.seq_len > model_cfg.context_length && model_cfg.positional == "learned")
    throw core::ConfigError(run_cfg.file(), "data.seq_len", std::to_string(data_cfg.seq_len),
                            fmt::format("at most model.context_length = {} with learned positions",
                                        model_cfg.context_length));

  // NCCL between GPUs when this build has it, MPI otherwise.
  if (device.is_cuda() && parallel::NcclGroup::compiled())
    group = parallel::NcclGroup::create(comm, shard_cfg.group_options());
  else
    group = std::make_shared<parallel::MpiGroup>(comm, shard_cfg.group_options());
  SHARDLM_CHECK(group->size() == env.world_size && group->rank() == env.rank, core::ConfigError,
                "the communicator (rank {} of {}) does not match the environment (rank {} of {})",
                group->rank(), group->size(), env.rank, env.world_size);
  fs::create_directories(train.run_dir);
  if (env.is_root()) {
    // Atomic: a full disk must not truncate the config of the run being resumed.
    core::write_file_atomic((fs::path(train.run_dir) / "config.toml").string(),
                            run_cfg.to_toml());
  }

  // The same seed on every rank gives the same initial model (rank 0's is
  // broadcast anyway); dropout differs per rank through the rank offset.
  torch::manual_seed(static_cast<uint64_t>(train.seed));
  model = model::GPT(model_cfg);
  if (!train.init_from.empty()) init_from_safetensors(train.init_from);
  engine = std::make_unique<Engine>(model, shard_cfg, opt_cfg, group, device);
  torch::manual_seed(static_cast<uint64_t>(train.seed) + 1000003ULL * env.rank);
  model->train();
  apply_trainable(0);

  loader = std::make_unique<data::Loader>(data_cfg, env.rank, env.world_size);
  if (train.auto_batch) choose_batch();
  micro_batch = data_cfg.batch_size;
  data::LoaderConfig vcfg = data_cfg;
  vcfg.split = val.split;
  vcfg.shuffle = false;
  vcfg.prefetch = 2;
  val_loader = std::make_unique<data::Loader>(vcfg, env.rank, env.world_size);
  val_start = val_loader->state();
  load_tokenizer();

  schedule = std::make_unique<LrSchedule>(
      train.schedule, opt_cfg.lr,
      train.schedule.total_steps > 0 ? train.schedule.total_steps : train.steps);
  early = EarlyStopping(val.early_stopping);
  clip = train.grad_clip;

  checkpointer = std::make_unique<ckpt::Checkpointer>(ckpt_cfg, train.run_dir, comm);
  if (!ckpt_cfg.resume.empty()) {
    // Rank 0 chooses (verifying files), every rank loads the same checkpoint.
    std::string chosen;
    if (env.is_root())
      chosen = ckpt::resolve_checkpoint(train.run_dir, ckpt_cfg.resume).value_or("");
    int n = static_cast<int>(chosen.size());
    MPI_Bcast(&n, 1, MPI_INT, 0, comm);
    chosen.resize(n);
    MPI_Bcast(chosen.data(), n, MPI_CHAR, 0, comm);
    if (chosen.empty())
      core::log::info0("no checkpoint in {} yet: starting from step 0", train.run_dir);
    else
      restore_checkpoint(chosen);
  }

  // Metrics: rank 0 prints the progress line itself (the monitor's stdout sink is off).
  mon_cfg.stdout_lines = false;
  // A new id per launch (rank 0's clock): the aggregator resets its cross-rank
  // aggregates when the id changes, e.g. after a resume.
  int64_t started = static_cast<int64_t>(std::time(nullptr));
  MPI_Bcast(&started, 1, MPI_INT64_T, 0, comm);
  std::string run_id = fmt::format("{}-{}", fs::path(train.run_dir).filename().string(), started);
  // Every rank's sink must present the aggregator's token (rank 0 decides, see
  // resolve_producer_token); with monitor.embedded rank 0's aggregator uses it too.
  mon_cfg.token = monitor::resolve_producer_token(mon_cfg, train.run_dir, comm);
  mon = monitor::open_monitor(mon_cfg, env.rank, env.world_size, train.run_dir, run_id);
  probe = std::make_unique<monitor::HardwareProbe>(device.is_cuda() ? device.index() : -1);
  if (env.is_root()) progress = std::make_unique<Progress>(train.steps, isatty(STDOUT_FILENO));

  nlohmann::json info;
  info["config"] = nlohmann::json::parse(run_cfg.to_json());
  info["model"] = model_cfg.to_json();
  info["parameters"] = model_cfg.num_parameters();
  info["device"] = device.str();
  info["precision"] = train.precision;
  info["zero_stage"] = shard_cfg.zero_stage;
  info["cpu_offload"] = shard_cfg.cpu_offload;
  info["offload_params"] = shard_cfg.offload_params;
  info["micro_batch"] = micro_batch;
  info["accumulation"] = train.accumulation;
  mon.sink->run_info(run_id, env.world_size, info);
  core::log::info0(
      "model: {} parameters ({} layers, {} heads, width {}), device {}, {} rank(s), "
      "micro-batch {} x accumulation {} x seq {}",
      model_cfg.num_parameters(), model_cfg.n_layer, model_cfg.n_head, model_cfg.d_model,
      device.str(), env.world_size, micro_batch, train.accumulation, data_cfg.seq_len);
}

void Trainer::Impl::apply_trainable(int64_t step) {
  int64_t k = train.trainable_blocks(step, model_cfg.n_layer);
  if (k == trainable_k) return;
  engine->set_trainable_top_blocks(k);
  if (trainable_k >= 0 || k < model_cfg.n_layer)
    core::log::info0(
        "layer-wise training: from step {} the top {} of {} blocks train ({} parameters)", step, k,
        model_cfg.n_layer, engine->num_trainable());
  trainable_k = k;
}

// Dynamic batch sizing (see TrainConfig::auto_batch).
void Trainer::Impl::choose_batch() {
  int64_t T = data_cfg.seq_len, B = data_cfg.batch_size;
  auto fits_gpu = [&](int64_t b) {
    try {
      auto ids = torch::randint(model_cfg.vocab_size, {b, T},
                                torch::TensorOptions(device).dtype(torch::kLong));
      engine->begin_micro_batch(true);
      model::ForwardOptions opts;
      opts.block_runner = engine->block_runner(train.activation_checkpointing);
      torch::Tensor loss;
      {
        model::AutocastGuard ac(device.type(), amp, amp != c10::kFloat);
        loss = model::loss(model->forward(ids, opts), ids);
      }
      loss.backward();
      engine->skip_step();
      return true;
    } catch (const c10::Error& e) {
      if (std::string(e.what()).find("out of memory") == std::string::npos) throw;
      engine->skip_step();
      return false;
    }
  };
  if (device.is_cuda()) {
    while (B > 1 && !fits_gpu(B)) B /= 2;
  } else if (train.memory_budget_mb > 0) {
    // Activation bytes per sample (Korthikanti et al. 2022, eq. 2, scaled to the
    // dtype): T d (34 + 5 H T / d) per layer at 2 bytes, plus logits and their
    // gradient (3 T V at 4 bytes).
    double bytes = amp == c10::kFloat ? 4.0 : 2.0;
    double d = model_cfg.d_model, H = model_cfg.n_head, L = model_cfg.n_layer;
    double per_sample =
        L * T * d * (34 + 5 * H * T / d) * bytes / 2 + 3.0 * T * model_cfg.vocab_size * 4;
    auto mem = engine->memory();
    double free = train.memory_budget_mb * 1048576.0 - static_cast<double>(mem.total());
    B = std::max<int64_t>(1, static_cast<int64_t>(free / per_sample));
  }
  int64_t world = env.world_size;
  int64_t accum = std::max<int64_t>(1, (train.global_batch + B * world - 1) / (B * world));
  B = std::min(B, std::max<int64_t>(1, train.global_batch / (accum * world)));
  // The loader's batch size is fixed per Loader: reopen at the same position.
  if (B != data_cfg.batch_size) {
    auto st = loader->state();
    data_cfg.batch_size = B;
    loader = std::make_unique<data::Loader>(data_cfg, env.rank, env.world_size);
    loader->load_state(st);
  }
  train.accumulation = accum;
  core::log::info0(
      "auto batch: micro-batch {} x accumulation {} x {} rank(s) = {} rows per step "
      "(asked for {})",
      B, accum, world, B * accum * world, train.global_batch);
}

// ---- one optimizer step -----------------------------------------------------------

double Trainer::Impl::step() {
  auto t_step = Clock::now();
  monitor::StepMetrics m;
  m.step = step_;
  double t_data = 0, t_fwd = 0, t_bwd = 0, t_opt = 0;

  // Batches first: the loss of every micro-batch is weighted by its share of
  // the global batch's real tokens, so that any world size, accumulation and
  // padding give the same loss and gradient for the same global batch.
  auto t0 = Clock::now();
  std::vector<data::Batch> batches;
  for (int64_t i = 0; i < train.accumulation; ++i) batches.push_back(loader->next());
  t_data = since(t0);
  int64_t local_tokens = 0;
  for (const auto& b : batches) local_tokens += b.tokens;
  auto tok = torch::tensor({static_cast<float>(local_tokens)});
  group->all_reduce(tok, parallel::ReduceOp::kSum);
  double global_tokens = std::max(1.0f, tok.item<float>());

  double lr = schedule->at(step_);
  auto runner = engine->block_runner(train.activation_checkpointing);
  double loss_sum = 0;  // sum of token losses of this rank (nats)
  for (size_t i = 0; i < batches.size(); ++i) {
    data::Batch& b = batches[i];
    t0 = Clock::now();
    engine->begin_micro_batch(i + 1 == batches.size());
    model::ForwardOptions opts;
    opts.block_runner = runner;
    if (b.attention_mask.defined() && !b.attention_mask.all().item<bool>())
      opts.attention_mask = b.attention_mask.to(device);
    torch::Tensor loss;
    {
      model::AutocastGuard ac(device.type(), amp, amp != c10::kFloat);
      auto logits = model->forward(b.input_ids.to(device), opts);  // (B, L, V)
      loss = model::loss(logits, b.targets.to(device), b.loss_mask.to(device));
    }
    // mean over this micro-batch's tokens -> its share of the global mean; the
    // engine averages over ranks, hence the factor world_size.
    double weight = static_cast<double>(b.tokens) * env.world_size / global_tokens;
    loss_sum += loss.item<double>() * static_cast<double>(b.tokens);
    t_fwd += since(t0);
    t0 = Clock::now();
    auto scaled = loss * weight;
    if (scaler.config().enabled) scaled = scaler.scale_loss(scaled);
    scaled.backward();
    t_bwd += since(t0);
  }

  t0 = Clock::now();
  bool finite = true;
  // The scaler's verdict is agreed over the ranks (shards differ at ZeRO >= 1).
  if (scaler.config().enabled) finite = scaler.unscale_(engine->grads(), group.get());
  double t_reduce = since(t0);
  t0 = Clock::now();
  double norm = NAN;
  if (finite)
    norm = engine->step(lr, clip);
  else
    engine->skip_step();
  bool do_step = scaler.config().enabled ? scaler.update(!finite) : true;
  t_opt = since(t0);

  auto ls = torch::tensor({static_cast<float>(loss_sum)});
  group->all_reduce(ls, parallel::ReduceOp::kSum);
  double loss = ls.item<float>() / global_tokens;
  tokens_seen += static_cast<int64_t>(global_tokens);
  double dt = since(t_step);
  train_seconds += dt;

  if (step_ % train.log_every == 0 || step_ + 1 == train.steps) {
    m.loss = loss;
    m.lr = lr;
    if (std::isfinite(norm)) m.grad_norm = norm;
    if (scaler.config().enabled) {
      m.loss_scale = scaler.scale();
      m.extra["skipped_steps"] = static_cast<double>(scaler.skipped_steps());
    }
    m.tokens_per_s = local_tokens / dt;
    m.tokens = tokens_seen / env.world_size;
    m.time.total = dt;
    m.time.data = t_data;
    m.time.forward = t_fwd;
    m.time.backward = t_bwd;
    m.time.reduce = t_reduce;
    m.time.optimizer = t_opt;
    m.hparams.lr = lr;
    m.hparams.weight_decay = engine->weight_decay();
    m.hparams.clip = clip;
    m.hparams.micro_batch = micro_batch;
    m.hparams.accumulation = train.accumulation;
    m.hparams.paused = false;
    auto mem = engine->memory();
    m.extra["model_state_bytes"] = static_cast<double>(mem.params + mem.grads + mem.optimizer);
    m.extra["offloaded_bytes"] = static_cast<double>(mem.host);
    // Model states on the compute device at their high-water mark since the last
    // report (the sum of each kind's own peak: an upper bound). Layer streaming
    // keeps it near two blocks and the root.
    auto peak = engine->sharded().peak_memory();
    m.extra["model_state_peak_bytes"] =
        static_cast<double>(peak.params + peak.grads + peak.optimizer);
    engine->sharded().reset_peak_memory();
    probe->fill(m);
    if (step_ % mon_cfg.every == 0) mon.sink->step(m);
    if (progress) progress->step(step_ + 1, loss, lr, norm, global_tokens / dt, dt, !do_step);
  }
  return loss;
}

// ---- control --------------------------------------------------------------------------

void Trainer::Impl::apply(const monitor::ControlCommand& c) {
  using K = monitor::ControlKind;
  std::string note;
  switch (c.kind) {
    case K::kPause:
      paused = true;
      note = "paused";
      break;
    case K::kResume:
      paused = false;
      note = "resumed";
      break;
    case K::kStop:
      stop_requested = true;
      note = "stop requested";
      break;
    case K::kSaveCheckpoint:
      save_requested = true;
      note = "checkpoint requested";
      break;
    case K::kSetLr:
      schedule->set_lr_at(step_, c.value);
      note = fmt::format("lr = {:.3g}", c.value);
      break;
    case K::kSetWeightDecay:
      engine->set_weight_decay(c.value);
      note = fmt::format("weight decay = {}", c.value);
      break;
    case K::kSetClip:
      clip = c.value;
      note = fmt::format("clip = {}", c.value);
      break;
    case K::kSetBatch: {
      if (c.accumulation > 0) train.accumulation = c.accumulation;
      if (c.micro_batch > 0 && c.micro_batch != data_cfg.batch_size) {
        auto st = loader->state();
        data_cfg.batch_size = c.micro_batch;
        loader = std::make_unique<data::Loader>(data_cfg, env.rank, env.world_size);
        loader->load_state(st);
        micro_batch = c.micro_batch;
      }
      note = fmt::format("micro-batch {} x accumulation {}", micro_batch, train.accumulation);
      break;
    }
    case K::kSetEarlyStopping: {
      auto ec = early.config();
      ec.enabled = c.early.enabled;
      if (c.early.patience > 0) ec.patience = c.early.patience;
      ec.min_delta = c.early.min_delta;
      early.reconfigure(ec);
      note = fmt::format("early stopping {} (patience {}, min delta {})", ec.enabled ? "on" : "off",
                         ec.patience, ec.min_delta);
      break;
    }
    case K::kInspect:
      inspect(c);
      return;
    default:
      if (env.is_root()) mon.control->ack(c, step_, false, "not handled by a training run");
      return;
  }
  core::log::info0("control at step {}: {}", step_, note);
  if (env.is_root()) mon.control->ack(c, step_, true, note);
  if (c.kind == K::kPause || c.kind == K::kResume) {
    monitor::Event ev;
    ev.kind = c.kind == K::kPause ? monitor::EventKind::kPaused : monitor::EventKind::kResumed;
    ev.step = step_;
    ev.message = note;
    mon.sink->event(ev);
  }
}

void Trainer::Impl::load_tokenizer() {
  const std::string want = loader->manifest().tokenizer_hash;
  if (!train.tokenizer.empty()) {
    tokenizer = data::Tokenizer::load(train.tokenizer);
    data::check_tokenizer(loader->manifest(), tokenizer->hash());
  } else {
    fs::path data_dir(data_cfg.path);
    for (const fs::path& p :
         {data_dir / "tokenizer.json", data_dir.parent_path() / "tokenizer.json"}) {
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) continue;
      try {
        data::Tokenizer t = data::Tokenizer::load(p.string());
        if (!want.empty() && t.hash() != want) {
          core::log::info0("{} is not the data's tokenizer (hash {}, data {}): not used",
                           p.string(), t.hash(), want);
          continue;
        }
        tokenizer = std::move(t);
        core::log::debug("tokenizer for inspection: {}", p.string());
        break;
      } catch (const std::exception& e) {
        core::log::warn0("{}: not a tokenizer ({}); model inspection will not encode prompts",
                         p.string(), e.what());
      }
    }
  }
  // Inspection is collective: every rank must take the same path, so the
  // tokenizer is used only when every rank found it (hosts of a multi-host run
  // have their own filesystems).
  int have = tokenizer.has_value() ? 1 : 0, all = have;
  SHARDLM_MPI_CHECK(MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, comm));
  if (have && !all) {
    core::log::warn("another rank has no tokenizer for inspection: prompts will not be encoded");
    tokenizer.reset();
  }
}

// Every rank runs the request (a ZeRO-3 forward gathers blocks from all);
// rank 0 answers. Requests are identical on all ranks, so a refusal is too.
void Trainer::Impl::inspect(const monitor::ControlCommand& c) {
  engine->gather_all();
  InspectTarget target;
  target.model = model;
  target.runner = engine->block_runner(false);
  target.tokenizer = tokenizer ? &*tokenizer : nullptr;
  target.device = device;
  nlohmann::json data;
  std::string error;
  auto t0 = std::chrono::steady_clock::now();
  try {
    data = inspect_model(c.inspect_what, c.args, target);
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!env.is_root()) return;
  auto* ws = dynamic_cast<monitor::WebSocketSink*>(mon.control.get());
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  core::log::debug("inspect {} at step {}: {} in {:.0f} ms", c.inspect_what, step_,
                   error.empty() ? "answered" : error, ms);
  if (ws) ws->inspect_result(c, error.empty(), data, error);
}

void Trainer::Impl::handle_control() {
  // Rank 0's commands reach every rank at the same step boundary.
  std::vector<monitor::ControlCommand> cmds;
  if (env.is_root()) cmds = mon.control->poll();
  cmds = monitor::broadcast_commands(cmds, comm, 0);
  for (const auto& c : cmds) apply(c);
}

// ---- validation ----------------------------------------------------------------------

void Trainer::Impl::validate_now(bool final) {
  last_val_step = step_;
  val_loader->load_state(val_start);  // the same batches every time
  engine->gather_all();               // ZeRO-3: the root unit's parameters
  EvalResult r = evaluate(model, *val_loader, val.batches, group.get(), device, amp,
                          engine->block_runner(false));
  monitor::ValidationMetrics v;
  v.step = step_;
  v.loss = r.loss;
  v.perplexity = r.perplexity;
  v.tokens = r.tokens;
  v.metrics["accuracy_top1"] = r.top1;
  v.metrics["accuracy_top5"] = r.top5;
  last_val_loss = r.loss;
  mon.sink->validation(v);
  double metric = val.early_stopping.metric == "val_acc"   ? r.top1
                  : val.early_stopping.metric == "val_ppl" ? r.perplexity
                                                           : r.loss;
  bool best = early.update(step_, metric);
  summary.final_val_loss = r.loss;
  if (best) {
    summary.best_val_loss = r.loss;
    summary.best_step = step_;
  }
  if (progress)
    progress->message(
        fmt::format("validation at step {}: loss {:.4f}  ppl {:.2f}  top-1 {:.1f}%  top-5 {:.1f}%  "
                    "({} tokens){}{}",
                    step_, r.loss, r.perplexity, 100 * r.top1, 100 * r.top5, r.tokens,
                    best ? "  [best]" : "", final ? "  [final]" : ""));
  if (env.is_root()) {
    nlohmann::json row = {{"step", step_},  {"loss", r.loss}, {"perplexity", r.perplexity},
                          {"top1", r.top1}, {"top5", r.top5}, {"tokens", r.tokens},
                          {"best", best}};
    std::ofstream(fs::path(train.run_dir) / "validation.jsonl", std::ios::app)
        << row.dump() << "\n";
  }
}

void Trainer::Impl::write_report() {
  if (!env.is_root()) return;
  nlohmann::json rows = nlohmann::json::array();
  std::ifstream in(fs::path(train.run_dir) / "validation.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  nlohmann::json report = {{"steps", summary.steps_done},
                           {"final_val_loss", summary.final_val_loss},
                           {"best_val_loss", summary.best_val_loss},
                           {"best_step", summary.best_step},
                           {"early_stopped", summary.early_stopped},
                           {"tokens_per_s", summary.tokens_per_s},
                           {"validations", rows}};
  std::ofstream(fs::path(train.run_dir) / "validation_report.json") << report.dump(2) << "\n";
  std::string table =
      "  step |   loss   |   ppl    | top-1  | top-5\n  "
      "------+----------+----------+--------+-------\n";
  for (const auto& r : rows)
    table += fmt::format("  {:>5} | {:8.4f} | {:8.2f} | {:5.1f}% | {:5.1f}%{}\n",
                         r["step"].get<int64_t>(), r["loss"].get<double>(),
                         r["perplexity"].get<double>(), 100 * r["top1"].get<double>(),
                         100 * r["top5"].get<double>(), r["best"].get<bool>() ? "  best" : "");
  std::ofstream(fs::path(train.run_dir) / "validation_report.txt") << table;
  if (progress) progress->message("validation report:\n" + table);
}

// ---- the loop ----------------------------------------------------------------------------

int Trainer::Impl::run() {
  install_stop_handlers();
  monitor::Event started;
  started.kind = monitor::EventKind::kRunStarted;
  started.step = step_;
  started.message = "training started";
  mon.sink->event(started);
  int exit_code = 0;
  while (step_ < train.steps) {
    handle_control();
    // A stop signal on any rank stops every rank at the same boundary.
    auto sig = torch::tensor(
        {static_cast<float>(pending_stop_signal() != StopSignal::kNone || stop_requested)});
    group->all_reduce(sig, parallel::ReduceOp::kMax);
    if (sig.item<float>() > 0) {
      summary.stopped = true;
      StopSignal s = pending_stop_signal();
      core::log::info0("stopping at step {} ({})", step_,
                       s == StopSignal::kNone ? "stop command" : to_string(s));
      if (s == StopSignal::kTerminate || s == StopSignal::kPreempt)
        exit_code = kExitStoppedBySignal;
      save_checkpoint(false);
      break;
    }
    if (paused) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    apply_trainable(step_);
    double loss = step();
    summary.losses.push_back(loss);
    ++step_;
    summary.steps_done = step_;
    SHARDLM_CHECK(std::isfinite(loss) || scaler.config().enabled, core::ModelError,
                  "the loss is {} at step {}: lower optimizer.lr, set train.grad_clip, or use "
                  "precision = \"fp16\" with loss scaling",
                  loss, step_);
    bool periodic = ckpt_cfg.every > 0 && step_ % ckpt_cfg.every == 0 && step_ < train.steps;
    if (val.every > 0 && step_ % val.every == 0 && step_ < train.steps) {
      validate_now(false);
      if (early.should_stop()) {
        summary.early_stopped = true;
        core::log::info0(
            "early stopping at step {}: no improvement of {} by more than {} in {} "
            "validations (best {:.4f} at step {})",
            step_, val.early_stopping.metric, val.early_stopping.min_delta,
            early.validations_without_improvement(), early.best(), early.best_step());
        monitor::Event ev;
        ev.kind = monitor::EventKind::kEarlyStop;
        ev.step = step_;
        ev.message = "early stop";
        mon.sink->event(ev);
        break;
      }
    }
    // After validation, so that keep_best sees this step's validation loss.
    if (periodic || save_requested) {
      save_checkpoint(ckpt_cfg.async);
      save_requested = false;
    }
  }
  // The final validation, unless this step has just been validated (early stop).
  if (!summary.stopped && last_val_step != step_) validate_now(true);
  if (!summary.stopped && ckpt_cfg.save_final) save_checkpoint(false);
  checkpointer->wait();
  summary.tokens_per_s =
      train_seconds > 0 ? static_cast<double>(tokens_seen - tokens_at_start) / train_seconds : 0;
  write_report();
  monitor::Event done;
  done.kind = summary.stopped ? monitor::EventKind::kStopped : monitor::EventKind::kRunFinished;
  done.step = step_;
  done.message = summary.stopped ? "stopped" : "finished";
  mon.sink->event(done);
  mon.sink->flush(2.0);
  if (progress) progress->finish();
  return exit_code;
}

// ---- public -------------------------------------------------------------------------------

Trainer::Trainer(const core::RunConfig& cfg, const core::Env& env, MPI_Comm comm)
    : impl_(std::make_unique<Impl>(cfg, env, comm)) {
  impl_->setup();
}
Trainer::~Trainer() = default;
int Trainer::run() {
  return impl_->run();
}
const TrainSummary& Trainer::summary() const {
  return impl_->summary;
}

}  // namespace shardlm::runtime
