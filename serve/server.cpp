// Server (server.h): the listener, the per-connection session and the routes.
// A session lives on its own strand; the inference thread reaches it only by
// posting to that strand (new text of a stream, the end of a job), so a session
// needs no lock. A streamed response is the header, then one HTTP chunk per
// Server-Sent Event, one write in flight, queued events in order.
#include "serve/server.h"

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/error.h"
#include "core/log.h"
#include "serve/chat.h"
#include "serve/completion.h"

namespace shardlm::serve {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

std::chrono::milliseconds ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

const char* kServerName = "shardlm-serve/" SHARDLM_VERSION;

using Response = http::response<http::string_body>;

Response json_response(http::status status, const json& body, unsigned version) {
  Response res{status, version};
  res.set(http::field::server, kServerName);
  res.set(http::field::content_type, "application/json");
  res.body() = dump(body) + "\n";
  return res;
}

Response error_response(const RequestError& e, unsigned version) {
  Response res = json_response(static_cast<http::status>(e.status()),
                               error_body(e.what(), e.type(), e.param(), e.code()), version);
  if (e.status() == 401) res.set(http::field::www_authenticate, "Bearer");
  return res;
}

// The routes and the methods each allows (405 names them; others are 404).
const std::map<std::string, http::verb>& routes() {
  static const std::map<std::string, http::verb> r = {{"/health", http::verb::get},
                                                      {"/metrics", http::verb::get},
                                                      {"/v1/models", http::verb::get},
                                                      {"/v1/completions", http::verb::post},
                                                      {"/v1/tokenize", http::verb::post},
                                                      {"/v1/detokenize", http::verb::post},
                                                      {"/v1/chat/completions", http::verb::post}};
  return r;
}

}  // namespace

class Session;

// ---- the server's shared state ------------------------------------------------------------------

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(ServeConfig c, std::shared_ptr<Engine> e, std::shared_ptr<ServeMetrics> m)
      : cfg(std::move(c)),
        engine(std::move(e)),
        metrics(m ? std::move(m) : std::make_shared<ServeMetrics>()),
        cache(cfg.cache_entries, cfg.cache_bytes),
        signals(ioc) {}

  ServeConfig cfg;
  std::shared_ptr<Engine> engine;
  std::shared_ptr<ServeMetrics> metrics;
  ResponseCache cache;
  ChatTemplate chat;  // the engine's model's (or the default)
  std::string name;   // the model's name in responses
  net::io_context ioc;
  // Keeps the io threads running while no socket operation is pending (a session
  // waiting for the engine has none); released in stop() once every answer is out.
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor;
  net::signal_set signals;
  std::vector<std::thread> threads;
  uint16_t bound_port = 0;

  std::mutex mu;  // sessions, stop state
  std::map<uint64_t, std::weak_ptr<Session>> sessions;
  std::atomic<uint64_t> next_id{1};
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> in_flight{0};  // completions accepted and not yet fully written
  std::condition_variable cv;
  int running_threads = 0;  // io threads inside ioc.run()
  bool stopped = false;

  void do_accept();
  void stop();
  void request_done() {
    std::lock_guard<std::mutex> g(mu);
    --in_flight;
    cv.notify_all();
  }
};

