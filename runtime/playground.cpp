// The Generate tab's generation (playground.h): the request's checks, the
// events, and the guards that keep training's state as it was.
#include "runtime/playground.h"

#include <chrono>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "data/utf8.h"
#include "model/stopping.h"

namespace shardlm::runtime {

using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& key, const json& value, const std::string& expected) {
  throw core::ConfigError("generate request", key, value.dump(), expected);
}

template <class T>
T field(const json& o, const char* key, const std::string& path, const T& def) {
  if (!o.contains(key)) return def;
  const json& v = o[key];
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) bad(path + key, v, "true or false");
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) bad(path + key, v, "an integer");
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) bad(path + key, v, "a number");
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) bad(path + key, v, "a string");
  } else {
    if (!v.is_array()) bad(path + key, v, "a list of strings");
    for (const auto& x : v)
      if (!x.is_string()) bad(path + key, v, "a list of strings");
  }
  return v.get<T>();
}

// Training's RNG (the global generator of the model's device), put back as it was.
class GlobalRngGuard {
 public:
  explicit GlobalRngGuard(torch::Device device)
      : gen_(at::globalContext().defaultGenerator(device)) {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    state_ = gen_.get_state();
  }
  ~GlobalRngGuard() {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    gen_.set_state(state_);
  }
  GlobalRngGuard(const GlobalRngGuard&) = delete;
  GlobalRngGuard& operator=(const GlobalRngGuard&) = delete;

 private:
  at::Generator gen_;
  torch::Tensor state_;
};

// Eval mode for the call; the previous mode comes back.
class ModeGuard {
 public:
  explicit ModeGuard(model::GPT& m) : m_(m), was_training_(m->is_training()) {}
  ~ModeGuard() { m_->train(was_training_); }
  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;

 private:
  model::GPT& m_;
  bool was_training_;
};

}  // namespace

PlaygroundRequest parse_playground_request(const json& args) {
  if (!args.is_object()) bad("args", args, "an object");
  static const std::set<std::string> keys = {"prompt", "prompts", "options", "top", "target"};
  for (const auto& [k, v] : args.items())
    if (!keys.count(k)) bad(k, v, "one of prompt, prompts, options, top, target");
  PlaygroundRequest r;
  if (args.contains("prompts")) {
    r.prompts = field<std::vector<std::string>>(args, "prompts", "", {});
    if (r.prompts.empty()) bad("prompts", args["prompts"], "at least one prompt");
  } else {
    r.prompts.push_back(field<std::string>(args, "prompt", "", ""));
  }
  r.top = field<int64_t>(args, "top", "", 5);
  if (r.top < 0 || r.top > 20) bad("top", args["top"], "an integer from 0 to 20");
  const json opts = args.value("options", json::object());
  if (!opts.is_object()) bad("options", opts, "an object of decoding options (docs/generation.md)");
  static const std::set<std::string> known = {"strategy",
                                              "max_new_tokens",
                                              "temperature",
                                              "top_k",
                                              "top_p",
                                              "min_p",
                                              "repetition_penalty",
                                              "frequency_penalty",
                                              "presence_penalty",
                                              "num_beams",
                                              "length_penalty",
                                              "early_stopping",
                                              "stop",
                                              "seed",
                                              "ignore_eos",
                                              "num_return_sequences"};
  for (const auto& [k, v] : opts.items())
    if (!known.count(k)) bad("options." + k, v, "a decoding option of docs/generation.md");
  model::GenerationConfig& c = r.cfg;
  const std::string p = "options.";
  c.strategy = field<std::string>(opts, "strategy", p, c.strategy);
  c.max_new_tokens = field<int64_t>(opts, "max_new_tokens", p, c.max_new_tokens);
  c.num_return_sequences = field<int64_t>(opts, "num_return_sequences", p, 1);
  if (c.num_return_sequences != 1)
    bad("options.num_return_sequences", opts["num_return_sequences"],
        "1 (the playground shows one sequence per prompt)");
  c.temperature = field<double>(opts, "temperature", p, c.temperature);
  c.top_k = field<int64_t>(opts, "top_k", p, c.top_k);
  c.top_p = field<double>(opts, "top_p", p, c.top_p);
  c.min_p = field<double>(opts, "min_p", p, c.min_p);
  c.repetition_penalty = field<double>(opts, "repetition_penalty", p, c.repetition_penalty);
  c.frequency_penalty = field<double>(opts, "frequency_penalty", p, c.frequency_penalty);
  c.presence_penalty = field<double>(opts, "presence_penalty", p, c.presence_penalty);
  c.num_beams = field<int64_t>(opts, "num_beams", p, c.num_beams);
  c.length_penalty = field<double>(opts, "length_penalty", p, c.length_penalty);
  c.early_stopping = field<bool>(opts, "early_stopping", p, c.early_stopping);
  c.stop_strings = field<std::vector<std::string>>(opts, "stop", p, {});
  c.seed = field<int64_t>(opts, "seed", p, c.seed);
  r.ignore_eos = field<bool>(opts, "ignore_eos", p, false);
  c.validate();
  return r;
}

