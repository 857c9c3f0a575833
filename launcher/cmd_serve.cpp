// `shardlm serve`: the HTTP inference server (serve/server.h) over one model:
// OpenAI-style /v1/completions with batching, a response cache and streaming.
// Prints "listening on URL" once it accepts connections (--port 0: a free port);
// SIGINT / SIGTERM finish the requests in flight, then exit 0. docs/serving.md.
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "launcher/app.h"
#include "serve/server.h"

namespace shardlm::launcher {

namespace {

struct ServeArgs {
  std::string model, tokenizer;
  serve::ServeConfig cfg;
  std::string device = "cpu";
  int threads = 0;
};

int run_serve(ServeArgs a) {
  a.cfg.handle_signals = true;
  if (a.cfg.api_key.empty())
    if (const char* k = std::getenv("SHARDLM_API_KEY")) a.cfg.api_key = k;
  a.cfg.validate();
  serve::EngineConfig ec = serve::engine_config(a.cfg);
  ec.device = a.device;
  ec.threads = a.threads;
  auto metrics = std::make_shared<serve::ServeMetrics>();
  auto engine = std::make_shared<serve::Engine>(a.model, a.tokenizer, ec, metrics);
  serve::Server server(a.cfg, engine, metrics);
  server.start();
  const auto& mi = engine->info();
  std::printf("shardlm serve: model %s (%lld parameters, context %lld) listening on %s\n",
              server.model_name().c_str(), static_cast<long long>(mi.parameters),
              static_cast<long long>(mi.context_length), server.url().c_str());
  if (mi.scheduler == "continuous")
    std::printf("shardlm serve: continuous scheduler, KV cache %d blocks x %d tokens (%.1f MiB)\n",
                mi.kv_blocks, mi.block_size, static_cast<double>(mi.kv_bytes) / (1 << 20));
  std::fflush(stdout);
  server.wait();
  std::printf("shardlm serve: stopped\n");
  std::fflush(stdout);
  return 0;
}

}  // namespace

void register_serve(CLI::App& app, Context&, Command& run) {
  auto* cmd = app.add_subcommand("serve", "HTTP inference server (OpenAI-style completions)");
  auto a = std::make_shared<ServeArgs>();
  serve::ServeConfig& c = a->cfg;
  cmd->add_option("--model,-m", a->model,
                  "Model directory (model.safetensors + config.json), .safetensors file or "
                  "training checkpoint")
      ->required();
  cmd->add_option("--tokenizer,-t", a->tokenizer,
                  "Tokenizer file (default: tokenizer.json beside the model)");
  cmd->add_option("--model-name", c.model_name,
                  "Name in responses (default: the directory of the weights)");
  cmd->add_option("--host", c.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", c.port, "Port (0 = any free port)")->capture_default_str();
  cmd->add_option("--scheduler", c.scheduler,
                  "continuous (admit requests at every step, paged KV cache) or static (batch by "
                  "batch)")
      ->check(CLI::IsMember({"continuous", "static"}))
      ->capture_default_str();
  cmd->add_option("--max-batch", c.max_batch, "Sequences running together (static: rows per batch)")
      ->capture_default_str();
  cmd->add_option("--block-size", c.block_size, "Tokens per KV-cache block")->capture_default_str();
  cmd->add_option("--kv-blocks", c.kv_blocks,
                  "KV-cache blocks (0 = max-batch full contexts); bounds the cache's memory")
      ->capture_default_str();
  cmd->add_option("--max-num-batched-tokens", c.max_num_batched_tokens,
                  "Tokens computed per step (prefill chunks + decodes)")
      ->capture_default_str();
  cmd->add_flag("--no-prefix-caching{false}", c.prefix_caching,
                "Do not share prompt KV blocks between requests");
  cmd->add_option("--api-key", c.api_key,
                  "Require 'Authorization: Bearer KEY' on /v1/* (default: $SHARDLM_API_KEY)");
  cmd->add_option("--batch-wait-ms", c.batch_wait_ms, "How long a request waits for others")
      ->capture_default_str();
  cmd->add_option("--max-queue", c.max_queue, "Waiting requests before 503")->capture_default_str();
  cmd->add_option("--cache-entries", c.cache_entries, "Response cache entries (0 = off)")
      ->capture_default_str();
  cmd->add_option("--cache-bytes", c.cache_bytes, "Response cache size bound")
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", c.max_body_bytes, "Larger request bodies get 413")
      ->capture_default_str();
  cmd->add_option("--default-max-tokens", c.default_max_tokens,
                  "max_tokens of requests that give none")
      ->capture_default_str();
  cmd->add_option("--io-threads", c.io_threads, "HTTP threads")->capture_default_str();
  cmd->add_option("--threads", a->threads, "CPU threads for the model (0 = default)");
  cmd->add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->callback([a, &run] { run = [a] { return run_serve(*a); }; });
}

}  // namespace shardlm::launcher
