// The aggregator's server (aggregator.h), after Boost.Beast's advanced_server
// and chat-multi examples: a listener hands each TCP connection to an HTTP
// session on its own strand; an upgrade request turns it into a WebSocket
// session. The hub (this Impl, under one mutex) keeps the history and the rank
// tracker and broadcasts each message, serialised once into a shared string,
// to every viewer. Each session has one write in flight and a bounded queue:
// a slow viewer loses its oldest messages and slows nobody else.
#include "monitor/aggregator.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "core/error.h"
#include "core/log.h"
#include "monitor/control.h"
#include "monitor/launch.h"
#include "monitor/protocol.h"
#include "monitor/workbench.h"

namespace shardlm::monitor {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace fs = std::filesystem;
using tcp = net::ip::tcp;
using json = nlohmann::json;
using error_code = boost::system::error_code;

namespace {

double steady_now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::chrono::milliseconds ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

bool token_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || a.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string server_name() {
  return std::string("shardlm-monitor ") + SHARDLM_VERSION;
}

// Served at / when the dashboard has not been built: it says so and shows the live stream.
const char* kFallbackPage = R"html(<!doctype html>
<html><head><meta charset="utf-8"><title>shardlm monitor</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em;height:70vh;overflow:auto}</style>
</head><body><h1>shardlm monitor</h1>
<p>The dashboard is not built (<code>./shardlm.sh build</code> builds <code>monitor/dashboard/dist</code>).
Prometheus metrics: <a href="/metrics">/metrics</a>. Live messages:</p><pre id="log"></pre>
<script>
const log=document.getElementById('log');
const ws=new WebSocket((location.protocol==='https:'?'wss://':'ws://')+location.host+'/ws');
ws.onopen=()=>ws.send(JSON.stringify({v:1,type:'hello',role:'viewer',client:'fallback'}));
ws.onmessage=(e)=>{log.textContent+=e.data+'\n';if(log.textContent.length>200000)log.textContent=log.textContent.slice(-100000);log.scrollTop=log.scrollHeight;};
</script></body></html>
)html";

const char* mime_type(const std::string& path) {
  auto ext = fs::path(path).extension().string();
  static const std::map<std::string, const char*> types = {{".html", "text/html; charset=utf-8"},
                                                           {".js", "text/javascript"},
                                                           {".mjs", "text/javascript"},
                                                           {".css", "text/css"},
                                                           {".json", "application/json"},
                                                           {".map", "application/json"},
                                                           {".svg", "image/svg+xml"},
                                                           {".png", "image/png"},
                                                           {".jpg", "image/jpeg"},
                                                           {".ico", "image/x-icon"},
                                                           {".woff", "font/woff"},
                                                           {".woff2", "font/woff2"},
                                                           {".txt", "text/plain; charset=utf-8"},
                                                           {".wasm", "application/wasm"}};
  auto it = types.find(ext);
  return it == types.end() ? "application/octet-stream" : it->second;
}

}  // namespace

std::string generate_token() {
  std::random_device rd;
  std::string t;
  for (int i = 0; i < 4; ++i) t += fmt::format("{:08x}", rd());
  return t;
}

std::string find_dashboard_dir() {
  std::error_code ec;
  auto ok = [&](const fs::path& p) { return fs::is_regular_file(p / "index.html", ec); };
  if (const char* env = std::getenv("SHARDLM_DASHBOARD_DIR"); env && *env) return env;
#ifdef SHARDLM_SOURCE_DIR
  if (fs::path p = fs::path(SHARDLM_SOURCE_DIR) / "monitor/dashboard/dist"; ok(p))
    return p.string();
#endif
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    if (fs::path p = exe.parent_path().parent_path() / "share/shardlm/dashboard"; ok(p))
      return p.string();
  }
  return "";
}

// ---- the hub --------------------------------------------------------------------------

class WsSession;
class HttpSession;

struct Aggregator::Impl : std::enable_shared_from_this<Aggregator::Impl> {
  explicit Impl(AggregatorConfig c)
      : cfg(std::move(c)),
        tick_timer(ioc),
        signals(ioc),
        history(cfg.history),
        tracker(cfg.tracker),
        launcher(cfg.launch_command, cfg.run_dir) {}

  AggregatorConfig cfg;
  net::io_context ioc;  // first: outlives every handler's captures below
  std::optional<tcp::acceptor> acceptor;
  net::steady_timer tick_timer;
  net::signal_set signals;
  std::vector<std::thread> threads;
  std::string token, rating_token, static_dir;
  uint16_t bound_port = 0;

  // The hub, under `mu`.
  mutable std::mutex mu;
  History history;
  RankTracker tracker;
  RunLauncher launcher;
  std::string last_config;  // the config of the last start_run, for resume_from
  std::map<uint64_t, std::shared_ptr<WsSession>> viewers;
  std::map<int, std::shared_ptr<WsSession>> producers;
  std::map<int, std::string> last_run_info;  // rank -> run_info without ts, to drop repeats
  std::map<uint64_t, std::weak_ptr<WsSession>> all_ws;
  std::map<uint64_t, std::weak_ptr<HttpSession>> all_http;

  std::atomic<uint64_t> connections{0}, received{0}, broadcast_count{0}, dropped{0}, errors{0},
      max_queue{0}, next_id{1}, producers_refused{0}, viewers_refused{0}, http_refused{0},
      inspect_limited{0};
  std::unique_ptr<Workbench> workbench;  // the Generate, Evaluate and Rate tabs' requests
  // The shared inspect budget of viewers without a token (a token bucket), under mu.
  double inspect_tokens = 0, inspect_refill_at = 0;
  std::atomic<bool> stopping{false};
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopped = false, joined = false;  // under stop_mu

