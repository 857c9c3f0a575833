// The [monitor] section of a run configuration, and open_monitor(): what the
// trainer calls once to get its sink, its control channel and (embedded mode,
// rank 0) an in-process aggregator.
//
//   [monitor]
//   url = "ws://127.0.0.1:8765/ws"   # send to an aggregator ("" = none)
//   embedded = true                  # rank 0 starts the aggregator itself (port, bind)
//   jsonl = true                     # RUN_DIR/metrics/rank-N.jsonl on every rank
//   stdout = true                    # one line per step on rank 0
//   token = ""                       # producers and controlling viewers need it
//   producer_auth = true             # false: any producer is accepted (trusted networks only)
//   rating_token = ""                # raters' token: may vote, cannot control ("" = generated)
//   viewer_auth = false              # true: viewers and /api, /metrics need a token
//   inspect_per_minute = 12          # inspect requests of viewers without a token (shared)
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/comm.h"

#include "core/config.h"
#include "monitor/aggregator.h"
#include "monitor/control.h"
#include "monitor/sink.h"

namespace shardlm::monitor {

struct MonitorConfig {
  // rank side
  std::string url;           // ws://HOST:PORT/PATH of an aggregator; "" = no WebSocket sink
  bool jsonl = true;         // every rank appends its messages to RUN_DIR/metrics/rank-N.jsonl
  bool stdout_lines = true;  // rank 0 prints one line per step ("stdout" in TOML)
  int64_t every = 1;         // report every N steps
  int64_t queue_capacity = 4096;
  double heartbeat_s = 2.0;
  // aggregator (embedded in rank 0, or `shardlm monitor`)
  bool embedded = false;
  std::string bind = "127.0.0.1";
  int64_t port = 8765;
  std::string static_dir;  // "" = find_dashboard_dir()
  std::string token;  // "" = generated at start (aggregator); see resolve_producer_token (ranks)
  bool producer_auth = true;  // the aggregator refuses producers without the token
  std::string rating_token;   // may vote in the Rate tab; "" = RUN_DIR/monitor.rating-token or new
  bool viewer_auth = false;   // viewers (and /api/*, /metrics) need a token: 401 / unauthorized
  double inspect_per_minute = 12;  // inspect budget of viewers without a token (shared bucket)
  double inspect_burst = 4;
  std::string launch_command;
  int64_t history_max_messages = 200000;
  int64_t history_max_mb = 128;
  double straggler_fraction = 0.2;
  double dead_after_s = 10;
  double idle_timeout_s = 30;
  int64_t viewer_queue = 4096;
  int64_t threads = 1;

  static MonitorConfig from(const core::ConfigSection& s);
  void validate() const;
  // The aggregator settings for RUN_DIR.
  AggregatorConfig aggregator(const std::string& run_dir) const;
};

// What a rank gets: always a sink and a control channel (Null* when off).
struct Monitor {
  std::shared_ptr<MetricsSink> sink;
  std::shared_ptr<ControlChannel> control;
  std::unique_ptr<Aggregator> embedded;  // rank 0 with embedded = true
};

// The token every rank's WebSocket sink sends in hello, decided on rank 0 of
// `comm` and broadcast (ranks on other hosts need no shared filesystem):
// monitor.token when set; else with `embedded` a fresh one (rank 0's aggregator
// then uses it); else $SHARDLM_MONITOR_TOKEN (set by an aggregator that spawned
// this run); else RUN_DIR/monitor.token when it exists (written by `shardlm
// monitor --run-dir RUN_DIR`); else "" (an aggregator with producer_auth refuses
// the ranks; rank 0 warns). Collective over `comm`.
std::string resolve_producer_token(const MonitorConfig& cfg, const std::string& run_dir,
                                   core::Comm& comm);

// Builds the sinks this configuration asks for on `rank`; with `embedded`
// rank 0 first starts an Aggregator on its own thread and its WebSocket sink
// connects to it (url defaults to it). Every WebSocket sink says hello with
// cfg.token (rank 0 with `embedded`: its aggregator's token). With `embedded`
// and a `comm`, rank 0 sends the port it bound to the other ranks (collective
// over comm), so `port = 0` works on several ranks; without one they use
// cfg.port. Throws what the sinks and the aggregator throw (an unwritable run
// dir, a port in use).
Monitor open_monitor(const MonitorConfig& cfg, int rank, int world_size, const std::string& run_dir,
                     const std::string& run_id, core::Comm* comm = nullptr);

}  // namespace shardlm::monitor
