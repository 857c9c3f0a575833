// The JSON protocol of the server (protocol.h): request checks and response bodies.
#include "serve/protocol.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <set>

namespace shardlm::serve {

using json = nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw RequestError(400, message, param);
}

json parse_object(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    bad("",
        "the request body is not valid JSON (send a JSON object with Content-Type: "
        "application/json)");
  if (!j.is_object())
    bad("", fmt::format("the request body must be a JSON object, not {}", j.type_name()));
  return j;
}

const char* type_of(const json& v) {
  return v.type_name();
}

double get_number(const json& j, const std::string& key, double def, double lo, double hi,
                  const char* range) {
  if (!j.contains(key) || j[key].is_null()) return def;
  const json& v = j[key];
  if (!v.is_number()) bad(key, fmt::format("'{}' must be a number, not {}", key, type_of(v)));
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(key, fmt::format("'{}' is {}, expected {}", key, x, range));
  return x;
}

int64_t get_int(const json& j, const std::string& key, int64_t def, int64_t lo, int64_t hi,
                const char* range) {
  if (!j.contains(key) || j[key].is_null()) return def;
  const json& v = j[key];
  if (!v.is_number_integer())
    bad(key, fmt::format("'{}' must be an integer, not {}", key,
                         v.is_number_float() ? "a fraction" : type_of(v)));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
    bad(key, fmt::format("'{}' is {}, expected {}", key, v.get<uint64_t>(), range));
  const auto x = v.get<int64_t>();
  if (x < lo || x > hi) bad(key, fmt::format("'{}' is {}, expected {}", key, x, range));
  return x;
}

bool get_bool(const json& j, const std::string& key, bool def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_boolean())
    bad(key, fmt::format("'{}' must be true or false, not {}", key, type_of(j[key])));
  return j[key].get<bool>();
}

std::vector<int64_t> get_ids(const json& v, const std::string& where) {
  std::vector<int64_t> ids;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer() || v[i].get<int64_t>() < 0)
      bad("prompt", fmt::format("{}[{}] must be a token id (an integer >= 0)", where, i));
    ids.push_back(v[i].get<int64_t>());
  }
  if (ids.empty()) bad("prompt", fmt::format("{} is an empty list of token ids", where));
  return ids;
}

std::vector<PromptInput> get_prompts(const json& j) {
  if (!j.contains("prompt") || j["prompt"].is_null())
    bad("prompt", "'prompt' is required: a string, a list of strings or token ids");
  const json& p = j["prompt"];
  std::vector<PromptInput> out;
  auto text = [&](const json& s, const std::string& where) {
    PromptInput in;
    in.text = s.get<std::string>();
    if (in.text.empty())
      bad("prompt", fmt::format("{} is empty: give at least one character", where));
    out.push_back(std::move(in));
  };
  if (p.is_string()) {
    text(p, "'prompt'");
  } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {  // one prompt of ids
    PromptInput in;
    in.is_ids = true;
    in.ids = get_ids(p, "prompt");
    out.push_back(std::move(in));
  } else if (p.is_array()) {
    if (p.empty()) bad("prompt", "'prompt' is an empty list: give at least one prompt");
    for (size_t i = 0; i < p.size(); ++i) {
      const std::string where = fmt::format("prompt[{}]", i);
      if (p[i].is_string()) {
        text(p[i], where);
      } else if (p[i].is_array()) {
        PromptInput in;
        in.is_ids = true;
        in.ids = get_ids(p[i], where);
        out.push_back(std::move(in));
      } else {
        bad("prompt", fmt::format("{} must be a string or a list of token ids, not {}", where,
                                  type_of(p[i])));
      }
    }
  } else {
    bad("prompt", fmt::format("'prompt' must be a string or a list, not {}", type_of(p)));
  }
  return out;
}

}  // namespace

json error_body(const std::string& message, const std::string& type, const std::string& param,
                const std::string& code) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

std::string SamplingParams::batch_key() const {
  if (!greedy() && seed >= 0) return "";
  // Only what model::Generator applies to a whole batch; max_tokens and stop are per row.
  json k = {{"greedy", greedy()},
            {"repetition_penalty", repetition_penalty},
            {"frequency_penalty", frequency_penalty},
            {"presence_penalty", presence_penalty},
            {"ignore_eos", ignore_eos}};
  if (!greedy()) {
    k["temperature"] = temperature;
    k["top_k"] = top_k;
    k["top_p"] = top_p;
    k["min_p"] = min_p;
  }
  return k.dump();
}

