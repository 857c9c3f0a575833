// A small blocking HTTP/1.1 client on Boost.Beast (the tests, the benchmark,
// health checks): one request per connection; chunked responses are read chunk
// by chunk, each noted with the socket read that completed it (so a test can
// show that events arrive before the response ends). Header-only, torch-free.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace shardlm::serve::client {

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool chunked = false;
  std::vector<std::string> chunks;  // chunked bodies: each chunk
  std::vector<int> chunk_reads;     // the read (0, 1, ...) each chunk completed in
  std::vector<double>
      chunk_seconds;  // when each chunk completed, seconds after the request went out
};

// Sends one request on a new connection (Connection: close) and reads the whole answer.
inline HttpResult http_request(uint16_t port, const std::string& method, const std::string& target,
                               const std::string& body = "",
                               const std::string& content_type = "application/json",
                               const std::string& authorization = "") {
  namespace beast = boost::beast;
  namespace http = beast::http;
  namespace net = boost::asio;
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  stream.expires_after(std::chrono::seconds(60));
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.keep_alive(false);
  if (!authorization.empty()) req.set(http::field::authorization, authorization);
  if (!body.empty() || method == "POST") {
    req.set(http::field::content_type, content_type);
    req.body() = body;
    req.prepare_payload();
  }
  http::write(stream, req);
  const auto sent = std::chrono::steady_clock::now();

  HttpResult r;
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  int reads = 0;
  std::string current;
  auto on_body = [&](std::uint64_t remain, beast::string_view data, beast::error_code& ec) {
    current.append(data.data(), data.size());
    if (remain == data.size()) {
      r.chunks.push_back(current);
      r.chunk_reads.push_back(reads);
      r.chunk_seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count());
      current.clear();
    }
    ec = {};
    return data.size();
  };
  parser.on_chunk_body(on_body);
  // Socket reads counted by hand: each chunk records the read that completed it.
  while (!parser.is_done()) {
    beast::error_code ec;
    while (buf.size() > 0 && !parser.is_done()) {
      const size_t used = parser.put(buf.data(), ec);
      buf.consume(used);
      if (ec == http::error::need_more) break;
      if (ec) throw beast::system_error(ec);
      if (used == 0) break;
    }
    if (parser.is_done()) break;
    const size_t n = stream.socket().read_some(buf.prepare(1 << 16), ec);
    if (ec == net::error::eof) {
      parser.put_eof(ec);
      if (ec) throw beast::system_error(ec);
      break;
    }
    if (ec) throw beast::system_error(ec);
    buf.commit(n);
    ++reads;
  }
  auto& res = parser.get();
  r.status = static_cast<int>(res.result_int());
  for (const auto& f : res) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = std::string(f.value());
  }
  r.chunked = res.chunked();
  if (r.chunked) {
    for (const auto& c : r.chunks) r.body += c;
  } else {
    r.body = res.body();
  }
  beast::error_code ec;
  stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  return r;
}

// The JSON payloads of a text/event-stream body ("data: X\n\n" each), "[DONE]" included.
inline std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end == std::string::npos ? body.size() : end + 2;
  }
  return out;
}

}  // namespace shardlm::serve::client
