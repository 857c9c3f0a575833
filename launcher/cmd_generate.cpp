// `shardlm generate`: continues prompts with a trained model (greedy, sampling or
// beam search; model::Generator) and streams the text to the terminal as tokens
// are produced, or prints JSON with token ids and log-probs. One process, no MPI.
// `--events --request JSON` is the dashboard's Generate tab behind the monitor:
// one JSON line per token with its alternatives (runtime/playground.h), from a
// model or, with --url, from a running `shardlm serve`.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/error.h"
#include "data/tokenizer.h"
#include "launcher/app.h"
#include "launcher/section_flags.h"
#include "load/model_bundle.h"
#include "model/generate.h"
#include "runtime/playground.h"

namespace shardlm::launcher {

namespace {

// The [generate] section: the model, the prompts and how to run, beside the
// decoding keys of model::GenerationConfig (docs/generation.md).
struct GenerateArgs {
  std::string model, tokenizer, device = "cpu", request, url;
  bool events = false;
  std::vector<std::string> prompts;
  model::GenerationConfig cfg;
  bool json = false, ignore_eos = false, allow_special = false;
  int64_t threads = 0;

  static GenerateArgs from(const core::RunConfig& rc) {
    const core::ConfigSection s = rc.section("generate");
    GenerateArgs a;
    // --events takes its prompts from --request, and its model may be a server (--url).
    a.events = s.get("events", a.events);
    a.request = s.get("request", a.request);
    a.url = s.get("url", a.url);
    if (a.events) {
      SHARDLM_CHECK(!a.request.empty(), core::ConfigError,
                    "generate.events needs generate.request (--request JSON)");
      a.model = s.get("model", a.model);
    } else {
      a.model = s.require<std::string>("model");
      a.prompts = s.require<std::vector<std::string>>("prompts");
    }
    a.tokenizer = s.get("tokenizer", a.tokenizer);
    a.device = s.get("device", a.device);
    a.threads = s.get("threads", a.threads);
    a.json = s.get("json", a.json);
    a.ignore_eos = s.get("ignore_eos", a.ignore_eos);
    a.allow_special = s.get("allow_special", a.allow_special);
    a.cfg = model::GenerationConfig::from(s);
    rc.check_unknown_keys();
    return a;
  }
};

// The model and its tokenizer, on the device and thread count asked for.
load::ModelBundle load_for(const GenerateArgs& a) {
  if (a.threads > 0) torch::set_num_threads(static_cast<int>(a.threads));
  load::LoadOptions lo;
  lo.device = load::parse_device(a.device);
  lo.tokenizer = a.tokenizer;
  lo.need_tokenizer = true;
  return load::load_model(a.model, lo);
}

// The printable text of a sequence: a stop string and what follows are cut off.
std::string text_of(const model::DecodeFn& decode, const std::vector<std::string>& stops,
                    const std::vector<int64_t>& ids) {
  model::TextStream ts(decode, stops);
  for (int64_t id : ids) ts.push(id);
  ts.finish();
  return ts.text();
}

// ---- --events: the monitor's generation process -----------------------------------------

void emit_line(const nlohmann::json& j) {
  write_out(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

// A running `shardlm serve` (http://HOST:PORT[/PREFIX]) continues each prompt;
// its Server-Sent Events become token events as they arrive (text only: the
// server reports no token ids or probabilities).
void events_from_server(const std::string& url, const runtime::PlaygroundRequest& r) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  namespace net = boost::asio;
  SHARDLM_CHECK(url.rfind("http://", 0) == 0, core::ConfigError,
                "--url {}: expected http://HOST:PORT (https is not supported)", url);
  std::string rest = url.substr(7), prefix;
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    prefix = rest.substr(slash);
    rest.resize(slash);
  }
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  const auto colon = rest.rfind(':');
  const std::string host = colon == std::string::npos ? rest : rest.substr(0, colon);
  const std::string port = colon == std::string::npos ? "80" : rest.substr(colon + 1);
  const model::GenerationConfig& c = r.cfg;
  SHARDLM_CHECK(!c.beam(), core::ConfigError,
                "beam search is not available from a server (shardlm serve samples or is greedy)");
  for (size_t p = 0; p < r.prompts.size(); ++p) {
    nlohmann::json body = {{"prompt", r.prompts[p]},
                           {"max_tokens", c.max_new_tokens},
                           {"temperature", c.sampling() ? c.temperature : 0.0},
                           {"top_k", c.top_k},
                           {"top_p", c.top_p},
                           {"min_p", c.min_p},
                           {"repetition_penalty", c.repetition_penalty},
                           {"frequency_penalty", c.frequency_penalty},
                           {"presence_penalty", c.presence_penalty},
                           {"ignore_eos", r.ignore_eos},
                           {"stream", true}};
    if (c.seed >= 0) body["seed"] = c.seed;
    if (!c.stop_strings.empty()) body["stop"] = c.stop_strings;
    net::io_context ioc;
    beast::tcp_stream stream(ioc);
    net::ip::tcp::resolver resolver(ioc);
    stream.expires_after(std::chrono::seconds(300));
    stream.connect(resolver.resolve(host, port));
    http::request<http::string_body> req{http::verb::post, prefix + "/v1/completions", 11};
    req.set(http::field::host, rest);
    req.set(http::field::content_type, "application/json");
    req.keep_alive(false);
    req.body() = body.dump();
    req.prepare_payload();
    const auto t0 = std::chrono::steady_clock::now();
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read_header(stream, buf, parser);
    const int status = static_cast<int>(parser.get().result_int());
    std::string pending, text, finish = "length", error_body;
    int64_t index = 0;
    auto on_event = [&](const std::string& data) {
      if (data == "[DONE]") return;
      nlohmann::json j = nlohmann::json::parse(data, nullptr, false);
      if (!j.is_object() || !j.contains("choices") || j["choices"].empty()) return;
      const auto& ch = j["choices"][0];
      const std::string piece = ch.value("text", std::string());
      if (!piece.empty()) {
        text += piece;
        emit_line({{"event", "token"},
                   {"prompt", p},
                   {"index", index++},
                   {"text", piece},
                   {"delta", piece},
                   {"logprob", nullptr},
                   {"top", nlohmann::json::array()}});
      }
      if (ch.contains("finish_reason") && ch["finish_reason"].is_string())
        finish = ch["finish_reason"].get<std::string>();
    };
    auto on_chunk = [&](std::uint64_t, beast::string_view d, beast::error_code& ec) {
      if (status != 200) {
        error_body.append(d.data(), d.size());
      } else {
        pending.append(d.data(), d.size());
        size_t end;
        while ((end = pending.find("\n\n")) != std::string::npos) {
          std::string ev = pending.substr(0, end);
          pending.erase(0, end + 2);
          if (ev.rfind("data: ", 0) == 0) on_event(ev.substr(6));
        }
      }
      ec = {};
      return d.size();
    };
    parser.on_chunk_body(on_chunk);  // Beast keeps a reference: on_chunk outlives the reads
    beast::error_code ec;
    http::read(stream, buf, parser, ec);
    if (ec && ec != http::error::end_of_stream) throw beast::system_error(ec);
    if (status != 200) {
      if (error_body.empty()) error_body = parser.get().body();
      nlohmann::json e = nlohmann::json::parse(error_body, nullptr, false);
      const std::string why = e.is_object() && e.contains("error")
                                  ? e["error"].value("message", error_body)
                                  : error_body;
      SHARDLM_FAIL(core::Error, "{} answered {}: {}", url, status, why);
    }
    emit_line(
        {{"event", "done"},
         {"prompt", p},
         {"text", text},
         {"tokens", nlohmann::json::array()},
         {"finish_reason", finish},
         {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
         {"config", c.to_json()}});
  }
}

int run_events(const GenerateArgs& a) {
  try {
    const nlohmann::json args = nlohmann::json::parse(a.request, nullptr, false);
    SHARDLM_CHECK(!args.is_discarded(), core::ConfigError, "--request is not valid JSON");
    const runtime::PlaygroundRequest r = runtime::parse_playground_request(args);
    if (!a.url.empty()) {
      events_from_server(a.url, r);
    } else {
      SHARDLM_CHECK(!a.model.empty(), core::ConfigError, "--events needs --model or --url");
      const load::ModelBundle im = load_for(a);
      const data::Tokenizer& tok = *im.tokenizer;
      runtime::run_playground(r, im.model, tok, emit_line);
    }
    emit_line({{"event", "end"}});
    return 0;
  } catch (const std::exception& e) {
    emit_line({{"event", "error"}, {"message", e.what()}});
    throw;
  }
}

int run_generate(const GenerateArgs& a) {
  if (a.events) return run_events(a);
  const load::ModelBundle im = load_for(a);
  const data::Tokenizer& tok = *im.tokenizer;
  const std::string& tok_path = im.tokenizer_path;

  model::GenerationConfig cfg = a.cfg;
  runtime::configure_for(cfg, tok, a.ignore_eos);
  model::DecodeFn decode = [&tok](const std::vector<int64_t>& ids) {
    return tok.decode_model_ids(ids);  // ids past the tokenizer's vocabulary have no text
  };
  model::Generator gen(im.model, cfg);  // validates cfg: ConfigError names the field
  gen.set_decoder(decode);

  std::vector<std::vector<int64_t>> prompts;
  for (const auto& p : a.prompts) {
    auto ids = tok.encode(p, a.allow_special);
    if (ids.empty() && tok.bos_id()) ids.push_back(*tok.bos_id());  // "" starts from BOS
    prompts.emplace_back(ids.begin(), ids.end());
  }

  // One prompt and one sequence stream token by token; otherwise each sequence is
  // printed when all are done.
  const bool stream = !a.json && prompts.size() == 1 && cfg.num_return_sequences == 1;
  std::unique_ptr<model::TextStream> ts;
  model::TokenCallback on_token;
  if (stream) {
    write_out(a.prompts[0]);
    ts = std::make_unique<model::TextStream>(decode, cfg.stop_strings);
    on_token = [&ts](const model::TokenEvent& e) {
      write_out(ts->push(e.token));
      return true;
    };
  }
  const auto t0 = std::chrono::steady_clock::now();
  model::GenerationOutput out = gen.generate(prompts, on_token);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (stream) {
    write_out(ts->finish() + "\n");
  } else if (!a.json) {
    for (size_t p = 0; p < out.sequences.size(); ++p)
      for (size_t s = 0; s < out.sequences[p].size(); ++s) {
        const auto& seq = out.sequences[p][s];
        write_out(fmt::format("--- prompt {}, sequence {} (score {:.4f}, {})\n{}{}\n", p, s,
                              seq.score, model::to_string(seq.finish), a.prompts[p],
                              text_of(decode, cfg.stop_strings, seq.tokens)));
      }
  } else {
    nlohmann::json results = nlohmann::json::array();
    for (size_t p = 0; p < out.sequences.size(); ++p) {
      nlohmann::json seqs = nlohmann::json::array();
      for (const auto& seq : out.sequences[p])
        seqs.push_back({{"ids", seq.tokens},
                        {"logprobs", seq.logprobs},
                        {"text", text_of(decode, cfg.stop_strings, seq.tokens)},
                        {"score", seq.score},
                        {"finish_reason", model::to_string(seq.finish)},
                        {"stop", seq.stop}});
      results.push_back(
          {{"prompt", a.prompts[p]}, {"prompt_ids", prompts[p]}, {"sequences", seqs}});
    }
    nlohmann::json j{{"model", im.source}, {"tokenizer", tok_path},
                     {"seed", out.seed},   {"config", cfg.to_json()},
                     {"results", results}, {"new_tokens", out.new_tokens},
                     {"seconds", secs}};
    // Text may hold invalid UTF-8 (a token cut mid-character): replaced with U+FFFD.
    write_out(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  }
  std::string seed = cfg.sampling() ? fmt::format(", seed {}", out.seed) : "";
  std::fprintf(stderr, "[shardlm] %lld tokens in %.2f s (%.1f tokens/s)%s\n",
               static_cast<long long>(out.new_tokens), secs,
               secs > 0 ? static_cast<double>(out.new_tokens) / secs : 0.0, seed.c_str());
  return 0;
}

}  // namespace

void register_generate(CLI::App& app, Context&, Command& run) {
  auto* cmd = app.add_subcommand("generate", "Continue prompts with a trained model");
  auto f = std::make_shared<SectionFlags>(cmd, "generate");
  using Str = std::string;
  using Strs = std::vector<std::string>;
  f->alias<Str>("--model,-m", "model",
                "Model directory, .safetensors file or training checkpoint (required)");
  f->alias<Str>("--tokenizer,-t", "tokenizer",
                "Tokenizer file (default: tokenizer.json beside the model)");
  f->alias<Strs>("--prompt,-p", "prompts", "Prompt text (repeat for a batch; required)");
  f->alias<Str>("--strategy,-s", "strategy", "greedy, sample or beam");
  f->alias<int64_t>("--max-new-tokens", "max_new_tokens", "Tokens to generate at most");
  f->alias<double>("--temperature", "temperature", "sample: logits / temperature (0 = greedy)");
  f->alias<int64_t>("--top-k", "top_k", "sample: keep the k most probable tokens (0 = off)");
  f->alias<double>("--top-p", "top_p", "sample: keep the smallest set with this mass (1 = off)");
  f->alias<double>("--min-p", "min_p", "sample: keep tokens with p >= min_p * p_max (0 = off)");
  f->alias<double>("--repetition-penalty", "repetition_penalty",
                   "Divide (or multiply, if negative) logits of tokens already seen (1 = off)");
  f->alias<double>("--frequency-penalty", "frequency_penalty",
                   "Subtract this times the count of each generated token");
  f->alias<double>("--presence-penalty", "presence_penalty",
                   "Subtract this from each token generated before");
  f->alias<int64_t>("--beams", "num_beams", "beam: beam width");
  f->alias<double>("--length-penalty", "length_penalty", "beam: score = sum log p / length^this");
  f->alias_flag("--no-early-stopping", "early_stopping", false,
                "beam: search on while a running beam could still win");
  f->alias<int64_t>("--num-return-sequences,-n", "num_return_sequences",
                    "Samples per prompt (sample) or n best (beam)");
  f->alias<int64_t>("--seed", "seed", "Seed for sampling (default: random, printed)");
  f->alias<Strs>("--stop", "stop", "Stop when the output contains this (repeatable)");
  f->alias_flag("--ignore-eos", "ignore_eos", true, "Do not stop at the tokenizer's EOS token");
  f->alias_flag("--allow-special", "allow_special", true, "Special tokens in prompts are tokens");
  f->alias_flag("--no-cache", "use_cache", false, "Recompute the whole sequence each step (slow)");
  f->alias<Str>("--device", "device", "cpu, cuda or cuda:N (default cpu)");
  f->alias<int64_t>("--threads", "threads", "CPU threads (0 = LibTorch's default)");
  f->alias_flag("--json", "json", true, "One JSON object: ids, log-probs, text, scores");
  f->alias_flag("--events", "events", true,
                "JSON lines: one per token with its top alternatives, one per prompt at its end "
                "(the monitor's Generate tab; needs --request)");
  f->alias<Str>("--request", "request",
                "With --events: {\"prompt\"|\"prompts\", \"options\": {decoding options}, "
                "\"top\": 5}");
  f->alias<Str>(
      "--url", "url",
      "With --events: continue the prompts on a running `shardlm serve` (http://HOST:PORT)");
  cmd->callback([f, &run] { run = [f] { return run_generate(GenerateArgs::from(f->load())); }; });
}

}  // namespace shardlm::launcher
