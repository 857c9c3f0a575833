// `shardlm serve`: the HTTP inference server (serve/server.h) over one model:
// OpenAI-style /v1/completions with batching, a response cache and streaming.
// Settings: --config FILE ([serve] section), --serve.key=value, or the flags.
// Prints "listening on URL" once it accepts connections (--port 0: a free port);
// SIGINT / SIGTERM finish the requests in flight, then exit 0. docs/serving.md.
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "launcher/app.h"
#include "launcher/section_flags.h"
#include "serve/server.h"

namespace shardlm::launcher {

namespace {

// The [serve] section: the server's keys (serve::ServeConfig::from) and what
// the command loads and runs the model with.
struct ServeArgs {
  std::string model, tokenizer;
  serve::ServeConfig cfg;
  std::string device = "cpu";
  int threads = 0;

  static ServeArgs from(const core::RunConfig& rc) {
    const core::ConfigSection s = rc.section("serve");
    ServeArgs a;
    a.model = s.require<std::string>("model");
    a.tokenizer = s.get("tokenizer", a.tokenizer);
    a.device = s.get("device", a.device);
    a.threads = s.get("threads", a.threads);
    a.cfg = serve::ServeConfig::from(s);
    rc.check_unknown_keys();
    return a;
  }
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
  auto f = std::make_shared<SectionFlags>(cmd, "serve");
  using Str = std::string;
  f->alias<Str>("--model,-m", "model",
                "Model directory (model.safetensors + config.json), .safetensors file or "
                "training checkpoint (required)");
  f->alias<Str>("--tokenizer,-t", "tokenizer",
                "Tokenizer file (default: tokenizer.json beside the model)");
  f->alias<Str>("--model-name", "model_name",
                "Name in responses (default: the directory of the weights)");
  f->alias<Str>("--host", "host", "Address to listen on (default 127.0.0.1)");
  f->alias<int64_t>("--port", "port", "Port (default 8000; 0 = any free port)");
  f->alias<Str>("--scheduler", "scheduler",
                "continuous (admit requests at every step, paged KV cache; default) or static "
                "(batch by batch)");
  f->alias<int64_t>("--max-batch", "max_batch",
                    "Sequences running together (static: rows per batch; default 8)");
  f->alias<int64_t>("--block-size", "block_size", "Tokens per KV-cache block (default 16)");
  f->alias<int64_t>("--kv-blocks", "kv_blocks",
                    "KV-cache blocks (0 = max-batch full contexts); bounds the cache's memory");
  f->alias<int64_t>("--max-num-batched-tokens", "max_num_batched_tokens",
                    "Tokens computed per step, prefill chunks + decodes (default 512)");
  f->alias_flag("--no-prefix-caching", "prefix_caching", false,
                "Do not share prompt KV blocks between requests");
  f->alias<Str>("--api-key", "api_key",
                "Require 'Authorization: Bearer KEY' on /v1/* (default: $SHARDLM_API_KEY)");
  f->alias<int64_t>("--batch-wait-ms", "batch_wait_ms",
                    "static: how long a request waits for others (default 5)");
  f->alias<int64_t>("--max-queue", "max_queue", "Waiting requests before 503 (default 256)");
  f->alias<int64_t>("--cache-entries", "cache_entries",
                    "Response cache entries (default 1024; 0 = off)");
  f->alias<int64_t>("--cache-bytes", "cache_bytes", "Response cache size bound (default 64 MiB)");
  f->alias<int64_t>("--max-body-bytes", "max_body_bytes",
                    "Larger request bodies get 413 (default 1 MiB)");
  f->alias<int64_t>("--default-max-tokens", "default_max_tokens",
                    "max_tokens of requests that give none (default 16)");
  f->alias<int64_t>("--io-threads", "io_threads", "HTTP threads (default 2)");
  f->alias<int64_t>("--threads", "threads", "CPU threads for the model (0 = default)");
  f->alias<Str>("--device", "device", "cpu, cuda or cuda:N (default cpu)");
  cmd->callback([f, &run] { run = [f] { return run_serve(ServeArgs::from(f->load())); }; });
}

}  // namespace shardlm::launcher
