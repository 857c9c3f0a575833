// The monitor's aggregator: one Boost.Beast server on one port for
//   - producers (training ranks, through WebSocketSink),
//   - viewers (dashboards) over WebSocket, with history replay and control,
//   - plain HTTP: the dashboard's built files and Prometheus text at /metrics.
// It runs its io_context on its own threads, so it can live in `shardlm
// monitor` or inside rank 0 (monitor.embedded = true). Protocol:
// docs/monitor-protocol.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "monitor/hub.h"

namespace shardlm::monitor {

struct AggregatorConfig {
  std::string bind = "127.0.0.1";
  uint16_t port = 8765;       // 0: any free port (read it back with Aggregator::port())
  std::string run_dir = ".";  // metrics.jsonl, monitor.token, checkpoints/, launch-N.log
  std::string static_dir;     // the dashboard's built files; "" = find_dashboard_dir()
  std::string token;          // "" = RUN_DIR/monitor.token's (a restart), else a fresh one
  // Raters' token: may vote in the Rate tab, cannot control the run. "" =
  // RUN_DIR/monitor.rating-token's (a restart), else a fresh one.
  std::string rating_token;
  bool producer_auth = true;  // producers must send the token; false: trusted networks only
  // Viewers must present a token (the control or the rating token) in hello, and
  // HTTP requests to /api/* and /metrics one as `Authorization: Bearer` or
  // `?token=`; otherwise error unauthorized / 401. The dashboard's files stay open.
  bool viewer_auth = false;
  // `inspect` requests (they make rank 0 or a generation process compute) from
  // viewers without a token: a bucket of `inspect_burst` refilled at
  // `inspect_per_minute`, shared by all of them; beyond it error rate_limited.
  double inspect_per_minute = 12;
  double inspect_burst = 4;
  std::string shardlm;  // the executable generation processes run; "" = this one
  int max_generations = 4;
  bool write_token_file = true;  // RUN_DIR/monitor.token, mode 0600
  std::string launch_command;    // RunLauncher template; "" = start_run refused
  int threads = 1;               // io threads
  HistoryOptions history;
  TrackerOptions tracker;
  size_t viewer_queue = 4096;  // messages per viewer before its oldest are dropped
  size_t max_connections = 1024;
  size_t max_viewer_message = size_t{64} << 10;
  size_t max_producer_message = size_t{4} << 20;
  double hello_timeout_s = 10;
  double idle_timeout_s = 30;  // a silent peer is pinged, then closed after this
  double http_timeout_s = 10;
  double tick_s = 0.5;          // dead-rank checks, run-process polling
  size_t max_errors = 100;      // malformed messages before a connection is closed
  bool handle_signals = false;  // SIGINT/SIGTERM stop the server (the CLI sets it)
};

struct AggregatorStats {
  uint64_t connections = 0;  // open sockets (HTTP and WebSocket)
  uint64_t viewers = 0, producers = 0;
  uint64_t producers_refused = 0;  // producer hellos without the right token
  uint64_t viewers_refused = 0;    // viewer hellos refused (viewer_auth)
  uint64_t http_refused = 0;       // HTTP requests answered 401 (viewer_auth)
  uint64_t inspect_limited = 0;    // inspect requests refused by the rate limit
  uint64_t received = 0;           // WebSocket messages read
  uint64_t broadcast = 0;          // messages sent to viewers (counted once per message)
  uint64_t viewer_dropped = 0;     // dropped from slow viewers' queues
  uint64_t errors = 0;             // `error` answers sent
  uint64_t max_viewer_queue = 0;   // the longest any viewer queue has been
  uint64_t history_messages = 0, history_bytes = 0;
  int64_t next_seq = 0;
};

class Aggregator {
 public:
  explicit Aggregator(AggregatorConfig cfg);
  ~Aggregator();  // stop()
  Aggregator(const Aggregator&) = delete;
  Aggregator& operator=(const Aggregator&) = delete;

  // Loads RUN_DIR/metrics.jsonl, writes the token file, binds and starts the io
  // threads; returns once it is listening. Throws core::Error naming the address
  // when binding fails, core::DataError when the run dir is unusable.
  void start();
  // Closes every connection and joins the io threads. Idempotent.
  void stop();
  // Blocks until stop() is called or (handle_signals) SIGINT/SIGTERM arrives.
  void wait();

  uint16_t port() const;
  const std::string& token() const;
  const std::string& rating_token() const;
  // "http://BIND:PORT/"
  std::string url() const;
  AggregatorStats stats() const;

 public:
  struct Impl;  // aggregator.cpp; public so that its session classes can name it

 private:
  std::shared_ptr<Impl> impl_;
};

// The dashboard's built files: $SHARDLM_DASHBOARD_DIR, else monitor/dashboard/dist
// of the source tree this was built from, else <exe>/../share/shardlm/dashboard;
// "" when none exists.
std::string find_dashboard_dir();

// 32 hex digits from the system's random source.
std::string generate_token();

}  // namespace shardlm::monitor
