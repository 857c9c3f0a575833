// The rank side of the aggregator: a MetricsSink that sends every message
// over one WebSocket from its own io thread, and the ControlChannel through
// which rank 0 receives the dashboard's commands.
//
// publish() only moves the message into a bounded queue (dropping the oldest
// when full, counted in stats().dropped) and wakes the io thread; it never
// waits for the network. The io thread connects, says hello (with the token),
// waits for welcome (a refusal is logged with its fix), re-sends the
// last run_info, drains the queue with one write in flight, sends heartbeats,
// reads control messages, and on any failure reconnects with exponential
// backoff (messages queue up meanwhile, within the same bound).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "monitor/control.h"
#include "monitor/sink.h"

namespace shardlm::monitor {

struct WebSocketSinkOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8765;
  std::string path = "/ws";
  int world_size = 1;
  std::string run_id;
  std::string token;  // sent in hello; an aggregator with producer_auth refuses a rank without it
  size_t queue_capacity = 4096;  // messages waiting for the network
  size_t max_commands = 256;     // control commands waiting for poll()
  double heartbeat_s = 2.0;
  double reconnect_min_s = 0.1;  // first retry delay, doubled up to reconnect_max_s
  double reconnect_max_s = 5.0;
  double connect_timeout_s = 5.0;
  // After hello: an aggregator that accepted the connection but sends no
  // welcome within this long is given up on (reconnect with backoff), so a
  // hung aggregator never holds the sink; messages queue meanwhile.
  double welcome_timeout_s = 5.0;
  size_t max_message_bytes = size_t{4} << 20;  // largest message accepted from the aggregator

  // Parses "ws://host:port/path" into host, port and path; throws
  // core::ConfigError naming `key` when it is not such a URL.
  void set_url(const std::string& url, const std::string& key = "monitor.url");
};

class WebSocketSink : public MetricsSink, public ControlChannel {
 public:
  // Starts the io thread, which connects in the background.
  WebSocketSink(WebSocketSinkOptions options, int rank);
  // close(2 s): sends what is queued and `bye`, then stops the thread.
  ~WebSocketSink() override;

  void run_info(const std::string& run_id, int world_size, const nlohmann::json& info) override;
  void publish(std::string_view type, std::string line) override;
  // Waits (at most timeout_s) until the queue is empty while connected.
  void flush(double timeout_s = 0) override;
  SinkStats stats() const override;

  std::vector<ControlCommand> poll() override;
  void ack(const ControlCommand& cmd, int64_t step, bool ok = true,
           const std::string& message = "") override;
  // Answers an inspect request (`inspect_result`, not kept in the history).
  // `partial`: more answers to the same request follow (a streamed generation).
  void inspect_result(const ControlCommand& request, bool ok, const nlohmann::json& data,
                      const std::string& message = "", bool partial = false) override;

  // True once hello has been written on a live connection; waits at most timeout_s.
  bool wait_connected(double timeout_s) const;
  // Sends what is queued (waiting at most timeout_s), says bye, closes, joins the thread.
  void close(double timeout_s = 2.0);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace shardlm::monitor
