// WebSocketSink: the rank's connection to the aggregator (websocket_sink.h).
// Everything network-side runs on the sink's own io thread; the training
// thread only touches the queues under `mu`.
#include "monitor/websocket_sink.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include "core/error.h"
#include "core/log.h"

namespace shardlm::monitor {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;
using error_code = boost::system::error_code;

namespace {
int64_t steady_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}
std::chrono::milliseconds millis(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}
constexpr size_t kMaxUrgent = 1024;  // acks and inspect results waiting
}  // namespace

void WebSocketSinkOptions::set_url(const std::string& url, const std::string& key) {
  const std::string prefix = "ws://";
  auto bad = [&] { throw core::ConfigError("", key, url, "a URL like ws://127.0.0.1:8765/ws"); };
  if (url.rfind(prefix, 0) != 0) bad();
  std::string rest = url.substr(prefix.size());
  std::string hostport = rest.substr(0, rest.find('/'));
  path = rest.find('/') == std::string::npos ? "/ws" : rest.substr(rest.find('/'));
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == hostport.size()) bad();
  host = hostport.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int p = 0;
  for (char ch : hostport.substr(colon + 1)) {
    if (ch < '0' || ch > '9') bad();
    p = p * 10 + (ch - '0');
    if (p > 65535) bad();
  }
  if (p == 0) bad();
  port = static_cast<uint16_t>(p);
}

// ---- Impl ---------------------------------------------------------------------------------

struct WebSocketSink::Impl {
  struct Conn {
    explicit Conn(net::io_context& ioc) : ws(ioc), welcome_timer(ioc) {}
    websocket::stream<beast::tcp_stream> ws;
    net::steady_timer welcome_timer;
    beast::flat_buffer buf;
    std::string inflight, hello, info, bye;
  };

  Impl(WebSocketSinkOptions o, int r)
      : opt(std::move(o)),
        rank(r),
        resolver(ioc),
        retry(ioc),
        heartbeat(ioc),
        last_publish_ms(steady_ms()) {}

  WebSocketSinkOptions opt;
  int rank;
  net::io_context ioc;
  tcp::resolver resolver;
  net::steady_timer retry, heartbeat;
  std::thread thread;

  // io thread only
  std::shared_ptr<Conn> conn;
  int attempts = 0;
  uint64_t connections = 0;
  bool stopped = false;
  std::mt19937 rng{std::random_device{}()};

  // shared with the training thread
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::deque<std::string> queue, urgent;
  std::string heartbeat_line;  // at most one pending
  std::deque<ControlCommand> commands;
  std::string run_info_line;
  bool connected = false, write_pending = false, closing = false, closed_done = false;
  SinkStats st;
  std::atomic<int64_t> last_publish_ms;
  std::atomic<int64_t> last_step{-1};
  int warned = 0;
  int warned_auth = 0;    // io thread only
  int warned_silent = 0;  // io thread only: aggregators that never said welcome

  // ---- training thread -------------------------------------------------------------------
  void enqueue(std::string line, bool urgent_msg) {
    bool kick = false;
    {
      std::lock_guard<std::mutex> g(mu);
      ++st.published;
      if (closed_done) {
        ++st.dropped;
        return;
      }
      auto& q = urgent_msg ? urgent : queue;
      if (q.size() >= (urgent_msg ? kMaxUrgent : opt.queue_capacity)) {
        q.pop_front();
        ++st.dropped;
      }
      q.push_back(std::move(line));
      if (connected && !write_pending) kick = write_pending = true;
    }
    if (kick) net::post(ioc, [this] { write_next(); });
  }

  // ---- io thread ------------------------------------------------------------------------------
  void connect() {
    if (stopped) return;
    auto c = std::make_shared<Conn>(ioc);
    conn = c;
    resolver.async_resolve(
        opt.host, std::to_string(opt.port),
        [this, c](error_code ec, tcp::resolver::results_type results) {
          if (ec) return fail(c, ec);
          auto& sock = beast::get_lowest_layer(c->ws);
          sock.expires_after(millis(opt.connect_timeout_s));
          sock.async_connect(results, [this, c](error_code ec2, const tcp::endpoint&) {
            if (ec2) return fail(c, ec2);
            error_code nd;
            beast::get_lowest_layer(c->ws).socket().set_option(tcp::no_delay(true), nd);
            handshake(c);
          });
        });
  }

