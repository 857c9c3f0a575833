// Reporter (see reporter.h).
#include "runtime/reporter.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>

#include <fmt/format.h>

#include "core/log.h"
#include "parallel/device_memory.h"

namespace shardlm::runtime {

namespace fs = std::filesystem;

namespace {
// LibTorch's caching-allocator bytes for the step message (mem.device_*). The
// peak restarts at every report: each message carries the high-water mark
// since the previous one.
monitor::DeviceMemorySource allocator_bytes(const torch::Device& device) {
  if (!device.is_cuda()) return {};
  const int index = device.has_index() ? device.index() : 0;
  return [index]() -> std::optional<monitor::DeviceAllocatorBytes> {
    auto m = parallel::cuda_memory(index);
    if (!m) return std::nullopt;
    parallel::reset_cuda_peak(index);
    return monitor::DeviceAllocatorBytes{m->allocated, m->reserved, m->peak_allocated};
  };
}
}  // namespace

Reporter::Reporter(const RunSettings& s, const core::Env& env, core::Comm& comm)
    : env_(env), every_(s.mon.every), total_steps_(s.train.steps) {
  monitor::MonitorConfig mc = s.mon;
  // Rank 0 prints the progress line itself (the monitor's stdout sink is off).
  mc.stdout_lines = false;
  // A new id per launch (rank 0's clock): the aggregator resets its cross-rank
  // aggregates when the id changes, e.g. after a resume.
  int64_t started =
      core::all_reduce(comm, env.is_root() ? static_cast<int64_t>(std::time(nullptr)) : int64_t{0},
                       core::Reduce::kMax);
  run_id_ = fmt::format("{}-{}", fs::path(s.train.run_dir).filename().string(), started);
  // Every rank's sink must present the aggregator's token (rank 0 decides, see
  // resolve_producer_token); with monitor.embedded rank 0's aggregator uses it too.
  mc.token = monitor::resolve_producer_token(mc, s.train.run_dir, comm);
  mon_ = monitor::open_monitor(mc, env.rank, env.world_size, s.train.run_dir, run_id_, &comm);
  probe_ = std::make_unique<monitor::HardwareProbe>(s.device.is_cuda() ? s.device.index() : -1,
                                                    allocator_bytes(s.device));
  if (env.is_root()) {
    core::ProgressBar::Options o;
    o.total = static_cast<double>(s.train.steps);
    o.out = stdout;
    o.plain_every_s = 0;  // every logged step gets its line
    progress_ = std::make_unique<core::ProgressBar>(o);
  }
}

Reporter::~Reporter() = default;

void Reporter::run_info(const RunSettings& s, int64_t micro_batch, int64_t accumulation) {
  nlohmann::json info;
  info["config"] = nlohmann::json::parse(s.run.to_json());
  info["model"] = s.model.to_json();
  info["parameters"] = s.model.num_parameters();
  info["device"] = s.device.str();
  info["precision"] = s.train.precision;
  info["zero_stage"] = s.shard.zero_stage;
  info["cpu_offload"] = s.shard.cpu_offload;
  info["offload_params"] = s.shard.offload_params;
  info["micro_batch"] = micro_batch;
  info["accumulation"] = accumulation;
  if (!env_.hostname.empty()) info["host"] = env_.hostname;
  mon_.sink->run_info(run_id_, env_.world_size, info);
  core::log::info0(
      "model: {} parameters ({} layers, {} heads, width {}), device {}, {} rank(s), "
      "micro-batch {} x accumulation {} x seq {}",
      s.model.num_parameters(), s.model.n_layer, s.model.n_head, s.model.d_model, s.device.str(),
      env_.world_size, micro_batch, accumulation, s.data.seq_len);
}

void Reporter::step(const StepRecord& r, const Knobs& k, const parallel::LossScaler& scaler,
                    Engine& engine) {
  monitor::StepMetrics m;
  m.step = r.step;
  m.loss = r.loss;
  m.lr = r.lr;
  if (std::isfinite(r.grad_norm)) m.grad_norm = r.grad_norm;
  if (scaler.config().enabled) {
    m.loss_scale = scaler.scale();
    m.extra["skipped_steps"] = static_cast<double>(scaler.skipped_steps());
  }
  const double dt = r.time.total;
  m.tokens_per_s = r.local_tokens / dt;
  m.tokens = r.tokens_seen / env_.world_size;
  m.time = r.time;
  m.hparams.lr = r.lr;
  m.hparams.weight_decay = k.weight_decay;
  m.hparams.clip = k.clip;
  m.hparams.micro_batch = k.micro_batch;
  m.hparams.accumulation = k.accumulation;
  m.hparams.paused = false;
  auto mem = engine.memory();
  m.extra["model_state_bytes"] = static_cast<double>(mem.params + mem.grads + mem.optimizer);
  m.extra["offloaded_bytes"] = static_cast<double>(mem.host);
  // Model states on the compute device at their high-water mark since the last
  // report (the sum of each kind's own peak: an upper bound). Layer streaming
  // keeps it near two blocks and the root.
  auto peak = engine.sharded().peak_memory();
  m.extra["model_state_peak_bytes"] =
      static_cast<double>(peak.params + peak.grads + peak.optimizer);
  engine.sharded().reset_peak_memory();
  probe_->fill(m);
  report_comm(r, engine, m);
  if (r.step % every_ == 0) mon_.sink->step(m);
  if (progress_)
    progress_->update(
        static_cast<double>(r.step + 1),
        fmt::format("step {}/{} | loss {:.4f} | lr {:.2e} | gnorm {} | {} tok/s | {:.3f} s/step{}",
                    r.step + 1, static_cast<int64_t>(total_steps_), r.loss, r.lr,
                    std::isfinite(r.grad_norm) ? fmt::format("{:.3f}", r.grad_norm) : "inf",
                    core::ProgressBar::si(r.global_tokens / dt), dt,
                    r.skipped ? " | skipped (overflow)" : ""));
}

// This rank's collectives per step, averaged over the steps since the last
// report (log_every): calls, bytes handed to them (payload), bytes sent under
// the ring model (wire), seconds. Rank 0 prints the run's totals at the last step.
void Reporter::report_comm(const StepRecord& r, const Engine& engine, monitor::StepMetrics& m) {
  const parallel::CommCounters now = engine.comm_stats().total_all();
  const double steps = static_cast<double>(std::max<int64_t>(1, r.step - comm_prev_step_));
  m.extra["comm_calls"] = static_cast<double>(now.calls - comm_prev_.calls) / steps;
  m.extra["comm_payload_bytes"] =
      static_cast<double>(now.payload_bytes - comm_prev_.payload_bytes) / steps;
  m.extra["comm_wire_bytes"] = static_cast<double>(now.wire_bytes - comm_prev_.wire_bytes) / steps;
  m.extra["comm_seconds"] = (now.seconds - comm_prev_.seconds) / steps;
  comm_prev_ = now;
  comm_prev_step_ = r.step;
  if (progress_ && r.step + 1 == total_steps_ && now.calls > 0) {
    std::string table = engine.comm_stats().summary();
    if (!table.empty() && table.back() == '\n') table.pop_back();
    message(
        "communication of rank 0 in this launch (the first step includes the start-up "
        "broadcast):\n" +
        table);
  }
}

void Reporter::validation(int64_t step, const EvalResult& r, bool best, bool final) {
  monitor::ValidationMetrics v;
  v.step = step;
  v.loss = r.loss;
  v.perplexity = r.perplexity;
  v.tokens = r.tokens;
  v.metrics["accuracy_top1"] = r.top1;
  v.metrics["accuracy_top5"] = r.top5;
  mon_.sink->validation(v);
  message(
      fmt::format("validation at step {}: loss {:.4f}  ppl {:.2f}  top-1 {:.1f}%  top-5 {:.1f}%  "
                  "({} tokens){}{}",
                  step, r.loss, r.perplexity, 100 * r.top1, 100 * r.top5, r.tokens,
                  best ? "  [best]" : "", final ? "  [final]" : ""));
}

void Reporter::event(monitor::EventKind kind, int64_t step, const std::string& message,
                     nlohmann::json data) {
  monitor::Event ev;
  ev.kind = kind;
  ev.step = step;
  ev.message = message;
  ev.data = std::move(data);
  mon_.sink->event(ev);
}

void Reporter::message(const std::string& text) {
  if (progress_) progress_->message(text);
}

void Reporter::finish() {
  mon_.sink->flush(2.0);
  progress_.reset();  // ends an open line
}

}  // namespace shardlm::runtime