  void start();
  void stop();
  void do_accept();
  void schedule_tick();

  // Called by sessions.
  void viewer_join(const std::shared_ptr<WsSession>& s, bool control);
  void producer_join(const std::shared_ptr<WsSession>& s, int rank);
  void leave(WsSession& s);
  void on_producer(WsSession& s, json& msg);
  void on_control(WsSession& s, const json& msg);
  void on_inspect(WsSession& s, const json& msg);
  void on_list_checkpoints(WsSession& s, const json& msg);
  void on_workbench(WsSession& s, const std::string& type, const json& msg);
  bool take_inspect_budget();
  json rank0_run_info();
  void send_to(uint64_t session, const json& msg);
  // viewer_auth: whether an HTTP request carries a token (Bearer header or ?token=).
  bool http_authorized(const http::request<http::string_body>& req) const;
  json checkpoints_message() const;
  http::response<http::string_body> handle_http(const http::request<http::string_body>& req);
  std::string prometheus();

  // Keeps (keep) and sends `msg` to every viewer; the caller holds `mu`.
  void publish_locked(json& msg, bool keep);
};

// ---- WebSocket session ---------------------------------------------------------------

enum class Role { kNone, kProducer, kViewer };

class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(tcp::socket&& socket, std::shared_ptr<Aggregator::Impl> srv, uint64_t id)
      : ws_(std::move(socket)), srv_(std::move(srv)), id_(id), hello_timer_(ws_.get_executor()) {}

  uint64_t id() const { return id_; }
  Role role() const { return role_; }
  int rank() const { return rank_; }
  bool control() const { return control_; }
  bool rate() const { return rate_; }  // the control or the rating token

  void run(http::request<http::string_body> req) {
    beast::get_lowest_layer(ws_).expires_never();  // the websocket's own timeouts take over
    websocket::stream_base::timeout t{};
    t.handshake_timeout = ms(srv_->cfg.hello_timeout_s);
    t.idle_timeout = ms(srv_->cfg.idle_timeout_s);
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, server_name()); }));
    ws_.read_message_max(srv_->cfg.max_viewer_message);
    ws_.auto_fragment(false);
    ws_.async_accept(req, beast::bind_front_handler(&WsSession::on_accept, shared_from_this()));
  }

  // Queues a message. Viewers' live messages go to the bounded queue (dropping
  // the oldest); direct answers (welcome, errors, control for rank 0) go first.
  void send(SharedText m, bool direct) {
    bool kick = false;
    {
      std::lock_guard<std::mutex> g(mu_);
      if (closed_) return;
      auto& q = direct ? direct_ : live_;
      const size_t cap = direct ? 1024 : srv_->cfg.viewer_queue;
      if (q.size() >= cap) {
        q.pop_front();
        ++dropped_;
        ++srv_->dropped;
      }
      q.push_back(std::move(m));
      uint64_t depth = live_.size();
      uint64_t seen = srv_->max_queue.load();
      while (depth > seen && !srv_->max_queue.compare_exchange_weak(seen, depth)) {
      }
      if (!writing_ && accepted_) kick = writing_ = true;
    }
    if (kick)
      net::post(ws_.get_executor(),
                beast::bind_front_handler(&WsSession::write_next, shared_from_this()));
  }

  // Viewer join: the history snapshot is written after `welcome`, before live messages.
  void set_replay(std::vector<SharedText> replay) {
    std::lock_guard<std::mutex> g(mu_);
    replay_ = std::move(replay);
    replay_pos_ = 0;
  }

  void send_error(const std::string& code, const std::string& message,
                  const std::string& ref = "") {
    json e = envelope("error");
    e["code"] = code;
    e["message"] = message;
    if (!ref.empty()) e["ref"] = ref;
    ++srv_->errors;
    send(std::make_shared<const std::string>(dump(e)), true);
  }

  void send_direct(const json& msg) { send(std::make_shared<const std::string>(dump(msg)), true); }

  // From any thread: closes the socket on the session's strand.
  void shutdown() {
    net::post(ws_.get_executor(), [self = shared_from_this()] { self->close_now(); });
  }

 private:
  void on_accept(error_code ec) {
    if (ec) return fail(ec);
    {
      std::lock_guard<std::mutex> g(mu_);
      accepted_ = true;
    }
    hello_timer_.expires_after(ms(srv_->cfg.hello_timeout_s));
    hello_timer_.async_wait([self = shared_from_this()](error_code e) {
      if (e || self->role_ != Role::kNone || self->closed_) return;
      self->send_error("hello_required", "no hello within the time limit");
      self->close_soon();
    });
    do_read();
  }

  void do_read() {
    ws_.async_read(buf_, beast::bind_front_handler(&WsSession::on_read, shared_from_this()));
  }

  void on_read(error_code ec, size_t n) {
    if (ec) return fail(ec);
    ++srv_->received;
    if (!ws_.got_text()) {
      buf_.consume(n);
      send_error("binary_frame", "binary frames are not part of the protocol; send JSON text");
      count_error();
    } else {
      std::string text = beast::buffers_to_string(buf_.data());
      buf_.consume(n);
      handle(text);
    }
    if (!closed_ && !close_after_write_) do_read();
  }

  void count_error() {
    if (++errors_ > srv_->cfg.max_errors) close_soon();
  }

  // Closes once what is queued has been written (an error's explanation first).
  void close_soon() {
    bool now;
    {
      std::lock_guard<std::mutex> g(mu_);
      close_after_write_ = true;
      now = !writing_;
    }
    if (now) close_now();
  }

  void handle(const std::string& text) {
    std::string ref;
    try {
      json msg = parse_message(text);
      if (msg.contains("id") && msg["id"].is_string()) ref = msg["id"].get<std::string>();
      const std::string type = msg["type"].get<std::string>();
      if (role_ == Role::kNone) {
        if (type != "hello")
          throw ProtocolError("hello_required", "the first message must be hello");
        return on_hello(msg);
      }
      if (role_ == Role::kProducer) {
        static const char* allowed[] = {"run_info", "step",      "validation", "event",
                                        "ack",      "heartbeat", "bye",        "inspect_result"};
        bool ok = false;
        for (auto* a : allowed) ok = ok || type == a;
        if (!ok) throw ProtocolError("not_allowed", "a producer may not send '" + type + "'");
        if (msg["rank"].get<int>() != rank_)
          throw ProtocolError("bad_message",
                              fmt::format("rank {} on a connection that said hello as rank {}",
                                          msg["rank"].get<int>(), rank_));
        return srv_->on_producer(*this, msg);
      }
      if (type == "control") return srv_->on_control(*this, msg);
      if (type == "inspect") return srv_->on_inspect(*this, msg);
      if (type == "list_checkpoints") return srv_->on_list_checkpoints(*this, msg);
      if (type.rfind("rate_", 0) == 0) return srv_->on_workbench(*this, type, msg);
      throw ProtocolError("not_allowed",
                          "a viewer may send control, inspect, list_checkpoints, rate_next, "
                          "rate_vote, rate_list and rate_create, not '" +
                              type + "'");
    } catch (const ProtocolError& e) {
      send_error(e.code(), e.message(), ref);
      count_error();
    } catch (const std::exception& e) {
      send_error("internal", e.what(), ref);
      count_error();
    }
  }

  void on_hello(const json& msg) {
    hello_timer_.cancel();
    const std::string role = msg["role"].get<std::string>();
    const std::string tok = msg.value("token", std::string());
    control_ = token_equal(tok, srv_->token);
    rate_ = control_ || token_equal(tok, srv_->rating_token);
    if (role == "producer") {
      // A producer's messages go into the run's history and it receives rank 0's
      // commands: without the token it is refused and closed before either.
      if (srv_->cfg.producer_auth && !control_) {
        const uint64_t n = ++srv_->producers_refused;
        if ((n & (n - 1)) == 0)  // 1st, 2nd, 4th, …: a retrying rank must not flood the log
          core::log::warn(
              "monitor: refused a producer hello as rank {} (wrong or missing token; "
              "{} refused so far)",
              msg.value("rank", -1), n);
        send_error("unauthorized",
                   "a producer needs the monitor's token (monitor.token, or RUN_DIR/monitor.token "
                   "of the aggregator's run dir)");
        return close_soon();
      }
      role_ = Role::kProducer;
      rank_ = msg["rank"].get<int>();
      ws_.read_message_max(srv_->cfg.max_producer_message);
      srv_->producer_join(shared_from_this(), rank_);
    } else {
      if (srv_->cfg.viewer_auth && !rate_) {
        const uint64_t n = ++srv_->viewers_refused;
        if ((n & (n - 1)) == 0)
          core::log::warn("monitor: refused a viewer without a token ({} so far; viewer_auth)", n);
        send_error("unauthorized",
                   "this monitor needs a token to view (monitor.viewer_auth): the control token "
                   "(RUN_DIR/monitor.token) or the rating token (RUN_DIR/monitor.rating-token)");
        return close_soon();
      }
      role_ = Role::kViewer;
      srv_->viewer_join(shared_from_this(), control_);
    }
  }

  void write_next() {
    SharedText m;
    {
      std::lock_guard<std::mutex> g(mu_);
      if (closed_) {
        writing_ = false;
        return;
      }
      if (!direct_.empty()) {
        m = std::move(direct_.front());
        direct_.pop_front();
      } else if (replay_pos_ < replay_.size()) {
        m = std::move(replay_[replay_pos_++]);
        if (replay_pos_ == replay_.size()) {
          replay_.clear();
          replay_.shrink_to_fit();
          replay_pos_ = 0;
        }
      } else if (!live_.empty()) {
        m = std::move(live_.front());
        live_.pop_front();
      } else {
        writing_ = false;
      }
    }
    if (!m) {
      if (close_after_write_) close_now();
      return;
    }
    ws_.text(true);
    ws_.async_write(net::buffer(*m), [self = shared_from_this(), m](error_code ec, size_t) {
      if (ec) return self->fail(ec);
      self->write_next();
    });
  }

  void fail(error_code ec) {
    if (ec != websocket::error::closed && ec != net::error::operation_aborted &&
        ec != net::error::eof && ec != beast::error::timeout)
      core::log::debug("monitor: session {}: {}", id_, ec.message());
    close_now();
  }

  void close_now() {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (closed_) return;
      closed_ = true;
      direct_.clear();
      live_.clear();
      replay_.clear();
    }
    hello_timer_.cancel();
    srv_->leave(*this);
    error_code ec;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ec);
    beast::get_lowest_layer(ws_).socket().close(ec);
    --srv_->connections;
  }

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buf_;
  std::shared_ptr<Aggregator::Impl> srv_;
  uint64_t id_;
  net::steady_timer hello_timer_;
  Role role_ = Role::kNone;
  int rank_ = -1;
  bool control_ = false, rate_ = false;
  size_t errors_ = 0;

  std::mutex mu_;  // the queues and flags below: send() comes from other strands
  std::deque<SharedText> direct_, live_;
  std::vector<SharedText> replay_;
  size_t replay_pos_ = 0;
  bool writing_ = false, accepted_ = false, closed_ = false, close_after_write_ = false;
  uint64_t dropped_ = 0;
};