  void handshake(const std::shared_ptr<Conn>& c) {
    beast::get_lowest_layer(c->ws).expires_never();
    auto t = websocket::stream_base::timeout::suggested(beast::role_type::client);
    t.handshake_timeout = millis(opt.connect_timeout_s);
    // An aggregator whose host vanished (no FIN, no RST) is noticed: Beast pings
    // after half of this without incoming data and closes after all of it.
    t.idle_timeout = millis(std::max(10.0, 5 * opt.heartbeat_s));
    t.keep_alive_pings = true;
    c->ws.set_option(t);
    c->ws.read_message_max(opt.max_message_bytes);
    c->ws.async_handshake(
        opt.host + ":" + std::to_string(opt.port), opt.path, [this, c](error_code ec) {
          if (ec) return fail(c, ec);
          json h = envelope("hello");
          h["role"] = "producer";
          h["rank"] = rank;
          h["world_size"] = std::max(1, opt.world_size);
          if (!opt.run_id.empty()) h["run_id"] = opt.run_id;
          if (!opt.token.empty()) h["token"] = opt.token;
          h["client"] = "shardlm-rank";
          c->hello = dump(h);
          c->ws.text(true);
          c->ws.async_write(net::buffer(c->hello), [this, c](error_code e, size_t) {
            if (e) return fail(c, e);
            await_welcome(c);
          });
          c->welcome_timer.expires_after(millis(opt.welcome_timeout_s));
          c->welcome_timer.async_wait([this, c](error_code e) {
            if (e || c != conn) return;     // cancelled: welcome (or a failure) came first
            if (warned_silent++ % 20 == 0)  // once, then every 20th retry
              core::log::warn(
                  "monitor: the aggregator at {}:{} accepted rank {} but sent no welcome within "
                  "{} s; reconnecting (metrics queue meanwhile)",
                  opt.host, opt.port, rank, opt.welcome_timeout_s);
            fail(c, net::error::timed_out);
          });
        });
  }

  // Nothing is sent before the aggregator accepted this rank: a refused hello
  // (wrong or missing token) would otherwise swallow the queued messages.
  void await_welcome(const std::shared_ptr<Conn>& c) {
    c->ws.async_read(c->buf, [this, c](error_code ec, size_t n) {
      c->welcome_timer.cancel();
      if (ec) return fail(c, ec);
      json j = json::parse(beast::buffers_to_string(c->buf.data()), nullptr, false);
      c->buf.consume(n);
      const std::string type = j.is_object() ? j.value("type", std::string()) : "";
      if (type != "welcome") {
        if (type == "error" && j.value("code", std::string()) == "unauthorized") {
          if (warned_auth++ % 20 == 0)  // once, then every 20th retry
            core::log::warn(
                "monitor: the aggregator at {}:{} refused rank {}: {}. Set monitor.token to the "
                "aggregator's token (RUN_DIR/monitor.token of `shardlm monitor --run-dir "
                "RUN_DIR`), or set train.run_dir to that RUN_DIR",
                opt.host, opt.port, rank, opt.token.empty() ? "no token" : "wrong token");
        } else if (type == "error") {
          incoming(j.dump());
        }
        return fail(c, net::error::connection_refused);
      }
      {
        std::lock_guard<std::mutex> g(mu);
        c->info = run_info_line;
      }
      if (c->info.empty()) return ready(c);
      c->ws.async_write(net::buffer(c->info), [this, c](error_code e2, size_t) {
        if (e2) return fail(c, e2);
        ready(c);
      });
    });
  }

  void ready(const std::shared_ptr<Conn>& c) {
    if (c != conn || stopped) return;
    bool kick = false;
    {
      std::lock_guard<std::mutex> g(mu);
      connected = true;
      attempts = 0;
      if (++connections > 1) ++st.reconnects;
      if (!write_pending && (!queue.empty() || !urgent.empty() || closing))
        kick = write_pending = true;
    }
    cv.notify_all();
    read(c);
    if (kick) write_next();
  }

  void read(const std::shared_ptr<Conn>& c) {
    c->ws.async_read(c->buf, [this, c](error_code ec, size_t n) {
      if (ec) return fail(c, ec);
      std::string text = beast::buffers_to_string(c->buf.data());
      c->buf.consume(n);
      incoming(text);
      read(c);
    });
  }

