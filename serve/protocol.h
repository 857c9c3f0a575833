// The server's JSON protocol, OpenAI-compatible where it can be: parsing and
// checking /v1/completions requests (every wrong field becomes a RequestError
// that names it), the sampling parameters a batch shares, and the response,
// stream-chunk and error bodies. Torch-free. docs/serving.md shows each message.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/config.h"

namespace shardlm::serve {

// A request the server refuses: HTTP `status` and an OpenAI-style error body.
class RequestError : public std::runtime_error {
 public:
  RequestError(int status, const std::string& message, std::string param = "",
               std::string type = "invalid_request_error", std::string code = "")
      : std::runtime_error(message),
        status_(status),
        param_(std::move(param)),
        type_(std::move(type)),
        code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& type() const { return type_; }
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string param_, type_, code_;
};

// {"error": {"message", "type", "param", "code"}} as OpenAI writes it.
nlohmann::json error_body(const std::string& message, const std::string& type,
                          const std::string& param = "", const std::string& code = "");

// One candidate token with its log-probability (top_logprobs).
struct TopLogprob {
  int64_t token = 0;
  std::string text;  // its bytes (may be part of a UTF-8 character)
  double logprob = 0;
};

// A generated token as OpenAI's logprobs report it: log p under the model itself
// (temperature 1, no penalties or truncation) and the most probable tokens.
struct TokenLogprob {
  int64_t token = 0;
  std::string text;
  double logprob = 0;
  std::vector<TopLogprob> top;
};

// How one request's tokens are chosen. Requests whose batch_key() is equal and
// not empty may share a batch (model::Generator applies one GenerationConfig to
// every row); per-row limits (max_tokens, stop strings) are applied by the engine.
struct SamplingParams {
  int64_t max_tokens = 16;
  double temperature = 1.0;  // 0 = greedy (argmax)
  int64_t top_k = 0;
  double top_p = 1.0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  double frequency_penalty = 0.0;
  double presence_penalty = 0.0;
  int64_t seed = -1;              // >= 0: sampling replays exactly (the request runs alone)
  std::vector<std::string> stop;  // the text ends before the first of these
  bool ignore_eos = false;        // go on past the tokenizer's EOS token
  // -1: no logprobs; k >= 0: each token's log-probability and the k most probable
  // alternatives (completions: "logprobs": k; chat: "logprobs": true, "top_logprobs": k).
  int64_t logprobs = -1;

