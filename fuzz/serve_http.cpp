// Fuzz target serve_http: bytes from a client of `shardlm serve`. They go
// through Boost.Beast's request parser with the server's limits
// (serve/server.cpp: body_limit = max_body_bytes, header_limit = 16 KiB),
// request after request as on a keep-alive connection; each complete request
// is routed by its target to the body checks of serve/protocol.h
// (parse_completion, then prepare_completion against a bytes-only tokenizer
// and a small model; parse_tokenize; parse_detokenize). An input that does not
// start like an HTTP request line is taken as a /v1/completions body.
// Only RequestError may escape the body checks, with a 4xx status.
#include <string>

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http.hpp>

#include "data/tokenizer.h"
#include "fuzz/fuzz_target.h"
#include "serve/completion.h"
#include "serve/protocol.h"

using namespace shardlm;
namespace http = boost::beast::http;

namespace {

const serve::ServeConfig& config() {
  static const serve::ServeConfig c = [] {
    serve::ServeConfig c;
    c.max_body_bytes = 64 << 10;
    return c;
  }();
  return c;
}

void check_body(const std::string& target, const std::string& body) {
  static const data::Tokenizer tok;
  static const serve::ModelInfo info = [] {
    serve::ModelInfo m;
    m.context_length = 64;
    m.vocab_size = 300;
    return m;
  }();
  try {
    if (target == "/v1/completions") {
      const serve::CompletionRequest r = serve::parse_completion(body, config());
      SHARDLM_FUZZ_CHECK(!r.prompts.empty() && r.n >= 1, "an accepted request without prompts");
      (void)r.params.batch_key();
      (void)serve::dump(r.params.to_json());
      const serve::PreparedCompletion p = serve::prepare_completion(r, tok, info, config());
      SHARDLM_FUZZ_CHECK(p.prompt_tokens >= 0, "negative prompt tokens");
    } else if (target == "/v1/tokenize") {
      (void)tok.encode(serve::parse_tokenize(body));
    } else if (target == "/v1/detokenize") {
      (void)serve::parse_detokenize(body);
    }
  } catch (const serve::RequestError& e) {
    SHARDLM_FUZZ_CHECK(e.status() >= 400 && e.status() < 500,
                       "a bad body answered with " + std::to_string(e.status()));
    (void)serve::dump(serve::error_body(e.what(), e.type(), e.param()));
  }
}

}  // namespace

SHARDLM_FUZZ_TARGET(serve_http) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (input.empty() || input[0] < 'A' || input[0] > 'Z') {
    check_body("/v1/completions", std::string(input));
    return 0;
  }
  for (int request = 0; request < 8 && !input.empty(); ++request) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(config().max_body_bytes);
    parser.header_limit(16 * 1024);
    parser.eager(true);
    boost::beast::error_code ec;
    while (!input.empty() && !parser.is_done()) {
      const size_t used = parser.put(boost::asio::buffer(input.data(), input.size()), ec);
      input.remove_prefix(used);
      if (ec == http::error::need_more) {
        ec = {};
        if (used == 0) break;
        continue;
      }
      if (ec) return 0;  // the server answers 413 or closes the connection
      if (used == 0) break;
    }
    if (!parser.is_done()) {
      parser.put_eof(ec);
      if (ec || !parser.is_done()) return 0;
    }
    const auto& req = parser.get();
    std::string path(req.target());
    if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
    check_body(path, req.body());
    if (!req.keep_alive()) return 0;
  }
  return 0;
}