// ---- HTTP session ---------------------------------------------------------------------

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket&& socket, std::shared_ptr<Aggregator::Impl> srv, uint64_t id)
      : stream_(std::move(socket)), srv_(std::move(srv)), id_(id) {}

  void run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&HttpSession::do_read, shared_from_this()));
  }

  void shutdown() {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->do_close(); });
  }

 private:
  void do_read() {
    parser_.emplace();
    parser_->body_limit(8 * 1024);
    parser_->header_limit(8 * 1024);
    stream_.expires_after(ms(srv_->cfg.http_timeout_s));
    http::async_read(stream_, buf_, *parser_,
                     beast::bind_front_handler(&HttpSession::on_read, shared_from_this()));
  }

  void on_read(error_code ec, size_t) {
    if (ec) return do_close();
    if (srv_->stopping) return do_close();
    if (websocket::is_upgrade(parser_->get())) {
      upgraded_ = true;
      {
        std::lock_guard<std::mutex> g(srv_->mu);
        srv_->all_http.erase(id_);
      }
      auto ws = std::make_shared<WsSession>(stream_.release_socket(), srv_, id_);
      {
        std::lock_guard<std::mutex> g(srv_->mu);
        srv_->all_ws[id_] = ws;
      }
      ws->run(parser_->release());
      return;
    }
    auto res =
        std::make_shared<http::response<http::string_body>>(srv_->handle_http(parser_->get()));
    res->keep_alive(parser_->get().keep_alive());
    res->prepare_payload();
    if (parser_->get().method() == http::verb::head) res->body().clear();
    http::async_write(stream_, *res, [self = shared_from_this(), res](error_code e, size_t) {
      if (e || !res->keep_alive()) return self->do_close();
      self->do_read();
    });
  }

  void do_close() {
    if (closed_ || upgraded_) return;
    closed_ = true;
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
    --srv_->connections;
    std::lock_guard<std::mutex> g(srv_->mu);
    srv_->all_http.erase(id_);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Aggregator::Impl> srv_;
  uint64_t id_;
  bool closed_ = false, upgraded_ = false;
};