  void incoming(const std::string& text) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return;
    const std::string type = j.value("type", std::string());
    if (type == "control" || type == "inspect") {
      try {
        ControlCommand c = ControlCommand::from_json(j);
        std::lock_guard<std::mutex> g(mu);
        if (commands.size() >= opt.max_commands) commands.pop_front();
        commands.push_back(std::move(c));
      } catch (const std::exception& e) {
        core::log::warn("monitor: ignoring a control message: {}", e.what());
      }
    } else if (type == "error" && warned < 5) {
      ++warned;
      core::log::warn("monitor: the aggregator says: {}", j.value("message", std::string("?")));
    }
  }

  void write_next() {
    auto c = conn;
    bool bye = false, have = false;
    {
      std::lock_guard<std::mutex> g(mu);
      if (!c || stopped || !connected) {
        write_pending = false;
        cv.notify_all();
        return;
      }
      have = true;
      if (!urgent.empty()) {
        c->inflight = std::move(urgent.front());
        urgent.pop_front();
      } else if (!heartbeat_line.empty()) {
        c->inflight = std::move(heartbeat_line);
        heartbeat_line.clear();
      } else if (!queue.empty()) {
        c->inflight = std::move(queue.front());
        queue.pop_front();
      } else {
        have = false;
        bye = closing;
        write_pending = bye;  // while closing, nothing else may write after bye
      }
    }
    if (!have) {
      cv.notify_all();
      if (bye) say_bye(c);
      return;
    }
    c->ws.text(true);
    c->ws.async_write(net::buffer(c->inflight), [this, c](error_code ec, size_t) {
      if (ec) {
        {
          std::lock_guard<std::mutex> g(mu);
          write_pending = false;
          // Probably never delivered: put it back so a reconnect sends it (at least once).
          if (queue.size() < opt.queue_capacity)
            queue.push_front(std::move(c->inflight));
          else
            ++st.dropped;
        }
        return fail(c, ec);
      }
      {
        std::lock_guard<std::mutex> g(mu);
        ++st.sent;
      }
      write_next();
    });
  }

  void say_bye(const std::shared_ptr<Conn>& c) {
    json b = envelope("bye");
    b["rank"] = rank;
    b["reason"] = "closed";
    c->bye = dump(b);
    c->ws.async_write(net::buffer(c->bye), [this, c](error_code ec, size_t) {
      if (ec) return done_closing();
      c->ws.async_close(websocket::close_code::normal, [this](error_code) { done_closing(); });
    });
  }

  void done_closing() {
    {
      std::lock_guard<std::mutex> g(mu);
      closed_done = true;
    }
    cv.notify_all();
  }

  void fail(const std::shared_ptr<Conn>& c, error_code ec) {
    if (c != conn) return;  // a stale connection's handler
    conn.reset();
    error_code ignored;
    beast::get_lowest_layer(c->ws).socket().close(ignored);
    bool was_closing;
    {
      std::lock_guard<std::mutex> g(mu);
      if (connected)
        core::log::debug("monitor: connection to {}:{} lost: {}", opt.host, opt.port, ec.message());
      connected = false;
      write_pending = false;
      heartbeat_line.clear();
      was_closing = closing;
    }
    cv.notify_all();
    if (stopped) return;
    if (was_closing) return done_closing();
    double delay =
        std::min(opt.reconnect_max_s, opt.reconnect_min_s * double(1u << std::min(attempts, 20)));
    delay *= std::uniform_real_distribution<double>(0.5, 1.0)(rng);
    ++attempts;
    retry.expires_after(millis(delay));
    retry.async_wait([this](error_code e) {
      if (!e && !stopped) connect();
    });
  }

  void beat() {
    heartbeat.expires_after(millis(opt.heartbeat_s));
    heartbeat.async_wait([this](error_code ec) {
      if (ec || stopped) return;
      bool kick = false;
      {
        std::lock_guard<std::mutex> g(mu);
        if (connected) {
          json h = envelope("heartbeat");
          h["rank"] = rank;
          if (last_step >= 0) h["step"] = last_step.load();
          h["idle_s"] = std::max<int64_t>(0, steady_ms() - last_publish_ms.load()) / 1000.0;
          h["dropped"] = st.dropped;
          heartbeat_line = dump(h);
          if (!write_pending) kick = write_pending = true;
        }
      }
      if (kick) write_next();
      beat();
    });
  }

  void begin_close() {
    bool now_idle;
    {
      std::lock_guard<std::mutex> g(mu);
      if (!connected || !conn) {
        st.dropped += queue.size();
        queue.clear();
        closed_done = true;
        cv.notify_all();
        return;
      }
      now_idle = !write_pending;
      if (now_idle) write_pending = true;
    }
    if (now_idle) write_next();
  }

  void shutdown_now() {
    stopped = true;
    retry.cancel();
    heartbeat.cancel();
    resolver.cancel();
    if (conn) {
      error_code ignored;
      beast::get_lowest_layer(conn->ws).socket().close(ignored);
      conn.reset();
    }
    std::lock_guard<std::mutex> g(mu);
    connected = false;
    st.dropped += queue.size() + urgent.size();
    queue.clear();
    urgent.clear();
  }
};

