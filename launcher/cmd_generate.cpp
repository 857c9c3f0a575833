// `shardlm generate`: continues prompts with a trained model (greedy, sampling or
// beam search; model::Generator) and streams the text to the terminal as tokens
// are produced, or prints JSON with token ids and log-probs. One process, no MPI.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "launcher/app.h"
#include "load/model_bundle.h"
#include "model/generate.h"
#include "core/error.h"

namespace shardlm::launcher {

namespace {

struct GenerateArgs {
  std::string model, tokenizer, device = "cpu";
  std::vector<std::string> prompts;
  model::GenerationConfig cfg;
  bool json = false, ignore_eos = false, no_cache = false, no_early_stopping = false;
  bool allow_special = false;
  int threads = 0;
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
  if (a.threads > 0) torch::set_num_threads(a.threads);
  load::LoadOptions lo;
  lo.device = load::parse_device(a.device);
  lo.tokenizer = a.tokenizer;
  const load::ModelBundle im = load::load_model(a.model, lo);
  const data::Tokenizer& tok = *im.tokenizer;
  const std::string& tok_path = im.tokenizer_path;

  model::GenerationConfig cfg = a.cfg;
  cfg.use_cache = !a.no_cache;
  cfg.early_stopping = !a.no_early_stopping;
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
  auto a = std::make_shared<GenerateArgs>();
  model::GenerationConfig& c = a->cfg;
  cmd->add_option("--model,-m", a->model,
                  "Model directory (model.safetensors + config.json) or a .safetensors file")
      ->required();
  cmd->add_option("--tokenizer,-t", a->tokenizer,
                  "Tokenizer file (default: tokenizer.json beside the model)");
  cmd->add_option("--prompt,-p", a->prompts, "Prompt text (repeat for a batch)")->required();
  cmd->add_option("--strategy,-s", c.strategy, "greedy, sample or beam")
      ->check(CLI::IsMember({"greedy", "sample", "beam"}))
      ->capture_default_str();
  cmd->add_option("--max-new-tokens", c.max_new_tokens, "Tokens to generate at most")
      ->capture_default_str();
  cmd->add_option("--temperature", c.temperature, "sample: logits / temperature (0 = greedy)")
      ->capture_default_str();
  cmd->add_option("--top-k", c.top_k, "sample: keep the k most probable tokens (0 = off)");
  cmd->add_option("--top-p", c.top_p, "sample: keep the smallest set with this mass (1 = off)");
  cmd->add_option("--min-p", c.min_p, "sample: keep tokens with p >= min_p * p_max (0 = off)");
  cmd->add_option("--repetition-penalty", c.repetition_penalty,
                  "Divide (or multiply, if negative) logits of tokens already seen (1 = off)");
  cmd->add_option("--frequency-penalty", c.frequency_penalty,
                  "Subtract this times the count of each generated token");
  cmd->add_option("--presence-penalty", c.presence_penalty,
                  "Subtract this from each token generated before");
  cmd->add_option("--beams", c.num_beams, "beam: beam width")->capture_default_str();
  cmd->add_option("--length-penalty", c.length_penalty, "beam: score = sum log p / length^this")
      ->capture_default_str();
  cmd->add_flag("--no-early-stopping", a->no_early_stopping,
                "beam: search on while a running beam could still win");
  cmd->add_option("--num-return-sequences,-n", c.num_return_sequences,
                  "Samples per prompt (sample) or n best (beam)");
  cmd->add_option("--seed", c.seed, "Seed for sampling (default: random, printed)");
  cmd->add_option("--stop", c.stop_strings, "Stop when the output contains this (repeatable)");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Do not stop at the tokenizer's EOS token");
  cmd->add_flag("--allow-special", a->allow_special, "Special tokens in prompts are tokens");
  cmd->add_flag("--no-cache", a->no_cache, "Recompute the whole sequence each step (slow)");
  cmd->add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--threads", a->threads, "CPU threads (0 = LibTorch's default)");
  cmd->add_flag("--json", a->json, "One JSON object: ids, log-probs, text, scores");
  cmd->callback([a, &run] { run = [a] { return run_generate(*a); }; });
}

}  // namespace shardlm::launcher
