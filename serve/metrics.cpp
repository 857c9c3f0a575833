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

std::string Histogram::text(const std::string& name, const std::string& help,
                            const std::string& labels) const {
  std::lock_guard<std::mutex> g(mu_);
  std::string s = fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  const std::string sep = labels.empty() ? "" : labels + ",";
  const std::string own = labels.empty() ? "" : "{" + labels + "}";
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    s += fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name, sep, bounds_[i], cum);
  }
  s += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n{}_sum{} {}\n{}_count{} {}\n", name, sep, count_,
                   name, own, sum_, name, own, count_);
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
      time_to_first_token({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}),
      // vLLM's buckets for these two.
      ttft({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
            1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}),
      tpot({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
            20.0, 40.0, 80.0}),
      step_tokens({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048}) {}

void ServeMetrics::count_response(int status) {
  std::lock_guard<std::mutex> g(mu_);
  ++responses_[status];
}

std::map<int, uint64_t> ServeMetrics::responses() const {
  std::lock_guard<std::mutex> g(mu_);
  return responses_;
}

std::string ServeMetrics::prometheus(const std::string& extra, const std::string& model) const {
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
  counter("shardlm_serve_unauthorized_total", "requests refused with 401 (no or wrong API key)",
          unauthorized);
  counter("shardlm_serve_prompt_tokens_computed_total",
          "prompt tokens the model computed (the rest came from the prefix cache)",
          prompt_tokens_computed);
  counter("shardlm_serve_computed_tokens_total",
          "tokens the model computed (prefill and decode, recomputation included)",
          computed_tokens);
  gauge("shardlm_serve_kv_blocks_total", "KV-cache blocks in the pool", kv_blocks_total);
  gauge("shardlm_serve_kv_blocks_used", "KV-cache blocks held by a running sequence",
        kv_blocks_used);
  gauge("shardlm_serve_kv_blocks_cached", "KV-cache blocks with a prefix-cache key",
        kv_blocks_cached);
  s += step_tokens.text("shardlm_serve_step_tokens", "tokens computed per continuous step");

  // vLLM's names, for dashboards and autoscalers made for it.
  const std::string l = fmt::format("model_name=\"{}\"", model);
  auto vgauge = [&](const char* name, const char* help, double v) {
    s += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{}{{{}}} {}\n", name, help, name, name, l, v);
  };
  auto vcounter = [&](const char* name, const char* help, uint64_t v) {
    s +=
        fmt::format("# HELP {} {}\n# TYPE {} counter\n{}{{{}}} {}\n", name, help, name, name, l, v);
  };
  vgauge("vllm:num_requests_running", "requests in the running batch",
         static_cast<double>(running.load()));
  vgauge("vllm:num_requests_waiting", "requests waiting to be admitted",
         static_cast<double>(queue_depth.load()));
  const int64_t total = kv_blocks_total;
  vgauge("vllm:kv_cache_usage_perc", "fraction of KV-cache blocks held (1 = full)",
         total > 0 ? static_cast<double>(kv_blocks_used) / static_cast<double>(total) : 0.0);
  vcounter("vllm:prefix_cache_queries_total", "prompt tokens looked up in the prefix cache",
           prefix_cache_queries);
  vcounter("vllm:prefix_cache_hits_total", "prompt tokens found in the prefix cache",
           prefix_cache_hits);
  vcounter("vllm:num_preemptions_total", "sequences preempted for KV-cache blocks", preemptions);
  vcounter("vllm:prompt_tokens_total", "prompt tokens of finished requests", prompt_tokens);
  vcounter("vllm:generation_tokens_total", "tokens generated", generated_tokens);
  s += ttft.text("vllm:time_to_first_token_seconds", "request queued to its first token", l);
  s += tpot.text("vllm:time_per_output_token_seconds", "time between a sequence's tokens", l);
  return s + extra;
}

}  // namespace shardlm::serve
