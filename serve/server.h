// Server: the HTTP/1.1 front of `shardlm serve`, on Boost.Beast. A few Asio
// threads read requests, check them (protocol.h), tokenize, answer from the
// response cache or queue a Job on the Engine, and write the answer: one JSON
// body, or Server-Sent Events with chunked transfer as the tokens arrive. Its
// shape follows the monitor's aggregator (a listener, one session per
// connection on its own strand, timeouts on every socket, a signal_set).
// Endpoints and semantics: docs/serving.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "serve/cache.h"
#include "serve/config.h"
#include "serve/engine.h"
#include "serve/metrics.h"

namespace shardlm::serve {

class Server {
 public:
  // cfg is validated (ConfigError names the field). `engine` owns the model;
  // `metrics` is the one the engine updates too.
  Server(ServeConfig cfg, std::shared_ptr<Engine> engine, std::shared_ptr<ServeMetrics> metrics);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts the I/O threads; returns once it is listening. Throws
  // core::Error naming the address when it cannot listen.
  void start();
  // Graceful: stops accepting connections, answers new requests with 503, lets
  // the engine finish every queued and running request, waits (at most
  // drain_timeout_s) for their responses to be written, then closes every
  // connection and joins the threads. Idempotent; safe from any thread.
  void stop();
  // Blocks until stop() has finished (called elsewhere, or by SIGINT/SIGTERM
  // when cfg.handle_signals).
  void wait();

  uint16_t port() const;
  std::string url() const;  // "http://HOST:PORT"
  const std::string& model_name() const;
  const ResponseCache& cache() const;

  struct Impl;  // server.cpp; public so that its session class can name it

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace shardlm::serve