// ---- hub: lifecycle ---------------------------------------------------------------------

void Aggregator::Impl::start() {
  std::error_code fec;
  fs::create_directories(cfg.run_dir, fec);
  SHARDLM_CHECK(fs::is_directory(cfg.run_dir, fec), core::DataError,
                "monitor run dir {}: not a directory", cfg.run_dir);
  history.open((fs::path(cfg.run_dir) / "metrics.jsonl").string());
  for (auto& text :
       history.snapshot()) {  // a rank that reconnects after our restart repeats its run_info
    if (text->find("\"type\":\"run_info\"") == std::string::npos) continue;
    json ri = json::parse(*text, nullptr, false);
    if (ri.is_discarded() || !ri.contains("rank")) continue;
    ri.erase("ts");
    ri.erase("seq");
    last_run_info[ri["rank"].get<int>()] = dump(ri);
  }
  token = cfg.token;
  const std::string token_path = (fs::path(cfg.run_dir) / "monitor.token").string();
  if (token.empty() && cfg.write_token_file) {
    // A restart keeps the run dir's token: running ranks (and open dashboards)
    // would otherwise be refused until they were given the new one.
    std::ifstream old(token_path);
    std::string t;
    if (old >> t && t.size() >= 16 && t.size() <= 256) token = t;
  }
  if (token.empty()) token = generate_token();
  launcher.set_env(kMonitorTokenEnv, token);  // a spawned run's ranks must say hello with it
  // The raters' token: kept across restarts like the control token (rater links stay valid).
  const std::string rating_path = (fs::path(cfg.run_dir) / "monitor.rating-token").string();
  rating_token = cfg.rating_token;
  if (rating_token.empty() && cfg.write_token_file) {
    std::ifstream old(rating_path);
    std::string t;
    if (old >> t && t.size() >= 16 && t.size() <= 256 && t != token) rating_token = t;
  }
  if (rating_token.empty()) rating_token = generate_token();
  SHARDLM_CHECK(rating_token != token, core::ConfigError,
                "monitor: the rating token must differ from the control token");
  if (cfg.write_token_file) {
    for (const auto& [path, value] :
         {std::make_pair(token_path, token), std::make_pair(rating_path, rating_token)}) {
      ::umask(::umask(077) | 077);
      std::ofstream out(path, std::ios::trunc);
      out << value << "\n";
      out.close();
      ::chmod(path.c_str(), 0600);
      SHARDLM_CHECK(out.good(), core::DataError, "{}: cannot write the monitor token", path);
    }
  }
  WorkbenchConfig wc;
  wc.run_dir = cfg.run_dir;
  wc.shardlm = cfg.shardlm;
  wc.max_workers = cfg.max_generations;
  std::weak_ptr<Impl> weak = shared_from_this();
  Workbench::Io io;
  io.send = [weak](uint64_t session, const json& m) {
    if (auto self = weak.lock()) self->send_to(session, m);
  };
  io.broadcast = [weak](const json& m) {
    if (auto self = weak.lock()) {
      json copy = m;
      std::lock_guard<std::mutex> g(self->mu);
      self->publish_locked(copy, false);
    }
  };
  workbench = std::make_unique<Workbench>(wc, ioc, std::move(io));
  static_dir = cfg.static_dir.empty() ? find_dashboard_dir() : cfg.static_dir;

  error_code ec;
  auto addr = net::ip::make_address(cfg.bind, ec);
  if (ec)
    throw core::ConfigError("", "monitor.bind", cfg.bind, "an IP address (" + ec.message() + ")");
  tcp::endpoint ep(addr, cfg.port);
  acceptor.emplace(ioc);
  acceptor->open(ep.protocol(), ec);
  if (!ec) acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(ep, ec);
  if (!ec) acceptor->listen(net::socket_base::max_listen_connections, ec);
  SHARDLM_CHECK(!ec, core::Error, "monitor: cannot listen on {}:{}: {}", cfg.bind, cfg.port,
                ec.message());
  bound_port = acceptor->local_endpoint().port();

  if (cfg.handle_signals) {
    signals.add(SIGINT);
    signals.add(SIGTERM);
    signals.async_wait([self = shared_from_this()](error_code e, int sig) {
      if (e) return;
      core::log::info("monitor: signal {}, stopping", sig);
      std::thread([self] { self->stop(); }).detach();
    });
  }
  do_accept();
  schedule_tick();
  const int n = std::max(1, cfg.threads);
  for (int i = 0; i < n; ++i) threads.emplace_back([this] { ioc.run(); });
}

