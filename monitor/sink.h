// Where a rank's metrics go. The trainer holds one MetricsSink and calls
// run_info() once, step() every reported step, validation() and event() as
// they happen. Sinks never throw into the training loop for transport
// problems and never block it: a slow destination loses messages (counted in
// stats().dropped), not time.
//
// To add a sink: derive from MetricsSink and implement publish() (the message
// already encoded as one JSON line), or override the typed calls when the
// sink wants the structs (StdoutSink does).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "monitor/protocol.h"

namespace shardlm::monitor {

struct SinkStats {
  uint64_t published = 0;   // messages handed to the sink
  uint64_t sent = 0;        // messages written out (file, socket)
  uint64_t dropped = 0;     // messages lost because the destination was slow or gone
  uint64_t queued = 0;      // waiting in the sink's queue now
  uint64_t reconnects = 0;  // connections established after the first
  bool connected = false;   // WebSocketSink: a connection to the aggregator is up
};

class MetricsSink {
 public:
  explicit MetricsSink(int rank = 0) : rank_(rank) {}
  virtual ~MetricsSink() = default;
  MetricsSink(const MetricsSink&) = delete;
  MetricsSink& operator=(const MetricsSink&) = delete;

  // Run metadata (`info` is free-form: config, model, zero_stage, device, ...).
  virtual void run_info(const std::string& run_id, int world_size, const nlohmann::json& info) {
    publish("run_info", dump(encode_run_info(rank_, run_id, world_size, info)));
  }
  virtual void step(const StepMetrics& m) { publish("step", dump(encode_step(rank_, m))); }
  virtual void validation(const ValidationMetrics& v) {
    publish("validation", dump(encode_validation(rank_, v)));
  }
  virtual void event(const Event& e) { publish("event", dump(encode_event(rank_, e))); }
  // One encoded protocol message of `type` (no trailing newline).
  virtual void publish(std::string_view type, std::string line) = 0;
  // Writes out what is buffered, waiting at most `timeout_s` (0: do not wait).
  virtual void flush(double timeout_s = 0) { (void)timeout_s; }
  virtual SinkStats stats() const { return {}; }
  int rank() const { return rank_; }

 private:
  int rank_;
};

// Does nothing at no cost (the default when monitoring is off).
class NullSink : public MetricsSink {
 public:
  using MetricsSink::MetricsSink;
  void run_info(const std::string&, int, const nlohmann::json&) override {}
  void step(const StepMetrics&) override {}
  void validation(const ValidationMetrics&) override {}
  void event(const Event&) override {}
  void publish(std::string_view, std::string) override {}
};

// Appends each message as one line to a file (protocol JSON lines, the same
// format as the aggregator's metrics.jsonl). Each line is flushed, so a crash
// loses at most the message being written.
class JsonlSink : public MetricsSink {
 public:
  // Opens `path` for appending (creating parent directories); throws
  // core::DataError naming the path when it cannot.
  JsonlSink(const std::string& path, int rank = 0);
  ~JsonlSink() override;
  void publish(std::string_view type, std::string line) override;
  void flush(double timeout_s = 0) override;
  SinkStats stats() const override;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  mutable std::mutex mu_;
  SinkStats stats_;
};

// One human-readable line per step, validation and event (or the raw JSON
// lines with json = true), to `out` (stdout by default).
class StdoutSink : public MetricsSink {
 public:
  explicit StdoutSink(int rank = 0, bool json = false, std::FILE* out = stdout);
  void step(const StepMetrics& m) override;
  void validation(const ValidationMetrics& v) override;
  void event(const Event& e) override;
  void publish(std::string_view type, std::string line) override;
  SinkStats stats() const override;

 private:
  void write(const std::string& text);
  bool json_;
  std::FILE* out_;
  mutable std::mutex mu_;
  SinkStats stats_;
};

// Sends every call to each of several sinks (for example a file and the aggregator).
class FanoutSink : public MetricsSink {
 public:
  explicit FanoutSink(int rank = 0) : MetricsSink(rank) {}
  void add(std::unique_ptr<MetricsSink> sink);
  // A sink owned elsewhere (a WebSocketSink that is also the ControlChannel).
  void add_shared(std::shared_ptr<MetricsSink> sink);
  size_t size() const { return sinks_.size(); }

  void run_info(const std::string& run_id, int world_size, const nlohmann::json& info) override;
  void step(const StepMetrics& m) override;
  void validation(const ValidationMetrics& v) override;
  void event(const Event& e) override;
  void publish(std::string_view type, std::string line) override;
  void flush(double timeout_s = 0) override;
  // Sums of the children's counters; connected when any child is.
  SinkStats stats() const override;

 private:
  std::vector<std::shared_ptr<MetricsSink>> sinks_;
};

}  // namespace shardlm::monitor