json SamplingParams::to_json() const {
  json j = {{"max_tokens", max_tokens},
            {"temperature", temperature},
            {"repetition_penalty", repetition_penalty},
            {"frequency_penalty", frequency_penalty},
            {"presence_penalty", presence_penalty},
            {"stop", stop},
            {"ignore_eos", ignore_eos},
            {"logprobs", logprobs}};
  if (!greedy()) {  // greedy ignores these: equal requests share a cache entry
    j["top_k"] = top_k;
    j["top_p"] = top_p;
    j["min_p"] = min_p;
    j["seed"] = seed;
  }
  return j;
}

namespace {

// The fields both endpoints share: sampling, stop, seed, n, stream, model, user.
void parse_common(const json& j, const ServeConfig& cfg, SamplingParams& p, int64_t* n,
                  bool* stream, bool* include_usage, std::string* model) {
  if (j.contains("model") && !j["model"].is_null()) {
    if (!j["model"].is_string())
      bad("model", fmt::format("'model' must be a string, not {}", type_of(j["model"])));
    *model = j["model"].get<std::string>();
  }
  if (j.contains("user") && !j["user"].is_null() && !j["user"].is_string())
    bad("user", "'user' must be a string");
  p.max_tokens = get_int(j, "max_tokens", cfg.default_max_tokens, 1, int64_t{1} << 30, ">= 1");
  p.temperature = get_number(j, "temperature", p.temperature, 0, 100, "0 (greedy) to 100");
  p.top_k = get_int(j, "top_k", p.top_k, -1, int64_t{1} << 30, ">= 0 (0 or -1 = off)");
  if (p.top_k < 0) p.top_k = 0;
  p.top_p = get_number(j, "top_p", p.top_p, 0, 1, "in (0, 1]");
  if (p.top_p <= 0) bad("top_p", "'top_p' is 0, expected a value in (0, 1]");
  p.min_p = get_number(j, "min_p", p.min_p, 0, 1, "in [0, 1]");
  p.repetition_penalty =
      get_number(j, "repetition_penalty", p.repetition_penalty, 0, 100, "in (0, 100]");
  if (p.repetition_penalty <= 0)
    bad("repetition_penalty", "'repetition_penalty' is 0, expected a value > 0 (1 = off)");
  p.frequency_penalty = get_number(j, "frequency_penalty", 0, -2, 2, "in [-2, 2]");
  p.presence_penalty = get_number(j, "presence_penalty", 0, -2, 2, "in [-2, 2]");
  p.seed = get_int(j, "seed", -1, -1, (int64_t{1} << 62), ">= 0");
  p.ignore_eos = get_bool(j, "ignore_eos", false);
  if (j.contains("stop") && !j["stop"].is_null()) {
    const json& s = j["stop"];
    if (s.is_string()) {
      p.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      for (const auto& x : s) {
        if (!x.is_string()) bad("stop", "'stop' must be a string or a list of strings");
        p.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", fmt::format("'stop' must be a string or a list of strings, not {}", type_of(s)));
    }
    if (p.stop.size() > 4) bad("stop", "'stop' holds at most 4 strings");
    for (const auto& x : p.stop)
      if (x.empty()) bad("stop", "'stop' strings must not be empty");
  }
  *n = get_int(j, "n", 1, 1, 128, "1 to 128");
  *stream = get_bool(j, "stream", false);
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const json& o = j["stream_options"];
    if (!o.is_object()) bad("stream_options", "'stream_options' must be an object");
    *include_usage = get_bool(o, "include_usage", false);
  }
}

// Refuses unknown fields, and unsupported ones unless neutral (null, false, 1, {}).
void check_fields(const json& j, const std::set<std::string>& known,
                  const std::set<std::string>& unsupported) {
  for (const auto& [key, value] : j.items()) {
    if (known.count(key)) continue;
    if (unsupported.count(key)) {
      const bool harmless =
          value.is_null() || (value.is_boolean() && !value.get<bool>()) ||
          (key == "best_of" && value == 1) || (value.is_object() && value.empty()) ||
          (value.is_array() && value.empty()) ||
          (key == "response_format" && value.is_object() && value.value("type", "") == "text");
      if (harmless) continue;
      bad(key, fmt::format("'{}' is not supported by this server", key));
    }
    bad(key, fmt::format("unknown field '{}' (docs/serving.md lists the fields)", key));
  }
}

const std::set<std::string>& common_fields() {
  static const std::set<std::string> f = {"max_tokens",
                                          "temperature",
                                          "top_k",
                                          "top_p",
                                          "min_p",
                                          "repetition_penalty",
                                          "frequency_penalty",
                                          "presence_penalty",
                                          "stop",
                                          "seed",
                                          "n",
                                          "stream",
                                          "stream_options",
                                          "model",
                                          "ignore_eos",
                                          "user"};
  return f;
}

}  // namespace