void Aggregator::Impl::stop() {
  {
    std::lock_guard<std::mutex> g(stop_mu);
    if (stopped) return;
    stopped = true;
  }
  stopping = true;
  if (workbench) workbench->stop();
  net::post(ioc, [this] {
    error_code ec;
    if (acceptor) acceptor->close(ec);
    tick_timer.cancel();
    signals.cancel(ec);
  });
  std::vector<std::shared_ptr<WsSession>> ws;
  std::vector<std::shared_ptr<HttpSession>> hs;
  {
    std::lock_guard<std::mutex> g(mu);
    for (auto& [id, w] : all_ws)
      if (auto s = w.lock()) ws.push_back(s);
    for (auto& [id, w] : all_http)
      if (auto s = w.lock()) hs.push_back(s);
  }
  for (auto& s : ws) s->shutdown();
  for (auto& s : hs) s->shutdown();
  ws.clear();
  hs.clear();
  // Every handler now completes (closed sockets, cancelled timers) and run() returns;
  // a straggling operation is cut off after 3 s.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!ioc.stopped() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ioc.stop();
  for (auto& t : threads)
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
  threads.clear();
  {
    std::lock_guard<std::mutex> g(mu);
    viewers.clear();
    producers.clear();
    all_ws.clear();
    all_http.clear();
  }
  std::lock_guard<std::mutex> g(stop_mu);
  joined = true;
  stop_cv.notify_all();
}

void Aggregator::Impl::do_accept() {
  acceptor->async_accept(net::make_strand(ioc),
                         [self = shared_from_this()](error_code ec, tcp::socket socket) {
                           if (ec) {
                             if (ec == net::error::operation_aborted || self->stopping) return;
                             core::log::warn("monitor: accept: {}", ec.message());
                           } else if (self->connections.load() >= self->cfg.max_connections) {
                             error_code e;
                             socket.close(e);
                           } else {
                             ++self->connections;
                             error_code nd;  // small frames must not wait for ACKs (Nagle)
                             socket.set_option(tcp::no_delay(true), nd);
                             uint64_t id = self->next_id++;
                             auto s = std::make_shared<HttpSession>(std::move(socket), self, id);
                             {
                               std::lock_guard<std::mutex> g(self->mu);
                               self->all_http[id] = s;
                             }
                             s->run();
                           }
                           if (!self->stopping) self->do_accept();
                         });
}

void Aggregator::Impl::schedule_tick() {
  tick_timer.expires_after(ms(cfg.tick_s));
  tick_timer.async_wait([self = shared_from_this()](error_code ec) {
    if (ec || self->stopping) return;
    {
      std::lock_guard<std::mutex> g(self->mu);
      for (auto& m : self->tracker.tick(steady_now())) self->publish_locked(m, true);
      if (self->launcher.running()) {
        if (auto rc = self->launcher.poll()) {
          json e = envelope("event");
          e["kind"] = "run_exited";
          e["message"] = fmt::format("the run started by the monitor exited with code {}", *rc);
          e["data"] = json{{"exit_code", *rc}, {"log", self->launcher.log_path()}};
          self->publish_locked(e, true);
        }
      }
    }
    self->schedule_tick();
  });
}

// ---- hub: messages ---------------------------------------------------------------------

void Aggregator::Impl::publish_locked(json& msg, bool keep) {
  SharedText t = keep ? history.append(msg) : std::make_shared<const std::string>(dump(msg));
  for (auto& [id, v] : viewers) v->send(t, false);
  ++broadcast_count;
}

void Aggregator::Impl::viewer_join(const std::shared_ptr<WsSession>& s, bool control) {
  std::lock_guard<std::mutex> g(mu);
  std::vector<SharedText> replay = history.snapshot();
  json w = envelope("welcome");
  w["role"] = "viewer";
  w["control"] = control;
  w["rate"] = s->rate();
  w["protocol"] = kProtocolVersion;
  w["server"] = server_name();
  w["history"] = replay.size();
  w["session"] = s->id();
  w["run_dir"] = cfg.run_dir;
  w["can_launch"] = launcher.configured();
  json end = envelope("history_end");
  end["count"] = replay.size();
  if (history.next_seq() > 0) end["last_seq"] = history.next_seq() - 1;
  replay.push_back(std::make_shared<const std::string>(dump(end)));
  s->set_replay(std::move(replay));
  s->send_direct(w);  // welcome first, then the replay, then live messages
  viewers[s->id()] = s;
}

