// The JSON protocol of the server (protocol.h): request checks and response bodies.
#include "serve/protocol.h"

#include <fmt/format.h>

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

json error_body(const std::string& message, const std::string& type, const std::string& param) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", nullptr}}}};
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
            {"ignore_eos", ignore_eos}};
  if (!greedy()) {  // greedy ignores these: equal requests share a cache entry
    j["top_k"] = top_k;
    j["top_p"] = top_p;
    j["min_p"] = min_p;
    j["seed"] = seed;
  }
  return j;
}

CompletionRequest parse_completion(const std::string& body, const ServeConfig& cfg) {
  const json j = parse_object(body);
  // Fields we read, fields clients send that change nothing here, and fields that
  // would change the answer but are not implemented (refused, never ignored).
  static const std::set<std::string> known = {"prompt",
                                              "max_tokens",
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
  static const std::set<std::string> unsupported = {"suffix",  "echo",       "logprobs",
                                                    "best_of", "logit_bias", "use_beam_search"};
  for (const auto& [key, value] : j.items()) {
    if (known.count(key)) continue;
    if (unsupported.count(key)) {
      const bool harmless = value.is_null() || (value.is_boolean() && !value.get<bool>()) ||
                            (key == "best_of" && value == 1) ||
                            (key == "logit_bias" && value.is_object() && value.empty());
      if (harmless) continue;
      bad(key, fmt::format("'{}' is not supported by this server", key));
    }
    bad(key, fmt::format("unknown field '{}' (docs/serving.md lists the fields)", key));
  }

  CompletionRequest r;
  r.prompts = get_prompts(j);
  if (j.contains("model") && !j["model"].is_null()) {
    if (!j["model"].is_string())
      bad("model", fmt::format("'model' must be a string, not {}", type_of(j["model"])));
    r.model = j["model"].get<std::string>();
  }
  if (j.contains("user") && !j["user"].is_null() && !j["user"].is_string())
    bad("user", "'user' must be a string");
  SamplingParams& p = r.params;
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
  r.n = get_int(j, "n", 1, 1, 128, "1 to 128");
  r.stream = get_bool(j, "stream", false);
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const json& o = j["stream_options"];
    if (!o.is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = get_bool(o, "include_usage", false);
  }
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

std::string completion_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("cmpl-{:016x}{:08x}", rng(), static_cast<uint32_t>(rng()));
}

int64_t unix_time() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

json completion_body(const std::string& id, int64_t created, const std::string& model,
                     const std::vector<Choice>& choices, int64_t prompt_tokens,
                     int64_t completion_tokens) {
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i)
    cs.push_back({{"index", i},
                  {"text", choices[i].text},
                  {"logprobs", nullptr},
                  {"finish_reason", choices[i].finish_reason}});
  return {{"id", id},
          {"object", "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", cs},
          {"usage",
           {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}}}};
}

std::string stream_chunk(const std::string& id, int64_t created, const std::string& model,
                         size_t index, const std::string& text, const std::string& finish_reason) {
  json c = {{"index", index},
            {"text", text},
            {"logprobs", nullptr},
            {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  json j = {{"id", id},
            {"object", "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array({c})}};
  return "data: " + dump(j) + "\n\n";
}

std::string stream_usage_chunk(const std::string& id, int64_t created, const std::string& model,
                               int64_t prompt_tokens, int64_t completion_tokens) {
  json j = {{"id", id},
            {"object", "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array()},
            {"usage",
             {{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion_tokens},
              {"total_tokens", prompt_tokens + completion_tokens}}}};
  return "data: " + dump(j) + "\n\n";
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace shardlm::serve
