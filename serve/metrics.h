// ServeMetrics: the server's counters, gauges and histograms, updated from the
// HTTP threads and the inference thread, written as Prometheus text at /metrics.
// Names start with shardlm_serve_, and the ones vLLM has are also exported
// under vLLM's names (vllm:num_requests_running, vllm:kv_cache_usage_perc, ...)
// so that dashboards made for it work; docs/serving.md lists them.
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
  // `labels` (e.g. model_name="x") go on every series.
  std::string text(const std::string& name, const std::string& help,
                   const std::string& labels = "") const;
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
  std::atomic<uint64_t> cancelled{0};     // requests whose client went away
  std::atomic<uint64_t> unauthorized{0};  // 401s: /v1/* without the API key
  // Continuous scheduler: the paged KV cache, in blocks, and the work done.
  std::atomic<int64_t> kv_blocks_total{0};
  std::atomic<int64_t> kv_blocks_used{0};           // held by a sequence
  std::atomic<int64_t> kv_blocks_cached{0};         // with a prefix-cache key (held or evictable)
  std::atomic<uint64_t> prefix_cache_queries{0};    // prompt tokens looked up
  std::atomic<uint64_t> prefix_cache_hits{0};       // of which found in the cache
  std::atomic<uint64_t> prompt_tokens_computed{0};  // prompt tokens the model computed
  std::atomic<uint64_t> computed_tokens{0};         // every token the model computed
  std::atomic<uint64_t> preemptions{0};
  Histogram batch_size;           // rows per batch (static) or sequences per step (continuous)
  Histogram latency;              // seconds from request to last byte queued
  Histogram time_to_first_token;  // seconds, streamed requests: request read to first text chunk
  Histogram ttft;                 // seconds, every request: queued to first token (vLLM's)
  Histogram tpot;                 // seconds between a sequence's consecutive tokens (vLLM's)
  Histogram step_tokens;          // tokens computed per continuous step

  // Prometheus text; `extra` (cache lines, model info) is appended as given;
  // `model` labels the vllm: series (model_name="...").
  std::string prometheus(const std::string& extra, const std::string& model = "") const;

 private:
  mutable std::mutex mu_;
  std::map<int, uint64_t> responses_;
};

}  // namespace shardlm::serve