void Aggregator::Impl::producer_join(const std::shared_ptr<WsSession>& s, int rank) {
  std::lock_guard<std::mutex> g(mu);
  json w = envelope("welcome");
  w["role"] = "producer";
  w["control"] = s->control();
  w["protocol"] = kProtocolVersion;
  w["server"] = server_name();
  w["history"] = 0;
  w["session"] = s->id();
  w["run_dir"] = cfg.run_dir;
  s->send_direct(w);
  producers[rank] = s;  // a reconnect replaces the old connection
}

void Aggregator::Impl::leave(WsSession& s) {
  std::lock_guard<std::mutex> g(mu);
  viewers.erase(s.id());
  all_ws.erase(s.id());
  if (s.role() == Role::kProducer) {
    auto it = producers.find(s.rank());
    if (it != producers.end() && it->second.get() == &s) producers.erase(it);
  }
}

void Aggregator::Impl::on_producer(WsSession& s, json& msg) {
  (void)s;
  const std::string type = msg["type"].get<std::string>();
  std::lock_guard<std::mutex> g(mu);
  bool keep = type == "run_info" || type == "step" || type == "validation" || type == "event" ||
              type == "ack";
  if (type == "run_info") {
    json key = msg;
    key.erase("ts");
    key.erase("seq");
    std::string k = dump(key);
    auto& last = last_run_info[msg["rank"].get<int>()];
    if (last == k) keep = false;  // a reconnect repeating itself
    last = k;
  }
  auto caused = tracker.observe(msg, steady_now());
  if (keep || type == "inspect_result") publish_locked(msg, keep);
  for (auto& m : caused) publish_locked(m, true);
}

void Aggregator::Impl::on_control(WsSession& s, const json& msg) {
  const std::string id = msg["id"].get<std::string>();
  const std::string command = msg["command"].get<std::string>();
  auto status = [&](const char* st, const std::string& message, json data = json()) {
    json r = envelope("command_status");
    r["id"] = id;
    r["command"] = command;
    r["status"] = st;
    if (!message.empty()) r["message"] = message;
    if (data.is_object()) r["data"] = std::move(data);
    s.send_direct(r);
  };
  const bool authorized = s.control() || token_equal(msg.value("token", std::string()), token);
  if (!authorized) {
    s.send_error("unauthorized",
                 "control needs the monitor's token (printed at start, in RUN_DIR/monitor.token)",
                 id);
    status("refused", "unauthorized");
    return;
  }
  ControlCommand c = ControlCommand::from_json(msg);
  std::lock_guard<std::mutex> g(mu);
  if (c.kind == ControlKind::kStartRun || c.kind == ControlKind::kResumeFrom) {
    if (!launcher.configured()) {
      s.send_error("not_allowed", "this monitor has no launch command (monitor.launch_command)",
                   id);
      return status("refused", "no launch command configured");
    }
    if (launcher.running() || !producers.empty()) {
      s.send_error("busy", "a run is already active; stop it first", id);
      return status("refused", "a run is already active");
    }
    try {
      std::string config =
          c.kind == ControlKind::kStartRun ? c.path : c.args.value("config", last_config);
      if (config.empty())
        throw core::ConfigError(
            "resume_from needs args.config (no run was started from this monitor)");
      std::string resume =
          c.kind == ControlKind::kResumeFrom ? find_checkpoint(cfg.run_dir, c.path) : "";
      pid_t pid = launcher.start(config, resume);
      last_config = config;
      json data = {
          {"pid", pid}, {"log", launcher.log_path()}, {"argv", launcher.argv(config, resume)}};
      json e = envelope("event");
      e["kind"] = "run_spawned";
      e["message"] = fmt::format("started a run from {}{}", config,
                                 resume.empty() ? "" : " resuming " + resume);
      e["data"] = data;
      publish_locked(e, true);
      status("done", "", data);
    } catch (const core::Error& e) {
      s.send_error("not_found", e.message(), id);
      status("failed", e.message());
    }
    return;
  }
  auto p = producers.find(0);
  if (p == producers.end()) {
    s.send_error("no_producer", "rank 0 is not connected", id);
    return status("refused", "rank 0 is not connected");
  }
  p->second->send_direct(c.to_json());
  status("forwarded", "");
}

bool Aggregator::Impl::take_inspect_budget() {
  // Under mu. A bucket of cfg.inspect_burst, refilled continuously.
  const double now = steady_now();
  if (inspect_refill_at == 0) inspect_tokens = cfg.inspect_burst;
  inspect_tokens = std::min(
      cfg.inspect_burst, inspect_tokens + (now - inspect_refill_at) * cfg.inspect_per_minute / 60);
  inspect_refill_at = now;
  if (inspect_tokens < 1) return false;
  inspect_tokens -= 1;
  return true;
}

json Aggregator::Impl::rank0_run_info() {
  // Under mu: rank 0's latest run_info body (the trainer's configuration), or null.
  auto it = last_run_info.find(0);
  if (it == last_run_info.end()) return json();
  json ri = json::parse(it->second, nullptr, false);
  return ri.is_object() ? ri.value("info", json()) : json();
}