CompletionRequest parse_completion(const std::string& body, const ServeConfig& cfg) {
  const json j = parse_object(body);
  // Fields we read, fields clients send that change nothing here, and fields that
  // would change the answer but are not implemented (refused, never ignored).
  std::set<std::string> known = common_fields();
  known.insert({"prompt", "logprobs"});
  check_fields(j, known, {"suffix", "echo", "best_of", "logit_bias", "use_beam_search"});
  CompletionRequest r;
  r.prompts = get_prompts(j);
  parse_common(j, cfg, r.params, &r.n, &r.stream, &r.include_usage, &r.model);
  // OpenAI's completions: "logprobs": k, the k most probable alternatives (0 = only
  // the chosen token's); vLLM allows up to 20.
  r.params.logprobs = get_int(j, "logprobs", -1, 0, 20, "0 to 20 (or null)");
  return r;
}

ChatRequest parse_chat(const std::string& body, const ServeConfig& cfg) {
  const json j = parse_object(body);
  std::set<std::string> known = common_fields();
  known.insert({"messages", "logprobs", "top_logprobs", "max_completion_tokens", "store",
                "metadata", "service_tier"});
  check_fields(j, known,
               {"tools", "tool_choice", "functions", "function_call", "response_format",
                "logit_bias", "parallel_tool_calls", "audio", "modalities", "prediction",
                "reasoning_effort", "web_search_options", "best_of", "echo"});
  ChatRequest r;
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
    bad("messages", "'messages' is required: a non-empty list of {role, content}");
  const json& ms = j["messages"];
  for (size_t i = 0; i < ms.size(); ++i) {
    const std::string where = fmt::format("messages[{}]", i);
    const json& m = ms[i];
    if (!m.is_object()) bad("messages", where + " must be an object {role, content}");
    if (!m.contains("role") || !m["role"].is_string())
      bad("messages", where + ".role is required: system, user or assistant");
    ChatMessage msg;
    msg.role = m["role"].get<std::string>();
    if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
      bad("messages", fmt::format("{}.role is '{}'; expected system, developer, user or "
                                  "assistant (tools are not supported)",
                                  where, msg.role));
    for (const auto& [key, value] : m.items())
      if (key != "role" && key != "content" && key != "name")
        bad("messages", fmt::format("{} has an unsupported field '{}'", where, key));
    const json c = m.contains("content") ? m["content"] : json(nullptr);
    if (c.is_string()) {
      msg.content = c.get<std::string>();
    } else if (c.is_array()) {
      for (size_t k = 0; k < c.size(); ++k) {
        if (!c[k].is_object() || c[k].value("type", "") != "text" || !c[k].contains("text") ||
            !c[k]["text"].is_string())
          bad("messages", fmt::format("{}.content[{}] must be {{\"type\": \"text\", "
                                      "\"text\": ...}} (only text is supported)",
                                      where, k));
        msg.content += c[k]["text"].get<std::string>();
      }
    } else {
      bad("messages", where + ".content must be a string or a list of text parts");
    }
    r.messages.push_back(std::move(msg));
  }
  json jj = j;
  if (j.contains("max_completion_tokens") && !j["max_completion_tokens"].is_null()) {
    if (j.contains("max_tokens") && !j["max_tokens"].is_null())
      bad("max_completion_tokens", "give max_tokens or max_completion_tokens, not both");
    jj["max_tokens"] = j["max_completion_tokens"];
  }
  parse_common(jj, cfg, r.params, &r.n, &r.stream, &r.include_usage, &r.model);
  const bool lp = get_bool(j, "logprobs", false);
  const int64_t top = get_int(j, "top_logprobs", -1, 0, 20, "0 to 20");
  if (top >= 0 && !lp) bad("top_logprobs", "'top_logprobs' needs \"logprobs\": true");
  r.params.logprobs = lp ? std::max<int64_t>(top, 0) : -1;
  return r;
}

std::string parse_tokenize(const std::string& body) {
  const json j = parse_object(body);
  for (const auto& [key, value] : j.items())
    if (key != "prompt" && key != "model" && key != "add_special_tokens")
      bad(key, fmt::format("unknown field '{}' (expected prompt)", key));
  if (!j.contains("prompt") || !j["prompt"].is_string())
    bad("prompt", "'prompt' is required and must be a string");
  return j["prompt"].get<std::string>();
}

std::vector<int64_t> parse_detokenize(const std::string& body) {
  const json j = parse_object(body);
  for (const auto& [key, value] : j.items())
    if (key != "tokens" && key != "model")
      bad(key, fmt::format("unknown field '{}' (expected tokens)", key));
  if (!j.contains("tokens") || !j["tokens"].is_array())
    bad("tokens", "'tokens' is required and must be a list of token ids");
  std::vector<int64_t> ids;
  for (size_t i = 0; i < j["tokens"].size(); ++i) {
    const json& v = j["tokens"][i];
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
      bad("tokens", fmt::format("tokens[{}] must be a token id (an integer >= 0)", i));
    ids.push_back(v.get<int64_t>());
  }
  return ids;
}