// ---- one connection ---------------------------------------------------------------------------

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<Server::Impl> srv, uint64_t id)
      : stream_(std::move(socket)), srv_(std::move(srv)), id_(id) {}

  void run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::do_read, shared_from_this()));
  }
  // From any thread: closes the socket on the session's strand.
  void shutdown() {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->close(); });
  }

 private:
  // ---- reading and plain answers
  void do_read() {
    parser_.emplace();
    parser_->body_limit(srv_->cfg.max_body_bytes);
    parser_->header_limit(16 * 1024);
    stream_.expires_after(ms(srv_->cfg.http_timeout_s));
    http::async_read_header(stream_, buf_, *parser_,
                            beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  // curl sends "Expect: 100-continue" with bodies over 1 KiB and waits (1 s) for
  // the interim answer before sending the body: give it at once.
  void on_header(error_code ec, size_t) {
    if (ec) return on_read(ec, 0);
    const auto& req = parser_->get();
    auto expect = req.find(http::field::expect);
    if (expect != req.end() && beast::iequals(expect->value(), "100-continue") &&
        !parser_->is_done()) {
      auto res = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                    req.version());
      http::async_write(stream_, *res, [self = shared_from_this(), res](error_code e, size_t) {
        if (e) return self->close();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buf_, *parser_,
                     beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(error_code ec, size_t) {
    if (ec == http::error::body_limit) {
      keep_alive_ = false;
      return send(error_response(
          RequestError(413,
                       fmt::format("the request body is larger than {} bytes (--max-body-bytes)",
                                   srv_->cfg.max_body_bytes),
                       "", "invalid_request_error"),
          11));
    }
    if (ec) return close();
    const auto& req = parser_->get();
    version_ = req.version();
    keep_alive_ = req.keep_alive();
    t0_ = Clock::now();
    try {
      route(req);
    } catch (const RequestError& e) {
      send(error_response(e, version_));
    } catch (const std::exception& e) {
      send(error_response(RequestError(500, e.what(), "", "server_error"), version_));
    }
  }

  void route(const http::request<http::string_body>& req) {
    std::string path(req.target());
    if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
    auto it = routes().find(path);
    if (it == routes().end())
      throw RequestError(404,
                         fmt::format("no such endpoint: {} (docs/serving.md lists them)", path), "",
                         "not_found_error");
    if (req.method() != it->second) {
      RequestError e(
          405,
          fmt::format("{} does not allow {}; use {}", path, std::string(req.method_string()),
                      std::string(http::to_string(it->second))),
          "", "invalid_request_error");
      Response res = error_response(e, version_);
      res.set(http::field::allow, http::to_string(it->second));
      return send(std::move(res));
    }
    check_api_key(path, req);
    const Engine& engine = *srv_->engine;
    if (path == "/health") {
      const bool up = !srv_->stopping;
      return send(json_response(up ? http::status::ok : http::status::service_unavailable,
                                {{"status", up ? "ok" : "stopping"}}, version_));
    }
    if (path == "/metrics") {
      Response res{http::status::ok, version_};
      res.set(http::field::server, kServerName);
      res.set(http::field::content_type, "text/plain; version=0.0.4");
      res.body() = prometheus();
      return send(std::move(res));
    }
    if (path == "/v1/models") {
      const ModelInfo& mi = engine.info();
      json m = {{"id", srv_->name},
                {"object", "model"},
                {"created", unix_time()},
                {"owned_by", "shardlm"},
                {"root", mi.source},
                {"format", mi.format},
                {"max_model_len", mi.context_length},
                {"parameters", mi.parameters},
                {"config", mi.config},
                {"scheduler", mi.scheduler},
                {"chat_template", mi.chat_template}};
      if (mi.scheduler == "continuous")
        m["kv_cache"] = {{"block_size", mi.block_size},
                         {"blocks", mi.kv_blocks},
                         {"tokens", int64_t{mi.block_size} * mi.kv_blocks},
                         {"bytes", mi.kv_bytes},
                         {"prefix_caching", srv_->cfg.prefix_caching}};
      return send(json_response(http::status::ok, {{"object", "list"}, {"data", json::array({m})}},
                                version_));
    }
    if (path == "/v1/tokenize") {
      const std::string text = parse_tokenize(req.body());
      auto ids = engine.tokenizer().encode(text);
      return send(json_response(
          http::status::ok,
          {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", engine.info().context_length}},
          version_));
    }
    if (path == "/v1/detokenize") {
      const std::vector<int64_t> ids = parse_detokenize(req.body());
      std::vector<uint32_t> ids32;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] >= static_cast<int64_t>(engine.tokenizer().vocab_size()))
          throw RequestError(400,
                             fmt::format("tokens[{}] is {}, outside the vocabulary [0, {})", i,
                                         ids[i], engine.tokenizer().vocab_size()),
                             "tokens");
        ids32.push_back(static_cast<uint32_t>(ids[i]));
      }
      return send(json_response(http::status::ok,
                                {{"prompt", engine.tokenizer().decode_bytes(ids32)}}, version_));
    }
    if (path == "/v1/chat/completions") return chat(req.body());
    generate(Kind::kCompletion, parse_completion(req.body(), srv_->cfg));
  }

  // --api-key: /v1/* needs "Authorization: Bearer KEY" (compared in constant time).
  void check_api_key(const std::string& path, const http::request<http::string_body>& req) {
    const std::string& key = srv_->cfg.api_key;
    if (key.empty() || path.rfind("/v1/", 0) != 0) return;
    const std::string want = "Bearer " + key;
    const auto got = req[http::field::authorization];
    unsigned char diff = got.size() == want.size() ? 0 : 1;
    for (size_t i = 0; i < want.size(); ++i)
      diff |= static_cast<unsigned char>(want[i] ^ (i < got.size() ? got[i] : 0));
    if (diff == 0) return;
    ++srv_->metrics->unauthorized;
    throw RequestError(401,
                       got.empty() ? "no API key: send the header 'Authorization: Bearer KEY'"
                                   : "incorrect API key provided",
                       "", "invalid_request_error", "invalid_api_key");
  }

  std::string prometheus() const {
    const ResponseCache& c = srv_->cache;
    std::string extra = fmt::format(
        "# HELP shardlm_serve_cache_hits_total response cache hits\n"
        "# TYPE shardlm_serve_cache_hits_total counter\nshardlm_serve_cache_hits_total {}\n"
        "# HELP shardlm_serve_cache_misses_total response cache misses (deterministic requests)\n"
        "# TYPE shardlm_serve_cache_misses_total counter\nshardlm_serve_cache_misses_total {}\n"
        "# HELP shardlm_serve_cache_entries responses held in the cache\n"
        "# TYPE shardlm_serve_cache_entries gauge\nshardlm_serve_cache_entries {}\n"
        "# HELP shardlm_serve_cache_bytes bytes held in the cache\n"
        "# TYPE shardlm_serve_cache_bytes gauge\nshardlm_serve_cache_bytes {}\n",
        c.hits(), c.misses(), c.entries(), c.bytes());
    extra += fmt::format(
        "# HELP shardlm_serve_model_parameters parameters of the served model\n"
        "# TYPE shardlm_serve_model_parameters gauge\n"
        "shardlm_serve_model_parameters{{model=\"{}\"}} {}\n",
        srv_->name, srv_->engine->info().parameters);
    return srv_->metrics->prometheus(extra, srv_->name);
  }

  // Writes a whole response, then reads the next request (keep-alive) or closes.
  void send(Response res) {
    res.keep_alive(keep_alive_ && !srv_->stopping);
    res.prepare_payload();
    srv_->metrics->count_response(static_cast<int>(res.result_int()));
    auto sp = std::make_shared<Response>(std::move(res));
    stream_.expires_after(ms(srv_->cfg.http_timeout_s));
    http::async_write(stream_, *sp, [self = shared_from_this(), sp](error_code e, size_t) {
      self->after_response(e, sp->keep_alive());
    });
  }

  void after_response(error_code e, bool keep_alive) {
    if (counted_) {
      counted_ = false;
      srv_->request_done();
    }
    if (e) return close();
    if (!keep_alive) return linger();
    do_read();
  }

  // Closes after the client has read the answer: shuts our side, then discards
  // what the client still sends (a refused body) until it closes or 2 s pass, so
  // that the kernel does not reset the connection before the answer is read.
  void linger() {
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(std::chrono::seconds(2));
    drain_ = std::make_shared<std::array<char, 4096>>();
    stream_.async_read_some(net::buffer(*drain_),
                            [self = shared_from_this()](error_code e, size_t) {
                              if (e) return self->close();
                              self->linger();
                            });
  }

  // ---- completions and chat: both become a Job; only their bodies differ
  enum class Kind { kCompletion, kChat };

  void chat(const std::string& body) {
    const ChatRequest c = parse_chat(body, srv_->cfg);
    CompletionRequest r;
    PromptInput in;
    in.text = srv_->chat.render(c.messages);
    r.prompts.push_back(std::move(in));
    r.n = c.n;
    r.stream = c.stream;
    r.include_usage = c.include_usage;
    r.params = c.params;
    r.model = c.model;
    // The template's end-of-turn strings end the answer, never shown.
    for (const auto& s : srv_->chat.stop)
      if (std::find(r.params.stop.begin(), r.params.stop.end(), s) == r.params.stop.end())
        r.params.stop.push_back(s);
    generate(Kind::kChat, r);
  }

  void generate(Kind kind, const CompletionRequest& r) {
    const ModelInfo& mi = srv_->engine->info();
    if (r.params.logprobs >= 0 && mi.scheduler == "static")
      throw RequestError(400,
                         "logprobs need the continuous scheduler (this server runs with "
                         "--scheduler static)",
                         "logprobs");
    PreparedCompletion prep = prepare_completion(r, srv_->engine->tokenizer(), mi, srv_->cfg);
    Job& job = prep.job;
    kind_ = kind;
    logprobs_ = r.params.logprobs;
    rows_ = static_cast<size_t>(job.rows());
    usage_ = Usage{};
    usage_.prompt_tokens = prep.prompt_tokens;
    usage_.scheduler = mi.scheduler;
    std::string key = prep.cache_key;
    if (!key.empty() && kind == Kind::kChat) key = "chat:" + key;
    if (!key.empty()) {
      if (auto hit = srv_->cache.get(key)) {
        json c = json::parse(*hit);
        c["id"] = completion_id(kind == Kind::kChat ? "chatcmpl-" : "cmpl-");
        c["created"] = unix_time();
        srv_->metrics->latency.observe(since(t0_));
        if (r.stream) return replay_stream(c, r.include_usage);
        Response res = json_response(http::status::ok, c, version_);
        res.set("X-Cache", "hit");
        return send(std::move(res));
      }
    }

    id_text_ = completion_id(kind == Kind::kChat ? "chatcmpl-" : "cmpl-");
    created_ = unix_time();
    cancelled_ = job.cancelled;
    auto self = shared_from_this();
    auto ex = stream_.get_executor();
    if (r.stream) {
      auto first = std::make_shared<std::atomic<bool>>(true);
      // Characters of each choice's tokens so far (completions' text_offset);
      // touched by the inference thread only.
      auto offsets = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(job.rows()), 0);
      job.on_text = [self, ex, first, offsets](size_t choice, const std::string& text,
                                               const std::vector<TokenLogprob>& lps) {
        if (!text.empty() && first->exchange(false))
          self->srv_->metrics->time_to_first_token.observe(since(self->t0_));
        auto chunk = std::make_shared<const std::string>(
            self->text_event(choice, text, lps, &(*offsets)[choice]));
        net::post(ex, [self, chunk] { self->push_event(chunk); });
      };
    }
    const bool stream = r.stream, usage = r.include_usage;
    job.on_done = [self, ex, stream, usage, key](JobResult res) {
      self->srv_->metrics->prompt_tokens += static_cast<uint64_t>(self->usage_.prompt_tokens);
      net::post(ex, [self, stream, usage, key, res = std::move(res)] {
        if (stream)
          self->end_stream(res, usage, key);
        else
          self->end_completion(res, key);
      });
    };
    {
      std::lock_guard<std::mutex> g(srv_->mu);
      ++srv_->in_flight;
    }
    counted_ = true;
    if (srv_->stopping || !srv_->engine->submit(std::move(job))) {
      counted_ = false;
      srv_->request_done();
      if (!srv_->stopping) ++srv_->metrics->rejected_queue_full;
      Response res = error_response(
          RequestError(503,
                       srv_->stopping ? "the server is shutting down"
                                      : fmt::format("the request queue is full ({} waiting; "
                                                    "--max-queue): retry later",
                                                    srv_->cfg.max_queue),
                       "", srv_->stopping ? "server_error" : "overloaded_error"),
          version_);
      res.set(http::field::retry_after, "1");
      return send(std::move(res));
    }
    ++srv_->metrics->completions;
    stream_.expires_never();  // generation may take longer than a read timeout
    watch_disconnect();
    if (stream) start_stream(key.empty() ? "bypass" : "miss");
  }

  // A client that closes its connection while its answer is being generated
  // cancels the job: its sequences end and free their KV blocks before the
  // engine's next step. Readable with nothing to read is the peer's FIN (or a
  // reset); readable with data is a pipelined next request, read after this answer.
  void watch_disconnect() {
    stream_.socket().async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
      if (!self->counted_ || self->closed_ || ec == net::error::operation_aborted) return;
      if (ec) return self->client_gone();
      // Never block the strand: the bytes that woke us may already have been read.
      auto& sock = self->stream_.socket();
      error_code nb, peek;
      sock.non_blocking(true, nb);
      char c;
      const size_t n = sock.receive(net::buffer(&c, 1), tcp::socket::message_peek, peek);
      if (peek == net::error::would_block || peek == net::error::try_again)
        return self->watch_disconnect();  // nothing there after all: watch again
      if (peek || n == 0) self->client_gone();
    });
  }
  void client_gone() {
    if (cancelled_ && !cancelled_->exchange(true)) ++srv_->metrics->cancelled;
  }

  // One text event of a stream, built on the inference thread.
  std::string text_event(size_t choice, const std::string& text,
                         const std::vector<TokenLogprob>& lps, int64_t* offset) const {
    json lp = nullptr;
    if (logprobs_ >= 0) {
      lp = kind_ == Kind::kChat ? chat_logprobs(lps, logprobs_)
                                : completion_logprobs(lps, logprobs_, *offset);
      for (const auto& t : lps) *offset += utf8_characters(t.text);
    }
    if (kind_ == Kind::kChat)
      return chat_chunk(id_text_, created_, srv_->name, choice, {{"content", text}}, "", lp);
    return stream_chunk(id_text_, created_, srv_->name, choice, text, "", lp);
  }

  json body_of(const JobResult& res) const {
    std::vector<Choice> choices;
    for (const auto& c : res.choices) {
      json lp = nullptr;
      if (logprobs_ >= 0)
        lp = kind_ == Kind::kChat ? chat_logprobs(c.logprobs, logprobs_)
                                  : completion_logprobs(c.logprobs, logprobs_, 0);
      choices.push_back({c.text, c.finish_reason, lp});
    }
    const Usage u = usage_of(res);
    return kind_ == Kind::kChat ? chat_body(id_text_, created_, srv_->name, choices, u)
                                : completion_body(id_text_, created_, srv_->name, choices, u);
  }
  Usage usage_of(const JobResult& res) const {
    Usage u = usage_;
    u.completion_tokens = res.completion_tokens;
    u.cached_tokens = res.cached_tokens;
    u.computed_tokens = res.computed_tokens;
    u.seed = res.seed;
    return u;
  }
  const char* chunk_object() const {
    return kind_ == Kind::kChat ? "chat.completion.chunk" : "text_completion";
  }

  void end_completion(const JobResult& res, const std::string& key) {
    srv_->metrics->latency.observe(since(t0_));
    if (!res.error.empty())
      return send(error_response(
          RequestError(500, "generation failed: " + res.error, "", "server_error"), version_));
    if (cancelled_->load()) {  // the client is gone
      if (counted_) {
        counted_ = false;
        srv_->request_done();
      }
      return close();
    }
    json body = body_of(res);
    if (!key.empty()) srv_->cache.put(key, dump(body));
    Response out = json_response(http::status::ok, body, version_);
    out.set("X-Cache", key.empty() ? "bypass" : "miss");
    send(std::move(out));
  }

  // ---- streaming: header, then one chunk per event, then the last chunk
  void start_stream(const char* cache) {
    sse_res_.emplace(http::status::ok, version_);
    sse_res_->set(http::field::server, kServerName);
    sse_res_->set(http::field::content_type, "text/event-stream");
    sse_res_->set(http::field::cache_control, "no-cache");
    sse_res_->set("X-Cache", cache);
    // HTTP/1.0 has no chunked transfer: the body ends when the connection closes.
    chunked_ = version_ >= 11;
    if (!chunked_) keep_alive_ = false;
    sse_res_->keep_alive(keep_alive_);
    sse_res_->chunked(chunked_);
    sse_sr_.emplace(*sse_res_);
    srv_->metrics->count_response(200);
    if (kind_ == Kind::kChat)  // OpenAI opens each choice with its role
      for (size_t i = 0; i < rows_; ++i)
        events_.push_front(std::make_shared<const std::string>(
            chat_chunk(id_text_, created_, srv_->name, rows_ - 1 - i,
                       {{"role", "assistant"}, {"content", ""}}, "")));
    writing_ = true;
    stream_.expires_after(ms(srv_->cfg.http_timeout_s));
    http::async_write_header(stream_, *sse_sr_, [self = shared_from_this()](error_code e, size_t) {
      self->writing_ = false;
      if (e) return self->stream_failed();
      self->write_next();
    });
  }

  // A cache hit asked for as a stream: each choice's whole text as one event.
  void replay_stream(const json& c, bool usage) {
    id_text_ = c["id"].get<std::string>();
    created_ = c["created"].get<int64_t>();
    const json& choices = c["choices"];
    rows_ = choices.size();
    start_stream("hit");
    auto event = [&](std::string e) {
      events_.push_back(std::make_shared<const std::string>(std::move(e)));
    };
    for (size_t i = 0; i < choices.size(); ++i) {
      const json& ch = choices[i];
      if (kind_ == Kind::kChat) {
        const std::string text = ch["message"]["content"].get<std::string>();
        if (!text.empty() || !ch["logprobs"].is_null())
          event(chat_chunk(id_text_, created_, srv_->name, i, {{"content", text}}, "",
                           ch["logprobs"]));
      } else {
        const std::string text = ch["text"].get<std::string>();
        if (!text.empty() || !ch["logprobs"].is_null())
          event(stream_chunk(id_text_, created_, srv_->name, i, text, "", ch["logprobs"]));
      }
    }
    for (size_t i = 0; i < choices.size(); ++i) {
      const std::string fin = choices[i]["finish_reason"].get<std::string>();
      event(kind_ == Kind::kChat
                ? chat_chunk(id_text_, created_, srv_->name, i, json::object(), fin)
                : stream_chunk(id_text_, created_, srv_->name, i, "", fin));
    }
    if (usage) {
      json j = {{"id", id_text_},      {"object", chunk_object()}, {"created", created_},
                {"model", srv_->name}, {"choices", json::array()}, {"usage", c["usage"]}};
      if (c.contains("shardlm")) j["shardlm"] = c["shardlm"];
      event("data: " + dump(j) + "\n\n");
    }
    event(stream_done());
    ended_ = true;
  }

  void push_event(std::shared_ptr<const std::string> event) {
    if (failed_) return;
    events_.push_back(std::move(event));
    write_next();
  }

  void end_stream(const JobResult& res, bool usage, const std::string& key) {
    srv_->metrics->latency.observe(since(t0_));
    if (!key.empty() && res.error.empty() && !failed_ && !cancelled_->load())
      srv_->cache.put(key, dump(body_of(res)));
    if (!res.error.empty()) {
      json e = error_body("generation failed: " + res.error, "server_error");
      events_.push_back(std::make_shared<const std::string>("data: " + dump(e) + "\n\n"));
    } else {
      for (size_t i = 0; i < res.choices.size(); ++i) {
        const std::string& fin = res.choices[i].finish_reason;
        events_.push_back(std::make_shared<const std::string>(
            kind_ == Kind::kChat
                ? chat_chunk(id_text_, created_, srv_->name, i, json::object(), fin)
                : stream_chunk(id_text_, created_, srv_->name, i, "", fin)));
      }
      if (usage)
        events_.push_back(std::make_shared<const std::string>(
            stream_usage_chunk(id_text_, created_, srv_->name, chunk_object(), usage_of(res))));
    }
    events_.push_back(std::make_shared<const std::string>(stream_done()));
    ended_ = true;
    if (failed_) return finish_failed_stream();
    write_next();
  }

  void write_next() {
    if (writing_ || failed_) return;
    if (events_.empty()) {
      if (!ended_) return;
      auto done = [self = shared_from_this()](error_code e, size_t) {
        self->writing_ = false;
        self->sse_sr_.reset();
        self->sse_res_.reset();
        self->ended_ = false;
        self->after_response(e, self->keep_alive_ && !self->srv_->stopping);
      };
      if (!chunked_) return done({}, 0);  // closing the connection ends the body
      writing_ = true;                    // the last chunk: the response is complete
      stream_.expires_after(ms(srv_->cfg.http_timeout_s));
      net::async_write(stream_, http::make_chunk_last(), std::move(done));
      return;
    }
    auto event = std::move(events_.front());
    events_.pop_front();
    writing_ = true;
    stream_.expires_after(ms(srv_->cfg.http_timeout_s));
    auto next = [self = shared_from_this(), event](error_code e, size_t) {
      self->writing_ = false;
      if (e) return self->stream_failed();
      self->write_next();
    };
    if (chunked_)
      net::async_write(stream_, http::make_chunk(net::buffer(*event)), std::move(next));
    else
      net::async_write(stream_, net::buffer(*event), std::move(next));
  }

  // The client went away mid-stream: its rows end at their next token.
  void stream_failed() {
    failed_ = true;
    client_gone();
    events_.clear();
    if (ended_) finish_failed_stream();
  }
  void finish_failed_stream() {
    if (counted_) {
      counted_ = false;
      srv_->request_done();
    }
    close();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    if (cancelled_ && !ended_ && counted_) cancelled_->store(true);
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
    std::lock_guard<std::mutex> g(srv_->mu);
    srv_->sessions.erase(id_);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Server::Impl> srv_;
  uint64_t id_;
  unsigned version_ = 11;
  bool keep_alive_ = true, closed_ = false;
  Clock::time_point t0_;
  // The completion being answered.
  bool counted_ = false;  // counted in srv_->in_flight
  std::string id_text_;
  int64_t created_ = 0;
  Kind kind_ = Kind::kCompletion;
  int64_t logprobs_ = -1;
  size_t rows_ = 1;  // choices
  Usage usage_;
  std::shared_ptr<std::atomic<bool>> cancelled_;
  // Its stream.
  std::optional<http::response<http::empty_body>> sse_res_;
  std::optional<http::response_serializer<http::empty_body>> sse_sr_;
  std::deque<std::shared_ptr<const std::string>> events_;
  bool writing_ = false, ended_ = false, failed_ = false, chunked_ = true;
  std::shared_ptr<std::array<char, 4096>> drain_;
};