void Aggregator::Impl::on_inspect(WsSession& s, const json& msg) {
  ControlCommand c = ControlCommand::from_json(msg);
  json run_info;
  {
    std::lock_guard<std::mutex> g(mu);
    if (!s.rate() && !take_inspect_budget()) {
      const uint64_t n = ++inspect_limited;
      if ((n & (n - 1)) == 0)
        core::log::info("monitor: inspect requests rate-limited ({} so far)", n);
      return s.send_error(
          "rate_limited",
          fmt::format("viewers without a token may send {} inspect requests a minute (a burst of "
                      "{}): wait, or open the dashboard with a token",
                      cfg.inspect_per_minute, cfg.inspect_burst),
          c.id);
    }
    const std::string target =
        msg.value("args", json::object()).value("target", std::string("live"));
    if (c.inspect_what != "generate" || target == "live" || target.empty()) {
      auto p = producers.find(0);
      if (p == producers.end()) return s.send_error("no_producer", "rank 0 is not connected", c.id);
      p->second->send_direct(c.to_json());
      return;
    }
    run_info = rank0_run_info();
  }
  workbench->generate(s.id(), msg, run_info);  // a checkpoint or a server: a process of its own
}

void Aggregator::Impl::on_workbench(WsSession& s, const std::string& type, const json& msg) {
  const std::string ref = msg.value("id", std::string());
  if (type == "rate_vote" && !s.rate()) {
    s.send_error("unauthorized",
                 "voting needs a token: the rating token (RUN_DIR/monitor.rating-token, in a "
                 "rater's link) or the control token",
                 ref);
    json ack = envelope("rate_ack");
    ack["id"] = ref;
    ack["ok"] = false;
    ack["pair"] = msg["pair"];
    ack["message"] = "unauthorized";
    return s.send_direct(ack);
  }
  if (type == "rate_create" && !s.control()) {
    const bool has = token_equal(msg.value("token", std::string()), token);
    if (!has)
      return s.send_error("unauthorized",
                          "creating a comparison runs generation: it needs the control token", ref);
  }
  if (type == "rate_next") return workbench->rate_next(s.id(), msg);
  if (type == "rate_vote") return workbench->rate_vote(s.id(), msg);
  if (type == "rate_list") return workbench->rate_votes(s.id(), msg);
  if (type == "rate_create") {
    json run_info;
    {
      std::lock_guard<std::mutex> g(mu);
      run_info = rank0_run_info();
    }
    return workbench->rate_create(s.id(), msg, run_info);
  }
  throw ProtocolError("unknown_type", "no such workbench request: " + type);
}

void Aggregator::Impl::send_to(uint64_t session, const json& msg) {
  std::shared_ptr<WsSession> target;
  {
    std::lock_guard<std::mutex> g(mu);
    auto it = all_ws.find(session);
    if (it != all_ws.end()) target = it->second.lock();
  }
  if (target) target->send_direct(msg);
}

json Aggregator::Impl::checkpoints_message() const {
  json m = envelope("checkpoints");
  m["run_dir"] = cfg.run_dir;
  m["items"] = list_checkpoints(cfg.run_dir);
  return m;
}

void Aggregator::Impl::on_list_checkpoints(WsSession& s, const json& msg) {
  json m = checkpoints_message();
  if (msg.contains("id")) m["id"] = msg["id"];
  s.send_direct(m);
}

// ---- hub: HTTP ------------------------------------------------------------------------------

std::string Aggregator::Impl::prometheus() {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
  };
  std::lock_guard<std::mutex> g(mu);
  metric("shardlm_monitor_viewers", "gauge", "Connected viewers.", double(viewers.size()));
  metric("shardlm_monitor_producers", "gauge", "Connected ranks.", double(producers.size()));
  metric("shardlm_monitor_connections", "gauge", "Open connections.", double(connections.load()));
  metric("shardlm_monitor_messages_received_total", "counter", "WebSocket messages read.",
         double(received.load()));
  metric("shardlm_monitor_messages_broadcast_total", "counter", "Messages sent to viewers.",
         double(broadcast_count.load()));
  metric("shardlm_monitor_viewer_dropped_total", "counter",
         "Messages dropped from slow viewers' queues.", double(dropped.load()));
  metric("shardlm_monitor_errors_total", "counter", "Error answers sent.", double(errors.load()));
  metric("shardlm_monitor_producers_refused_total", "counter",
         "Producer hellos refused for a wrong or missing token.", double(producers_refused.load()));
  metric("shardlm_monitor_viewers_refused_total", "counter",
         "Viewer hellos refused without a token (viewer_auth).", double(viewers_refused.load()));
  metric("shardlm_monitor_http_refused_total", "counter",
         "HTTP requests answered 401 without a token (viewer_auth).", double(http_refused.load()));
  metric("shardlm_monitor_inspect_rate_limited_total", "counter",
         "Inspect requests of viewers without a token refused by the rate limit.",
         double(inspect_limited.load()));
  metric("shardlm_monitor_history_messages", "gauge", "Messages kept in memory.",
         double(history.size()));
  metric("shardlm_monitor_history_bytes", "gauge", "Bytes kept in memory.",
         double(history.bytes()));
  out += tracker.prometheus(steady_now());
  return out;
}

