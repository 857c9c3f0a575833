// [monitor] configuration and the sink set-up of a rank (config.h).
#include "monitor/config.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "core/log.h"
#include "monitor/launch.h"
#include "monitor/websocket_sink.h"

namespace shardlm::monitor {

using core::config_require;

MonitorConfig MonitorConfig::from(const core::ConfigSection& s) {
  MonitorConfig c;
  c.url = s.get("url", c.url);
  c.jsonl = s.get("jsonl", c.jsonl);
  c.stdout_lines = s.get("stdout", c.stdout_lines);
  c.every = s.get("every", c.every);
  c.queue_capacity = s.get("queue_capacity", c.queue_capacity);
  c.heartbeat_s = s.get("heartbeat_s", c.heartbeat_s);
  c.embedded = s.get("embedded", c.embedded);
  c.bind = s.get("bind", c.bind);
  c.port = s.get("port", c.port);
  c.static_dir = s.get("static_dir", c.static_dir);
  c.token = s.get("token", c.token);
  c.producer_auth = s.get("producer_auth", c.producer_auth);
  c.rating_token = s.get("rating_token", c.rating_token);
  c.viewer_auth = s.get("viewer_auth", c.viewer_auth);
  c.inspect_per_minute = s.get("inspect_per_minute", c.inspect_per_minute);
  c.inspect_burst = s.get("inspect_burst", c.inspect_burst);
  c.launch_command = s.get("launch_command", c.launch_command);
  c.history_max_messages = s.get("history_max_messages", c.history_max_messages);
  c.history_max_mb = s.get("history_max_mb", c.history_max_mb);
  c.straggler_fraction = s.get("straggler_fraction", c.straggler_fraction);
  c.dead_after_s = s.get("dead_after_s", c.dead_after_s);
  c.idle_timeout_s = s.get("idle_timeout_s", c.idle_timeout_s);
  c.viewer_queue = s.get("viewer_queue", c.viewer_queue);
  c.threads = s.get("threads", c.threads);
  return c;
}

void MonitorConfig::validate() const {
  if (!url.empty()) {
    WebSocketSinkOptions o;
    o.set_url(url, "url");
  }
  config_require(every >= 1, "every", std::to_string(every), "an integer >= 1");
  config_require(queue_capacity >= 1, "queue_capacity", std::to_string(queue_capacity),
                 "an integer >= 1");
  config_require(heartbeat_s > 0, "heartbeat_s", std::to_string(heartbeat_s),
                 "a number of seconds > 0");
  config_require(port >= 0 && port <= 65535, "port", std::to_string(port),
                 "a TCP port in 0..65535");
  config_require(history_max_messages >= 100, "history_max_messages",
                 std::to_string(history_max_messages), "an integer >= 100");
  config_require(history_max_mb >= 1, "history_max_mb", std::to_string(history_max_mb),
                 "an integer >= 1");
  config_require(straggler_fraction > 0, "straggler_fraction", std::to_string(straggler_fraction),
                 "a fraction > 0 (0.2 = 20% slower than the median)");
  config_require(dead_after_s > 0, "dead_after_s", std::to_string(dead_after_s),
                 "a number of seconds > 0");
  config_require(idle_timeout_s > 0, "idle_timeout_s", std::to_string(idle_timeout_s),
                 "a number of seconds > 0");
  config_require(viewer_queue >= 16, "viewer_queue", std::to_string(viewer_queue),
                 "an integer >= 16");
  config_require(threads >= 1 && threads <= 64, "threads", std::to_string(threads),
                 "an integer in 1..64");
  config_require(inspect_per_minute > 0, "inspect_per_minute", std::to_string(inspect_per_minute),
                 "requests per minute > 0");
  config_require(inspect_burst >= 1, "inspect_burst", std::to_string(inspect_burst),
                 "a number of requests >= 1");
  config_require(rating_token.empty() || rating_token != token, "rating_token",
                 "(the control token)", "a token different from monitor.token");
}

AggregatorConfig MonitorConfig::aggregator(const std::string& run_dir) const {
  AggregatorConfig a;
  a.bind = bind;
  a.port = static_cast<uint16_t>(port);
  a.run_dir = run_dir;
  a.static_dir = static_dir;
  a.token = token;
  a.producer_auth = producer_auth;
  a.rating_token = rating_token;
  a.viewer_auth = viewer_auth;
  a.inspect_per_minute = inspect_per_minute;
  a.inspect_burst = inspect_burst;
  a.launch_command = launch_command;
  a.threads = static_cast<int>(threads);
  a.history.max_messages = static_cast<size_t>(history_max_messages);
  a.history.max_bytes = static_cast<size_t>(history_max_mb) << 20;
  a.tracker.straggler_fraction = straggler_fraction;
  a.tracker.dead_after_s = dead_after_s;
  a.idle_timeout_s = idle_timeout_s;
  a.viewer_queue = static_cast<size_t>(viewer_queue);
  return a;
}

std::string resolve_producer_token(const MonitorConfig& cfg, const std::string& run_dir,
                                   core::Comm& comm) {
  std::string token;
  if (comm.rank() == 0) {
    const auto file = std::filesystem::path(run_dir) / "monitor.token";
    const char* env = std::getenv(kMonitorTokenEnv);
    std::error_code ec;
    if (!cfg.token.empty()) {
      token = cfg.token;
    } else if (cfg.embedded) {
      token = generate_token();
    } else if (env && *env) {
      token = env;
    } else if (std::filesystem::is_regular_file(file, ec)) {
      std::ifstream in(file);
      in >> token;
      if (token.empty())
        core::log::warn("monitor: {} is empty: no token for the ranks", file.string());
    }
    if (token.empty() && !cfg.url.empty())
      core::log::warn(
          "monitor: no token for {} (monitor.token unset, no ${}, no {}): an aggregator with "
          "producer_auth will refuse the ranks; set monitor.token to its token or train.run_dir to "
          "its run dir",
          cfg.url, kMonitorTokenEnv, file.string());
  }
  return core::broadcast_string(comm, token);
}

Monitor open_monitor(const MonitorConfig& cfg, int rank, int world_size, const std::string& run_dir,
                     const std::string& run_id, core::Comm* comm) {
  Monitor m;
  std::string url = cfg.url;
  if (cfg.embedded && rank == 0) {
    m.embedded = std::make_unique<Aggregator>(cfg.aggregator(run_dir));
    m.embedded->start();
    core::log::info("monitor: dashboard at {} (control token {}, also in {}/monitor.token)",
                    m.embedded->url(), m.embedded->token(), run_dir);
    if (url.empty()) url = fmt::format("ws://127.0.0.1:{}/ws", m.embedded->port());
  }
  if (cfg.embedded && comm) {  // the port rank 0 bound (cfg.port may be 0: any free one)
    const int64_t port =
        core::all_reduce(*comm, m.embedded ? static_cast<int64_t>(m.embedded->port()) : int64_t{0},
                         core::Reduce::kMax);
    if (rank != 0 && url.empty()) url = fmt::format("ws://127.0.0.1:{}/ws", port);
  } else if (cfg.embedded && url.empty()) {
    url = fmt::format("ws://127.0.0.1:{}/ws",
                      cfg.port);  // the other ranks reach rank 0's (same host)
  }
  auto fan = std::make_shared<FanoutSink>(rank);
  if (cfg.jsonl)
    fan->add(std::make_unique<JsonlSink>(
        (std::filesystem::path(run_dir) / "metrics" / fmt::format("rank-{}.jsonl", rank)).string(),
        rank));
  if (cfg.stdout_lines && rank == 0) fan->add(std::make_unique<StdoutSink>(rank));
  if (!url.empty()) {
    WebSocketSinkOptions o;
    o.set_url(url);
    o.world_size = world_size;
    o.run_id = run_id;
    o.queue_capacity = static_cast<size_t>(cfg.queue_capacity);
    o.heartbeat_s = cfg.heartbeat_s;
    o.token = m.embedded ? m.embedded->token() : cfg.token;
    auto ws = std::make_shared<WebSocketSink>(o, rank);
    fan->add_shared(ws);
    m.control = ws;
  }
  if (fan->size() == 0)
    m.sink = std::make_shared<NullSink>(rank);
  else
    m.sink = fan;
  if (!m.control) m.control = std::make_shared<NullControl>();
  return m;
}

}  // namespace shardlm::monitor
