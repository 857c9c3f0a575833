// A small Beast WebSocket client for the monitor tests: connect, send text or
// binary frames, and read with a timeout (each client drives its own
// io_context from the test thread, so every wait is bounded).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "monitor/protocol.h"
#include "monitor/schema.h"

namespace shardlm::monitor::testing {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;

class WsClient {
 public:
  // Connects and completes the WebSocket handshake (throws on failure).
  explicit WsClient(uint16_t port, size_t max_message = size_t{64} << 20) : ws_(ioc_) {
    tcp::resolver r(ioc_);
    beast::get_lowest_layer(ws_).connect(r.resolve("127.0.0.1", std::to_string(port)));
    ws_.read_message_max(max_message);
    ws_.handshake("127.0.0.1:" + std::to_string(port), "/ws");
  }

  void send_text(const std::string& s) {
    ws_.text(true);
    ws_.write(net::buffer(s));
  }
  void send(const json& j) { send_text(j.dump()); }
  void send_binary(const std::string& s) {
    ws_.binary(true);
    ws_.write(net::buffer(s));
  }
  void hello_viewer(const std::string& token = "") {
    json h = {{"v", 1}, {"type", "hello"}, {"role", "viewer"}, {"client", "test"}};
    if (!token.empty()) h["token"] = token;
    send(h);
  }

  // One text message, or nullopt on timeout or when the connection closed (closed() tells).
  std::optional<std::string> recv_text(double timeout_s) {
    std::optional<std::string> out;
    error_code_ = {};
    bool done = false;
    ws_.async_read(buf_, [&](beast::error_code ec, size_t n) {
      done = true;
      if (ec) {
        error_code_ = ec;
        return;
      }
      out = beast::buffers_to_string(buf_.data());
      buf_.consume(n);
    });
    ioc_.restart();
    ioc_.run_for(std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
    if (!done) {
      beast::get_lowest_layer(ws_).cancel();
      ioc_.restart();
      ioc_.run();
      closed_ = true;  // a cancelled websocket read leaves the stream unusable
    } else if (error_code_) {
      closed_ = true;
    }
    return out;
  }

  std::optional<json> recv(double timeout_s) {
    auto t = recv_text(timeout_s);
    if (!t) return std::nullopt;
    return json::parse(*t);
  }

  // Reads until a message of `type` arrives (others are appended to `skipped`).
  std::optional<json> recv_type(const std::string& type, double timeout_s,
                                std::vector<json>* skipped = nullptr) {
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000));
    while (std::chrono::steady_clock::now() < deadline) {
      double left =
          std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
      auto m = recv(std::max(0.01, left));
      if (!m) return std::nullopt;
      if ((*m)["type"] == type) return m;
      if (skipped) skipped->push_back(*m);
    }
    return std::nullopt;
  }

  bool closed() const { return closed_; }
  beast::error_code last_error() const { return error_code_; }
  websocket::stream<beast::tcp_stream>& stream() { return ws_; }

 private:
  net::io_context ioc_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buf_;
  beast::error_code error_code_;
  bool closed_ = false;
};

// A blocking HTTP GET on 127.0.0.1; returns (status, body).
inline std::pair<int, std::string> http_get(uint16_t port, const std::string& target) {
  namespace http = beast::http;
  net::io_context ioc;
  beast::tcp_stream s(ioc);
  tcp::resolver r(ioc);
  s.connect(r.resolve("127.0.0.1", std::to_string(port)));
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  http::write(s, req);
  beast::flat_buffer b;
  http::response<http::string_body> res;
  http::read(s, b, res);
  beast::error_code ec;
  s.socket().shutdown(tcp::socket::shutdown_both, ec);
  return {static_cast<int>(res.result_int()), res.body()};
}

// Schema errors of one message text ("" when valid).
inline std::string schema_errors(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return "not JSON: " + text.substr(0, 80);
  auto e = protocol_validator().errors(j);
  std::string out;
  for (auto& x : e) out += x + "; ";
  return out.empty() ? "" : out + " in " + text.substr(0, 200);
}

}  // namespace shardlm::monitor::testing