// ---- responses ---------------------------------------------------------------------------------

std::string completion_id(const std::string& prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}{:08x}", prefix, rng(), static_cast<uint32_t>(rng()));
}

int64_t unix_time() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json shardlm_json(const Usage& u) {
  return {{"seed", u.seed},
          {"prefix_cache_hit", u.cached_tokens > 0},
          {"cached_tokens", u.cached_tokens},
          {"computed_tokens", u.computed_tokens},
          {"scheduler", u.scheduler}};
}

int64_t utf8_characters(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

namespace {

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

}  // namespace

json completion_logprobs(const std::vector<TokenLogprob>& lps, int64_t top, int64_t offset) {
  json tokens = json::array(), values = json::array(), tops = json::array(),
       offsets = json::array();
  for (const auto& t : lps) {
    tokens.push_back(t.text);
    values.push_back(t.logprob);
    offsets.push_back(offset);
    offset += utf8_characters(t.text);
    if (top > 0) {
      json m = json::object();
      for (const auto& a : t.top) m[a.text] = a.logprob;
      // OpenAI lists the chosen token too when it is not among the most probable.
      if (!m.contains(t.text)) m[t.text] = t.logprob;
      tops.push_back(m);
    } else {
      tops.push_back(nullptr);
    }
  }
  return {{"tokens", tokens},
          {"token_logprobs", values},
          {"top_logprobs", tops},
          {"text_offset", offsets}};
}

json chat_logprobs(const std::vector<TokenLogprob>& lps, int64_t top) {
  json content = json::array();
  for (const auto& t : lps) {
    json alts = json::array();
    for (size_t i = 0; i < t.top.size() && static_cast<int64_t>(i) < top; ++i)
      alts.push_back({{"token", t.top[i].text},
                      {"logprob", t.top[i].logprob},
                      {"bytes", bytes_of(t.top[i].text)}});
    content.push_back({{"token", t.text},
                       {"logprob", t.logprob},
                       {"bytes", bytes_of(t.text)},
                       {"top_logprobs", alts}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

json completion_body(const std::string& id, int64_t created, const std::string& model,
                     const std::vector<Choice>& choices, const Usage& usage) {
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i)
    cs.push_back({{"index", i},
                  {"text", choices[i].text},
                  {"logprobs", choices[i].logprobs},
                  {"finish_reason", choices[i].finish_reason}});
  return {{"id", id},
          {"object", "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", cs},
          {"usage", usage_json(usage)},
          {"shardlm", shardlm_json(usage)}};
}

json chat_body(const std::string& id, int64_t created, const std::string& model,
               const std::vector<Choice>& choices, const Usage& usage) {
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i)
    cs.push_back(
        {{"index", i},
         {"message", {{"role", "assistant"}, {"content", choices[i].text}, {"refusal", nullptr}}},
         {"logprobs", choices[i].logprobs},
         {"finish_reason", choices[i].finish_reason}});
  return {{"id", id},
          {"object", "chat.completion"},
          {"created", created},
          {"model", model},
          {"system_fingerprint", "shardlm"},
          {"choices", cs},
          {"usage", usage_json(usage)},
          {"shardlm", shardlm_json(usage)}};
}

std::string stream_chunk(const std::string& id, int64_t created, const std::string& model,
                         size_t index, const std::string& text, const std::string& finish_reason,
                         const json& logprobs) {
  json c = {{"index", index},
            {"text", text},
            {"logprobs", logprobs},
            {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  json j = {{"id", id},
            {"object", "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array({c})}};
  return "data: " + dump(j) + "\n\n";
}

std::string chat_chunk(const std::string& id, int64_t created, const std::string& model,
                       size_t index, const json& delta, const std::string& finish_reason,
                       const json& logprobs) {
  json c = {{"index", index},
            {"delta", delta},
            {"logprobs", logprobs},
            {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  json j = {{"id", id},       {"object", "chat.completion.chunk"}, {"created", created},
            {"model", model}, {"system_fingerprint", "shardlm"},   {"choices", json::array({c})}};
  return "data: " + dump(j) + "\n\n";
}

std::string stream_usage_chunk(const std::string& id, int64_t created, const std::string& model,
                               const std::string& object, const Usage& usage) {
  json j = {{"id", id},
            {"object", object},
            {"created", created},
            {"model", model},
            {"choices", json::array()},
            {"usage", usage_json(usage)},
            {"shardlm", shardlm_json(usage)}};
  return "data: " + dump(j) + "\n\n";
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace shardlm::serve
