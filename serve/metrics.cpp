// ServeMetrics (metrics.h): Prometheus text format 0.0.4.
#include "serve/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace shardlm::serve {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  std::lock_guard<std::mutex> g(mu_);
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  ++counts_[i];
  sum_ += v;
  ++count_;
}

std::string Histogram::text(const std::string& name, const std::string& help) const {
  std::lock_guard<std::mutex> g(mu_);
  std::string s = fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    s += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  s += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name,
                   sum_, name, count_);
  return s;
}

uint64_t Histogram::count() const {
  std::lock_guard<std::mutex> g(mu_);
  return count_;
}

double Histogram::sum() const {
  std::lock_guard<std::mutex> g(mu_);
  return sum_;
}

ServeMetrics::ServeMetrics()
    : batch_size({1, 2, 4, 8, 16, 32, 64, 128}),
      latency({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      time_to_first_token({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}) {}

void ServeMetrics::count_response(int status) {
  std::lock_guard<std::mutex> g(mu_);
  ++responses_[status];
}

std::map<int, uint64_t> ServeMetrics::responses() const {
  std::lock_guard<std::mutex> g(mu_);
  return responses_;
}

std::string ServeMetrics::prometheus(const std::string& extra) const {
  std::string s;
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    s += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
  };
  auto gauge = [&](const char* name, const char* help, int64_t v) {
    s += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
  };
  s += "# HELP shardlm_serve_http_responses_total HTTP responses by status code\n"
       "# TYPE shardlm_serve_http_responses_total counter\n";
  for (const auto& [code, n] : responses())
    s += fmt::format("shardlm_serve_http_responses_total{{code=\"{}\"}} {}\n", code, n);
  counter("shardlm_serve_completions_total", "completion requests accepted", completions);
  counter("shardlm_serve_prompt_tokens_total", "prompt tokens of finished completions",
          prompt_tokens);
  counter("shardlm_serve_generated_tokens_total", "tokens generated (every row of every batch)",
          generated_tokens);
  counter("shardlm_serve_batches_total", "batches decoded by the inference thread", batches);
  counter("shardlm_serve_batch_rows_total", "rows (prompts x n) over every batch", batch_rows);
  counter("shardlm_serve_rejected_queue_full_total", "requests refused with 503 (queue full)",
          rejected_queue_full);
  counter("shardlm_serve_cancelled_total", "streams whose client disconnected", cancelled);
  gauge("shardlm_serve_queue_depth", "requests waiting for the inference thread", queue_depth);
  gauge("shardlm_serve_running", "requests in the batch being decoded", running);
  s += batch_size.text("shardlm_serve_batch_size", "rows per batch");
  s += latency.text("shardlm_serve_request_latency_seconds",
                    "completion latency, request read to response queued");
  s += time_to_first_token.text("shardlm_serve_time_to_first_token_seconds",
                                "streamed completions: request read to first text chunk");
  return s + extra;
}

}  // namespace shardlm::serve