// ---- WebSocketSink -----------------------------------------------------------------------------

WebSocketSink::WebSocketSink(WebSocketSinkOptions options, int rank)
    : MetricsSink(rank), impl_(std::make_shared<Impl>(std::move(options), rank)) {
  Impl* p = impl_.get();
  net::post(p->ioc, [p] { p->connect(); });
  p->beat();
  p->thread = std::thread([p] { p->ioc.run(); });
}

WebSocketSink::~WebSocketSink() {
  close(2.0);
}

void WebSocketSink::close(double timeout_s) {
  Impl* p = impl_.get();
  if (!p->thread.joinable()) return;
  {
    std::lock_guard<std::mutex> g(p->mu);
    p->closing = true;
  }
  net::post(p->ioc, [p] { p->begin_close(); });
  {
    std::unique_lock<std::mutex> lk(p->mu);
    p->cv.wait_for(lk, millis(timeout_s), [p] { return p->closed_done; });
    p->closed_done = true;  // later publish() calls are counted as dropped
  }
  net::post(p->ioc, [p] { p->shutdown_now(); });
  p->thread.join();
}

void WebSocketSink::run_info(const std::string& run_id, int world_size,
                             const nlohmann::json& info) {
  std::string line =
      dump(encode_run_info(rank(), run_id.empty() ? impl_->opt.run_id : run_id, world_size, info));
  bool send_now;
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->run_info_line = line;  // re-sent after every reconnect, first thing after hello
    send_now = impl_->connected;
  }
  if (send_now) impl_->enqueue(std::move(line), true);
}

void WebSocketSink::publish(std::string_view type, std::string line) {
  impl_->last_publish_ms = steady_ms();
  if (type == "step") {
    // The heartbeat carries the last step; read it back cheaply from the line.
    auto pos = line.find("\"step\":");
    if (pos != std::string::npos)
      impl_->last_step = std::strtoll(line.c_str() + pos + 7, nullptr, 10);
  }
  impl_->enqueue(std::move(line), false);
}

void WebSocketSink::flush(double timeout_s) {
  std::unique_lock<std::mutex> lk(impl_->mu);
  impl_->cv.wait_for(lk, millis(timeout_s), [this] {
    auto* p = impl_.get();
    return !p->connected || (p->queue.empty() && p->urgent.empty() && !p->write_pending);
  });
}

SinkStats WebSocketSink::stats() const {
  std::lock_guard<std::mutex> g(impl_->mu);
  SinkStats s = impl_->st;
  s.queued = impl_->queue.size() + impl_->urgent.size();
  s.connected = impl_->connected;
  return s;
}

std::vector<ControlCommand> WebSocketSink::poll() {
  std::lock_guard<std::mutex> g(impl_->mu);
  std::vector<ControlCommand> out(std::make_move_iterator(impl_->commands.begin()),
                                  std::make_move_iterator(impl_->commands.end()));
  impl_->commands.clear();
  return out;
}

void WebSocketSink::ack(const ControlCommand& cmd, int64_t step, bool ok,
                        const std::string& message) {
  impl_->enqueue(dump(encode_ack(rank(), cmd, step, ok, message)), true);
}

void WebSocketSink::inspect_result(const ControlCommand& request, bool ok,
                                   const nlohmann::json& data, const std::string& message,
                                   bool partial) {
  json r = envelope("inspect_result");
  r["rank"] = rank();
  r["id"] = request.id;
  r["what"] = request.inspect_what;
  r["ok"] = ok;
  if (partial) r["partial"] = true;
  if (!message.empty()) r["message"] = message;
  if (data.is_object()) r["data"] = data;
  impl_->enqueue(dump(r), true);
}

bool WebSocketSink::wait_connected(double timeout_s) const {
  std::unique_lock<std::mutex> lk(impl_->mu);
  return impl_->cv.wait_for(lk, millis(timeout_s), [this] { return impl_->connected; });
}

}  // namespace shardlm::monitor
