// The simple sinks: JSON lines file, stdout, fan-out (sink.h).
#include "monitor/sink.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "monitor/timestamp.h"

namespace shardlm::monitor {

// ---- JsonlSink -----------------------------------------------------------------------

JsonlSink::JsonlSink(const std::string& path, int rank) : MetricsSink(rank), path_(path) {
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  f_ = std::fopen(path.c_str(), "ab");
  SHARDLM_CHECK(f_ != nullptr, core::DataError, "metrics file {}: cannot open for appending: {}",
                path, std::strerror(errno));
}

JsonlSink::~JsonlSink() {
  if (f_) std::fclose(f_);
}

void JsonlSink::publish(std::string_view, std::string line) {
  line.push_back('\n');
  std::lock_guard<std::mutex> g(mu_);
  ++stats_.published;
  if (std::fwrite(line.data(), 1, line.size(), f_) == line.size() && std::fflush(f_) == 0)
    ++stats_.sent;
  else
    ++stats_.dropped;  // disk full: training goes on, the loss is counted
}

void JsonlSink::flush(double) {
  std::lock_guard<std::mutex> g(mu_);
  std::fflush(f_);
}

SinkStats JsonlSink::stats() const {
  std::lock_guard<std::mutex> g(mu_);
  return stats_;
}

// ---- StdoutSink ----------------------------------------------------------------------

StdoutSink::StdoutSink(int rank, bool json, std::FILE* out)
    : MetricsSink(rank), json_(json), out_(out) {}

void StdoutSink::write(const std::string& text) {
  std::lock_guard<std::mutex> g(mu_);
  ++stats_.published;
  std::fwrite(text.data(), 1, text.size(), out_);
  std::fflush(out_);
  ++stats_.sent;
}

void StdoutSink::publish(std::string_view, std::string line) {
  line.push_back('\n');
  write(line);
}

void StdoutSink::step(const StepMetrics& m) {
  if (json_) return MetricsSink::step(m);
  std::string s =
      fmt::format("[rank {}] step {:>7} loss {:.4f} lr {:.3e}", rank(), m.step, m.loss, m.lr);
  if (m.grad_norm) s += fmt::format(" gnorm {:.3f}", *m.grad_norm);
  if (m.tokens_per_s) s += fmt::format(" {:.0f} tok/s", *m.tokens_per_s);
  s += fmt::format(" {:.3f} s", m.time.total);
  if (m.mem.host_rss) s += fmt::format(" rss {:.0f} MiB", *m.mem.host_rss / 1048576.0);
  if (m.gpu && m.gpu->util) s += fmt::format(" gpu {:.0f}%", *m.gpu->util);
  write(s + "\n");
}

void StdoutSink::validation(const ValidationMetrics& v) {
  if (json_) return MetricsSink::validation(v);
  std::string s =
      fmt::format("[rank {}] step {:>7} validation loss {:.4f}", rank(), v.step, v.loss);
  if (v.perplexity) s += fmt::format(" ppl {:.2f}", *v.perplexity);
  for (auto& [k, x] : v.metrics) s += fmt::format(" {} {:.4g}", k, x);
  write(s + "\n");
}

void StdoutSink::event(const Event& e) {
  if (json_) return MetricsSink::event(e);
  write(fmt::format("[rank {}] {}{}: {}\n", rank(), event_kind_name(e.kind),
                    e.step ? fmt::format(" at step {}", *e.step) : std::string(), e.message));
}

SinkStats StdoutSink::stats() const {
  std::lock_guard<std::mutex> g(mu_);
  return stats_;
}

// ---- FanoutSink ------------------------------------------------------------------------

void FanoutSink::add(std::unique_ptr<MetricsSink> sink) {
  sinks_.emplace_back(std::move(sink));
}
void FanoutSink::add_shared(std::shared_ptr<MetricsSink> sink) {
  sinks_.push_back(std::move(sink));
}

void FanoutSink::run_info(const std::string& run_id, int world_size, const nlohmann::json& info) {
  SameTimestamp one_time;
  for (auto& s : sinks_) s->run_info(run_id, world_size, info);
}
void FanoutSink::step(const StepMetrics& m) {
  SameTimestamp one_time;
  for (auto& s : sinks_) s->step(m);
}
void FanoutSink::validation(const ValidationMetrics& v) {
  SameTimestamp one_time;
  for (auto& s : sinks_) s->validation(v);
}
void FanoutSink::event(const Event& e) {
  SameTimestamp one_time;
  for (auto& s : sinks_) s->event(e);
}
void FanoutSink::publish(std::string_view type, std::string line) {
  for (size_t i = 0; i < sinks_.size(); ++i)
    sinks_[i]->publish(type, i + 1 == sinks_.size() ? std::move(line) : line);
}
void FanoutSink::flush(double timeout_s) {
  for (auto& s : sinks_) s->flush(timeout_s);
}

SinkStats FanoutSink::stats() const {
  SinkStats t;
  for (auto& s : sinks_) {
    SinkStats x = s->stats();
    t.published += x.published;
    t.sent += x.sent;
    t.dropped += x.dropped;
    t.queued += x.queued;
    t.reconnects += x.reconnects;
    t.connected = t.connected || x.connected;
  }
  return t;
}

}  // namespace shardlm::monitor
