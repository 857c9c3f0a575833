// ServeMetrics: the server's counters, gauges and histograms, updated from the
// HTTP threads and the inference thread, written as Prometheus text at /metrics.
// Every name starts with shardlm_serve_; docs/serving.md lists them.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace shardlm::serve {

// A Prometheus histogram: cumulative counts per upper bound, sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // The histogram's lines for metric `name` (with its # HELP and # TYPE lines).
  std::string text(const std::string& name, const std::string& help) const;
  uint64_t count() const;
  double sum() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bound, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct ServeMetrics {
  ServeMetrics();

  // HTTP: responses by status code, under `mu`.
  void count_response(int status);
  std::map<int, uint64_t> responses() const;

  std::atomic<uint64_t> completions{0};       // /v1/completions requests accepted
  std::atomic<uint64_t> prompt_tokens{0};     // over every finished completion
  std::atomic<uint64_t> generated_tokens{0};  // new tokens, every row of every batch
  std::atomic<uint64_t> batches{0};           // model::Generator::generate calls
  std::atomic<uint64_t> batch_rows{0};        // rows over every batch
  std::atomic<int64_t> queue_depth{0};        // requests waiting for the inference thread
  std::atomic<int64_t> running{0};            // requests in the batch being decoded
  std::atomic<uint64_t> rejected_queue_full{0};
  std::atomic<uint64_t> cancelled{0};  // streams whose client went away
  Histogram batch_size;                // rows per batch
  Histogram latency;                   // seconds from request to last byte queued
  Histogram time_to_first_token;       // seconds, streamed requests

  // Prometheus text; `extra` (cache lines, model info) is appended as given.
  std::string prometheus(const std::string& extra) const;

 private:
  mutable std::mutex mu_;
  std::map<int, uint64_t> responses_;
};

}  // namespace shardlm::serve
