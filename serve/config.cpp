// ServeConfig: defaults, the [serve] TOML section and validate().
#include "serve/config.h"

#include <fmt/format.h>

namespace shardlm::serve {

ServeConfig ServeConfig::from(const core::ConfigSection& s) {
  ServeConfig c;
  c.host = s.get<std::string>("host", c.host);
  c.port = s.get<int>("port", c.port);
  c.io_threads = s.get<int>("io_threads", c.io_threads);
  c.max_body_bytes =
      static_cast<size_t>(s.get<int64_t>("max_body_bytes", static_cast<int64_t>(c.max_body_bytes)));
  c.http_timeout_s = s.get<double>("http_timeout_s", c.http_timeout_s);
  c.drain_timeout_s = s.get<double>("drain_timeout_s", c.drain_timeout_s);
  c.max_batch = s.get<int>("max_batch", c.max_batch);
  c.batch_wait_ms = s.get<int>("batch_wait_ms", c.batch_wait_ms);
  c.max_queue = s.get<int>("max_queue", c.max_queue);
  c.default_max_tokens = s.get<int64_t>("default_max_tokens", c.default_max_tokens);
  c.scheduler = s.get<std::string>("scheduler", c.scheduler);
  c.block_size = s.get<int>("block_size", c.block_size);
  c.kv_blocks = s.get<int>("kv_blocks", c.kv_blocks);
  c.max_num_batched_tokens = s.get<int64_t>("max_num_batched_tokens", c.max_num_batched_tokens);
  c.prefix_caching = s.get<bool>("prefix_caching", c.prefix_caching);
  c.api_key = s.get<std::string>("api_key", c.api_key);
  c.cache_entries =
      static_cast<size_t>(s.get<int64_t>("cache_entries", static_cast<int64_t>(c.cache_entries)));
  c.cache_bytes =
      static_cast<size_t>(s.get<int64_t>("cache_bytes", static_cast<int64_t>(c.cache_bytes)));
  c.model_name = s.get<std::string>("model_name", c.model_name);
  return c;
}

void ServeConfig::validate() const {
  using core::config_require;
  config_require(!host.empty(), "serve.host", host, "an IP address such as 127.0.0.1 or 0.0.0.0");
  config_require(port >= 0 && port <= 65535, "serve.port", std::to_string(port),
                 "0 (any free port) to 65535");
  config_require(io_threads >= 1 && io_threads <= 64, "serve.io_threads",
                 std::to_string(io_threads), "1 to 64");
  config_require(max_body_bytes >= 1024, "serve.max_body_bytes", std::to_string(max_body_bytes),
                 ">= 1024");
  config_require(http_timeout_s > 0, "serve.http_timeout_s", fmt::format("{}", http_timeout_s),
                 "> 0 seconds");
  config_require(drain_timeout_s >= 0, "serve.drain_timeout_s", fmt::format("{}", drain_timeout_s),
                 ">= 0 seconds");
  config_require(max_batch >= 1 && max_batch <= 4096, "serve.max_batch", std::to_string(max_batch),
                 "1 to 4096 rows");
  config_require(batch_wait_ms >= 0 && batch_wait_ms <= 60000, "serve.batch_wait_ms",
                 std::to_string(batch_wait_ms), "0 to 60000 ms");
  config_require(max_queue >= 1, "serve.max_queue", std::to_string(max_queue), ">= 1 request");
  config_require(default_max_tokens >= 1, "serve.default_max_tokens",
                 std::to_string(default_max_tokens), ">= 1");
  config_require(scheduler == "continuous" || scheduler == "static", "serve.scheduler", scheduler,
                 "continuous or static");
  config_require(block_size >= 1 && block_size <= 1024, "serve.block_size",
                 std::to_string(block_size), "1 to 1024 tokens");
  config_require(kv_blocks >= 0, "serve.kv_blocks", std::to_string(kv_blocks),
                 ">= 0 (0 = max_batch full contexts)");
  config_require(max_num_batched_tokens >= 1, "serve.max_num_batched_tokens",
                 std::to_string(max_num_batched_tokens), ">= 1 token");
}

}  // namespace shardlm::serve