// ---- listening and stopping ---------------------------------------------------------------------

void Server::Impl::do_accept() {
  acceptor->async_accept(net::make_strand(ioc),
                         [self = shared_from_this()](error_code ec, tcp::socket s) {
                           if (ec) {
                             if (self->stopping || ec == net::error::operation_aborted) return;
                             core::log::warn("serve: accept failed: {}", ec.message());
                           } else if (!self->stopping) {
                             const uint64_t id = self->next_id++;
                             auto session = std::make_shared<Session>(std::move(s), self, id);
                             {
                               std::lock_guard<std::mutex> g(self->mu);
                               self->sessions[id] = session;
                             }
                             session->run();
                           }
                           if (!self->stopping) self->do_accept();
                         });
}

void Server::Impl::stop() {
  if (stopping.exchange(true)) {  // another caller is stopping it: wait for the end
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return stopped; });
    return;
  }
  net::post(ioc, [this] {
    error_code ec;
    if (acceptor) acceptor->close(ec);
    signals.cancel(ec);
  });
  // Every queued and running request finishes and its answer is written.
  engine->stop(/*drain=*/true);
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait_for(lk, ms(cfg.drain_timeout_s), [&] { return in_flight <= 0; });
  }
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard<std::mutex> g(mu);
    for (auto& [id, w] : sessions)
      if (auto s = w.lock()) open.push_back(s);
  }
  for (auto& s : open) s->shutdown();
  open.clear();
  work.reset();
  // With the acceptor and every socket closed the io threads run out of work;
  // a handler that still holds on is cut short after a few seconds.
  {
    std::unique_lock<std::mutex> lk(mu);
    if (!cv.wait_for(lk, std::chrono::seconds(5), [&] { return running_threads == 0; })) ioc.stop();
  }
  for (auto& t : threads)
    if (t.joinable()) t.join();
  {
    std::lock_guard<std::mutex> g(mu);
    stopped = true;
  }
  cv.notify_all();
}