void configure_for(model::GenerationConfig& cfg, const data::Tokenizer& tok, bool ignore_eos) {
  if (!ignore_eos && tok.eos_id()) cfg.eos_ids.push_back(*tok.eos_id());
  if (tok.pad_id()) cfg.pad_id = *tok.pad_id();
}

std::vector<int64_t> encode_prompt(const data::Tokenizer& tok, const std::string& text) {
  auto ids = tok.encode(text);
  if (ids.empty() && tok.bos_id()) ids.push_back(*tok.bos_id());
  return {ids.begin(), ids.end()};
}

void run_playground(const PlaygroundRequest& req, model::GPT model, const data::Tokenizer& tok,
                    const std::function<void(const json&)>& emit) {
  SHARDLM_CHECK(!model.is_empty(), core::ConfigError, "no model to generate from");
  const int64_t vocab = model->config().vocab_size;
  SHARDLM_CHECK(static_cast<int64_t>(tok.vocab_size()) <= vocab, core::ConfigError,
                "the tokenizer has {} tokens but the model only {}: not its tokenizer",
                tok.vocab_size(), vocab);
  model::GenerationConfig cfg = req.cfg;
  configure_for(cfg, tok, req.ignore_eos);
  const model::DecodeFn decode = [&tok](const std::vector<int64_t>& ids) {
    return tok.decode_model_ids(ids);
  };
  auto text_of = [&](int64_t id) { return data::utf8_sanitize(decode({id})); };

  const torch::Device device = model->wte->weight.device();
  GlobalRngGuard rng(device);
  ModeGuard mode(model);
  torch::NoGradGuard no_grad;
  model::Generator gen(model, cfg);  // eval mode from here; ModeGuard puts training back
  gen.set_decoder(decode);
  gen.set_alternatives(req.top);

  for (size_t p = 0; p < req.prompts.size(); ++p) {
    const std::vector<int64_t> ids = encode_prompt(tok, req.prompts[p]);
    model::TextStream ts(decode, cfg.stop_strings);
    const auto t0 = std::chrono::steady_clock::now();
    model::GenerationOutput out = gen.generate({ids}, [&](const model::TokenEvent& e) {
      json top = json::array();
      for (const auto& [id, lp] : e.top)
        top.push_back({{"id", id}, {"text", text_of(id)}, {"logprob", lp}});
      emit({{"event", "token"},
            {"prompt", p},
            {"index", e.index},
            {"id", e.token},
            {"text", text_of(e.token)},
            {"delta", data::utf8_sanitize(ts.push(e.token))},
            {"logprob", e.logprob},
            {"top", top}});
      return true;
    });
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const model::GeneratedSequence& seq = out.sequences[0][0];
    // The printed text: the same TextStream `shardlm generate` uses over the same tokens.
    model::TextStream whole(decode, cfg.stop_strings);
    for (int64_t id : seq.tokens) whole.push(id);
    whole.finish();
    emit({{"event", "done"},
          {"prompt", p},
          {"text", data::utf8_sanitize(whole.text())},
          {"tokens", seq.tokens},
          {"finish_reason", model::to_string(seq.finish)},
          {"seed", out.seed},
          {"prompt_tokens", ids.size()},
          {"seconds", secs},
          {"score", std::isfinite(seq.score) ? json(seq.score) : json()},
          {"config", cfg.to_json()}});
  }
}

}  // namespace shardlm::runtime
