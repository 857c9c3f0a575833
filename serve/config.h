// ServeConfig: how `shardlm serve` listens, batches and caches. Torch-free, so
// the launcher and the HTTP layer read it without LibTorch. docs/serving.md
// explains each option; a run's TOML may hold them as a [serve] section.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/config.h"

namespace shardlm::serve {

struct ServeConfig {
  // ---- network
  std::string host = "127.0.0.1";
  int port = 8000;     // 0: any free port (Server::port() says which)
  int io_threads = 2;  // Asio threads for HTTP (inference runs on its own thread)
  size_t max_body_bytes = size_t{1} << 20;  // larger request bodies get 413
  double http_timeout_s = 30;               // reading a request, writing a response
  double drain_timeout_s = 60;              // stop(): how long running requests may take to finish
  bool handle_signals = false;  // SIGINT/SIGTERM drain and stop the server (the CLI sets it)

  // ---- scheduling: one inference thread runs the model
  std::string scheduler = "continuous";  // "continuous" (per-step admission) or "static"
  int max_batch = 8;      // static: rows (prompts x n) per batch; continuous: sequences running
  int batch_wait_ms = 5;  // static: how long the first request waits for others to join
  int max_queue = 256;    // waiting requests; more get 503 with Retry-After
  int64_t default_max_tokens = 16;  // max_tokens when a request gives none (OpenAI: 16)
  // ---- continuous: paged KV cache and step budget
  int block_size = 16;                   // tokens per KV block
  int kv_blocks = 0;                     // KV blocks in the pool; 0 = max_batch full contexts
  int64_t max_num_batched_tokens = 512;  // tokens computed per step (prefill chunks + decodes)
  bool prefix_caching = true;            // full prompt blocks shared between requests

  // ---- access: when set, /v1/* needs "Authorization: Bearer <api_key>" (401 otherwise)
  std::string api_key;

  // ---- response cache (deterministic requests: greedy, or sampling with a seed)
  size_t cache_entries = 1024;  // 0 = off
  size_t cache_bytes = size_t{64} << 20;

  // ---- the model
  std::string model_name;  // what /v1/models and responses call it; "" = model directory name

  static ServeConfig from(const core::ConfigSection& s);
  // Throws ConfigError naming the first field that is wrong and what was expected.
  void validate() const;
};

}  // namespace shardlm::serve
