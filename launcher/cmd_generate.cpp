// `shardlm generate`: continues prompts with a trained model (greedy, sampling or
// beam search; model::Generator) and streams the text to the terminal as tokens
// are produced, or prints JSON with token ids and log-probs. One process, no MPI.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "launcher/app.h"
#include "launcher/section_flags.h"
#include "load/model_bundle.h"
#include "model/generate.h"
#include "core/config.h"
#include "core/error.h"

namespace shardlm::launcher {

namespace {

// The [generate] section: the model, the prompts and how to run, beside the
// decoding keys of model::GenerationConfig (docs/generation.md).
struct GenerateArgs {
  std::string model, tokenizer, device = "cpu";
  std::vector<std::string> prompts;
  model::GenerationConfig cfg;
  bool json = false, ignore_eos = false, allow_special = false;
  int64_t threads = 0;

  static GenerateArgs from(const core::RunConfig& rc) {
    const core::ConfigSection s = rc.section("generate");
    GenerateArgs a;
    a.model = s.require<std::string>("model");
    a.prompts = s.require<std::vector<std::string>>("prompts");
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

void write_out(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// The printable text of a sequence: a stop string and what follows are cut off.
std::string text_of(const model::DecodeFn& decode, const std::vector<std::string>& stops,
                    const std::vector<int64_t>& ids) {
  model::TextStream ts(decode, stops);
  for (int64_t id : ids) ts.push(id);
  ts.finish();
  return ts.text();
}

int run_generate(const GenerateArgs& a) {
  if (a.threads > 0) torch::set_num_threads(static_cast<int>(a.threads));
  load::LoadOptions lo;
  lo.device = load::parse_device(a.device);
  lo.tokenizer = a.tokenizer;
  lo.need_tokenizer = true;
  const load::ModelBundle im = load::load_model(a.model, lo);
  const data::Tokenizer& tok = *im.tokenizer;
  const std::string& tok_path = im.tokenizer_path;

  model::GenerationConfig cfg = a.cfg;
  if (!a.ignore_eos && tok.eos_id()) cfg.eos_ids.push_back(*tok.eos_id());
  if (tok.pad_id()) cfg.pad_id = *tok.pad_id();
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
  cmd->callback([f, &run] { run = [f] { return run_generate(GenerateArgs::from(f->load())); }; });
}

}  // namespace shardlm::launcher