http::response<http::string_body> Aggregator::Impl::handle_http(
    const http::request<http::string_body>& req) {
  auto respond = [&](http::status st, const std::string& type, std::string body) {
    http::response<http::string_body> res{st, req.version()};
    res.set(http::field::server, server_name());
    res.set(http::field::content_type, type);
    res.set("X-Content-Type-Options", "nosniff");
    res.body() = std::move(body);
    return res;
  };
  if (req.method() != http::verb::get && req.method() != http::verb::head)
    return respond(http::status::method_not_allowed, "text/plain", "only GET and HEAD\n");
  std::string target(req.target());
  if (auto q = target.find_first_of("?#"); q != std::string::npos) target.resize(q);
  if (cfg.viewer_auth && (target == "/metrics" || target.rfind("/api/", 0) == 0) &&
      !http_authorized(req)) {
    ++http_refused;
    auto res = respond(http::status::unauthorized, "application/json",
                       dump(json{{"error",
                                  "this monitor needs a token (monitor.viewer_auth): send "
                                  "Authorization: Bearer TOKEN or ?token=TOKEN"}}));
    res.set(http::field::www_authenticate, "Bearer realm=\"shardlm monitor\"");
    return res;
  }
  if (auto wb = workbench ? workbench->http_get(target) : std::nullopt) {
    auto res =
        respond(static_cast<http::status>(wb->first), "application/json", std::move(wb->second));
    res.set(http::field::cache_control, "no-cache");
    return res;
  }
  if (target == "/metrics")
    return respond(http::status::ok, "text/plain; version=0.0.4", prometheus());
  if (target == "/api/health") {
    json h = {{"ok", true},
              {"protocol", kProtocolVersion},
              {"server", server_name()},
              {"run_dir", cfg.run_dir}};
    std::lock_guard<std::mutex> g(mu);
    h["viewers"] = viewers.size();
    h["producers"] = producers.size();
    h["history"] = history.size();
    return respond(http::status::ok, "application/json", dump(h));
  }
  if (target == "/api/checkpoints")
    return respond(http::status::ok, "application/json", dump(checkpoints_message()));
  if (target.empty() || target[0] != '/' || target.find("..") != std::string::npos ||
      target.find('\\') != std::string::npos || target.find('\0') != std::string::npos)
    return respond(http::status::bad_request, "text/plain", "bad path\n");
  if (static_dir.empty()) {
    if (target == "/" || target == "/index.html")
      return respond(http::status::ok, "text/html; charset=utf-8", kFallbackPage);
    return respond(http::status::not_found, "text/plain",
                   "not found (the dashboard is not built)\n");
  }
  std::string rel = target == "/" ? "/index.html" : target;
  fs::path file = fs::path(static_dir) / rel.substr(1);
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    // Client-side routes (no extension) get the app; missing assets are 404.
    if (fs::path(rel).has_extension())
      return respond(http::status::not_found, "text/plain", "not found\n");
    file = fs::path(static_dir) / "index.html";
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) return respond(http::status::not_found, "text/plain", "not found\n");
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto res = respond(http::status::ok, mime_type(file.string()), std::move(body));
  res.set(http::field::cache_control,
          file.filename() == "index.html" ? "no-cache" : "public, max-age=3600");
  return res;
}

bool Aggregator::Impl::http_authorized(const http::request<http::string_body>& req) const {
  auto ok = [&](const std::string& t) {
    return token_equal(t, token) || token_equal(t, rating_token);
  };
  const auto auth = req[http::field::authorization];
  if (auth.size() > 7 && beast::iequals(auth.substr(0, 7), "Bearer ") &&
      ok(std::string(auth.substr(7))))
    return true;
  const std::string target(req.target());
  const auto q = target.find('?');
  if (q == std::string::npos) return false;
  // ?token=HEX (tokens are hex: no percent-decoding needed)
  size_t pos = q + 1;
  while (pos < target.size()) {
    size_t end = target.find('&', pos);
    if (end == std::string::npos) end = target.size();
    const std::string kv = target.substr(pos, end - pos);
    if (kv.rfind("token=", 0) == 0 && ok(kv.substr(6))) return true;
    pos = end + 1;
  }
  return false;
}

// ---- Aggregator ----------------------------------------------------------------------------

Aggregator::Aggregator(AggregatorConfig cfg) : impl_(std::make_shared<Impl>(std::move(cfg))) {}

Aggregator::~Aggregator() {
  stop();
}

void Aggregator::start() {
  impl_->start();
}
void Aggregator::stop() {
  if (!impl_->threads.empty() || impl_->acceptor) impl_->stop();
}

void Aggregator::wait() {
  std::unique_lock<std::mutex> lk(impl_->stop_mu);
  impl_->stop_cv.wait(lk, [&] { return impl_->joined; });
}

uint16_t Aggregator::port() const {
  return impl_->bound_port;
}
const std::string& Aggregator::token() const {
  return impl_->token;
}
const std::string& Aggregator::rating_token() const {
  return impl_->rating_token;
}
std::string Aggregator::url() const {
  return fmt::format("http://{}:{}/", impl_->cfg.bind, impl_->bound_port);
}

AggregatorStats Aggregator::stats() const {
  AggregatorStats s;
  s.connections = impl_->connections.load();
  s.received = impl_->received.load();
  s.broadcast = impl_->broadcast_count.load();
  s.viewer_dropped = impl_->dropped.load();
  s.errors = impl_->errors.load();
  s.max_viewer_queue = impl_->max_queue.load();
  s.producers_refused = impl_->producers_refused.load();
  s.viewers_refused = impl_->viewers_refused.load();
  s.http_refused = impl_->http_refused.load();
  s.inspect_limited = impl_->inspect_limited.load();
  std::lock_guard<std::mutex> g(impl_->mu);
  s.viewers = impl_->viewers.size();
  s.producers = impl_->producers.size();
  s.history_messages = impl_->history.size();
  s.history_bytes = impl_->history.bytes();
  s.next_seq = impl_->history.next_seq();
  return s;
}

}  // namespace shardlm::monitor