Server::Server(ServeConfig cfg, std::shared_ptr<Engine> engine,
               std::shared_ptr<ServeMetrics> metrics) {
  cfg.validate();
  SHARDLM_CHECK(engine != nullptr, core::ConfigError, "serve: no engine");
  impl_ = std::make_shared<Impl>(std::move(cfg), std::move(engine), std::move(metrics));
  Impl& m = *impl_;
  m.chat = ChatTemplate::from_json(m.engine->info().chat_template, "chat template");
  m.name = m.cfg.model_name;
  if (m.name.empty()) {
    namespace fs = std::filesystem;
    fs::path src(m.engine->info().source);
    m.name = src.has_parent_path() ? src.parent_path().filename().string() : src.stem().string();
    if (m.name.empty()) m.name = "shardlm";
  }
}

Server::~Server() {
  if (impl_) stop();
}

void Server::start() {
  Impl& m = *impl_;
  error_code ec;
  auto addr = net::ip::make_address(m.cfg.host, ec);
  if (ec) throw core::ConfigError("", "--host", m.cfg.host, "an IP address (" + ec.message() + ")");
  tcp::endpoint ep(addr, static_cast<uint16_t>(m.cfg.port));
  m.acceptor.emplace(m.ioc);
  m.acceptor->open(ep.protocol(), ec);
  if (!ec) m.acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) m.acceptor->bind(ep, ec);
  if (!ec) m.acceptor->listen(net::socket_base::max_listen_connections, ec);
  SHARDLM_CHECK(!ec, core::Error, "serve: cannot listen on {}:{}: {}", m.cfg.host, m.cfg.port,
                ec.message());
  m.bound_port = m.acceptor->local_endpoint().port();
  if (m.cfg.api_key.empty() && !addr.is_loopback())
    core::log::warn(
        "serve: listening on {} without an API key: anyone who reaches this address can use the "
        "model (give --api-key KEY or set SHARDLM_API_KEY)",
        m.cfg.host);
  if (m.cfg.handle_signals) {
    m.signals.add(SIGINT);
    m.signals.add(SIGTERM);
    m.signals.async_wait([self = impl_](error_code e, int sig) {
      if (e) return;
      core::log::info("serve: signal {}, finishing the requests in flight and stopping", sig);
      std::thread([self] { self->stop(); }).detach();
    });
  }
  m.work.emplace(net::make_work_guard(m.ioc));
  m.do_accept();
  m.running_threads = m.cfg.io_threads;
  for (int i = 0; i < m.cfg.io_threads; ++i)
    m.threads.emplace_back([&m] {
      m.ioc.run();
      std::lock_guard<std::mutex> g(m.mu);
      --m.running_threads;
      m.cv.notify_all();
    });
}

void Server::stop() {
  impl_->stop();
}

void Server::wait() {
  std::unique_lock<std::mutex> lk(impl_->mu);
  impl_->cv.wait(lk, [&] { return impl_->stopped; });
}

uint16_t Server::port() const {
  return impl_->bound_port;
}
std::string Server::url() const {
  return fmt::format("http://{}:{}", impl_->cfg.host, impl_->bound_port);
}
const std::string& Server::model_name() const {
  return impl_->name;
}
const ResponseCache& Server::cache() const {
  return impl_->cache;
}

}  // namespace shardlm::serve