  bool greedy() const { return temperature == 0.0; }
  // Greedy, or sampling with a seed: the same request gives the same text.
  bool deterministic() const { return greedy() || seed >= 0; }
  // Equal keys may share a batch; "" means run alone (seeded sampling: the draws
  // of a row depend on the other rows of its batch).
  std::string batch_key() const;
  // Everything that decides the output (the cache key's parameters).
  nlohmann::json to_json() const;
};

// One prompt as the client gave it: text, or token ids.
struct PromptInput {
  bool is_ids = false;
  std::string text;
  std::vector<int64_t> ids;
};

struct CompletionRequest {
  std::vector<PromptInput> prompts;  // at least one
  int64_t n = 1;                     // choices per prompt
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with usage
  SamplingParams params;
  std::string model;  // as the client named it ("" when absent)
};

// Parses and checks a /v1/completions body; throws RequestError(400) naming the
// field for malformed JSON, wrong types, out-of-range values, empty prompts and
// unknown or unsupported fields. `max_tokens` defaults to cfg.default_max_tokens.
CompletionRequest parse_completion(const std::string& body, const ServeConfig& cfg);

// One message of a chat. `content` is a string, or OpenAI's list of parts of
// which only {"type": "text", "text": ...} are taken (joined).
struct ChatMessage {
  std::string role;  // system, developer (read as system), user or assistant
  std::string content;
};

struct ChatRequest {
  std::vector<ChatMessage> messages;  // at least one
  int64_t n = 1;
  bool stream = false;
  bool include_usage = false;
  SamplingParams params;  // logprobs: -1, or top_logprobs when "logprobs": true
  std::string model;
};

// Parses and checks a /v1/chat/completions body (RequestError(400) naming the
// field, as parse_completion). `max_completion_tokens` is read as max_tokens.
ChatRequest parse_chat(const std::string& body, const ServeConfig& cfg);

// /v1/tokenize {"prompt": string, "add_special_tokens"?: bool} and
// /v1/detokenize {"tokens": [int]}: the field, checked (RequestError names it).
std::string parse_tokenize(const std::string& body);
std::vector<int64_t> parse_detokenize(const std::string& body);

// ---- responses ---------------------------------------------------------------------------------

struct Choice {
  std::string text;
  std::string finish_reason;  // "stop" or "length"
  nlohmann::json logprobs;    // null, or completion_logprobs / chat_logprobs
};

// What a response says about its tokens: OpenAI's usage (with
// prompt_tokens_details.cached_tokens) and shardlm's own object.
struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
  int64_t cached_tokens = 0;    // prompt tokens whose keys came from the prefix cache
  int64_t computed_tokens = 0;  // tokens the model computed for this request
  int64_t seed = -1;            // what sampling drew from
  std::string scheduler;
};
nlohmann::json usage_json(const Usage& u);
// {"seed", "prefix_cache_hit", "cached_tokens", "computed_tokens", "scheduler"}
nlohmann::json shardlm_json(const Usage& u);

// Characters (code points) of UTF-8 text, as Python's len() counts them.
int64_t utf8_characters(const std::string& s);

// "cmpl-" / "chatcmpl-" + 24 hex digits.
std::string completion_id(const std::string& prefix = "cmpl-");
int64_t unix_time();

// OpenAI's logprobs of /v1/completions: {"tokens", "token_logprobs",
// "top_logprobs": [{text: logprob}] (null without alternatives), "text_offset"};
// offsets count characters from `offset` (the text before these tokens).
nlohmann::json completion_logprobs(const std::vector<TokenLogprob>& lps, int64_t top,
                                   int64_t offset);
// Of /v1/chat/completions: {"content": [{"token", "logprob", "bytes",
// "top_logprobs": [{"token", "logprob", "bytes"}]}], "refusal": null}.
nlohmann::json chat_logprobs(const std::vector<TokenLogprob>& lps, int64_t top);

nlohmann::json completion_body(const std::string& id, int64_t created, const std::string& model,
                               const std::vector<Choice>& choices, const Usage& usage);
nlohmann::json chat_body(const std::string& id, int64_t created, const std::string& model,
                         const std::vector<Choice>& choices, const Usage& usage);
// One server-sent event: "data: {...}\n\n" with one choice's new text (finish_reason
// null) or its end (text "", finish_reason set). `logprobs`: null or the tokens of `text`.
std::string stream_chunk(const std::string& id, int64_t created, const std::string& model,
                         size_t index, const std::string& text, const std::string& finish_reason,
                         const nlohmann::json& logprobs = nullptr);
// Chat: "delta" is {"role": "assistant", "content": ""} first, then {"content": text}.
std::string chat_chunk(const std::string& id, int64_t created, const std::string& model,
                       size_t index, const nlohmann::json& delta, const std::string& finish_reason,
                       const nlohmann::json& logprobs = nullptr);
// The last event with usage (and the shardlm object); `object` is
// "text_completion" or "chat.completion.chunk".
std::string stream_usage_chunk(const std::string& id, int64_t created, const std::string& model,
                               const std::string& object, const Usage& usage);
inline const char* stream_done() {
  return "data: [DONE]\n\n";
}

// JSON text that never throws on invalid UTF-8 (a token cut mid-character): U+FFFD.
std::string dump(const nlohmann::json& j);

}  // namespace shardlm::serve
