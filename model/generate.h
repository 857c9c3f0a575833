// Text generation over a GPT: greedy decoding, sampling (temperature, top-k,
// top-p, min-p) and beam search, with repetition / frequency / presence
// penalties, EOS, stop sequences and stop strings, batches of prompts of
// different lengths, a streaming callback and a seed of its own.
//
// Every step feeds only the newest token of each row through the model: keys
// and values of earlier positions come from a KVCache (model/gpt.h). Prompts of
// different lengths are left-padded into one batch; the cache's key mask and
// per-row positions make each row decode exactly as it would alone. Rows that
// finish are dropped from the batch (and the cache) at once.
//
//   Generator gen(model, cfg);                      // cfg: GenerationConfig
//   gen.set_decoder(decode_bytes);                  // only for stop strings
//   GenerationOutput out = gen.generate({{15496, 995}, {40}}, on_token);
//   out.sequences[0][0].tokens                      // the new ids of prompt 0
//
// docs/generation.md explains the strategies and when to use each.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "model/generation_config.h"
#include "model/gpt.h"
#include "model/stopping.h"

namespace shardlm::model {

// ---- results -------------------------------------------------------------------------------

// The most probable tokens at one position under the model itself (temperature
// 1, no penalties or truncation), most probable first: (id, log p).
using Alternatives = std::vector<std::pair<int64_t, double>>;

struct GeneratedSequence {
  std::vector<int64_t> tokens;    // new tokens only (an EOS or stop token that ended it included)
  std::vector<double> logprobs;   // log p(token) under the model itself: temperature 1, no
                                  // penalties or truncation (one per token)
  std::vector<Alternatives> top;  // per token, with set_alternatives(k > 0); else empty
  // greedy / sample: sum of logprobs. beam: the beam score, sum of log p under the
  // penalised distribution / length^length_penalty (what the search ranks by).
  double score = 0;
  FinishReason finish = FinishReason::kNone;
  std::string stop;  // what stopped it: the EOS id, stop ids or stop string
};

struct GenerationOutput {
  // Per prompt, in prompt order: num_return_sequences sequences (beam: best first).
  std::vector<std::vector<GeneratedSequence>> sequences;
  int64_t seed = 0;           // the seed sampling drew from (replay it with cfg.seed)
  int64_t forward_calls = 0;  // model forwards (prefill included)
  int64_t new_tokens = 0;     // tokens produced over all rows (beam: by every beam)
};

// One produced token. greedy / sample: called as soon as it is chosen. beam:
// called for the best hypothesis of each prompt once the search has ended (beam
// tokens are not final before). Return false to end that row (kCallback).
struct TokenEvent {
  int64_t prompt = 0;    // index of the prompt
  int64_t sequence = 0;  // which of num_return_sequences
  int64_t index = 0;     // position among the new tokens (0 = first)
  int64_t token = 0;
  double logprob = 0;
  Alternatives top;  // with set_alternatives(k > 0): the k most probable tokens here
};
using TokenCallback = std::function<bool(const TokenEvent&)>;

// ---- logits processing (building blocks, used by Generator; public for tests) --------------

// Penalties on logits (R, V) fp32 in place: `seen` (R, V) bool marks tokens in the
// prompt or output (repetition_penalty: logit / r where > 0, logit * r where < 0),
// `counts` (R, V) fp32 counts generated tokens (logit -= frequency * count +
// presence * (count > 0)). Either may be undefined when its penalty is off.
void apply_penalties(torch::Tensor& logits, const torch::Tensor& seen, const torch::Tensor& counts,
                     const GenerationConfig& cfg);
// Sampling transforms of logits (R, V): temperature, then top-k, top-p and min-p
// (removed tokens get -inf; the most probable token always survives). Returns new logits.
torch::Tensor warp_logits(const torch::Tensor& logits, const GenerationConfig& cfg);
// One token per row of logits (R, V): argmax for greedy (or temperature 0), else a
// draw from softmax(warp_logits(logits)) with `rng`. Returns (R) int64.
torch::Tensor choose_tokens(const torch::Tensor& logits, const GenerationConfig& cfg,
                            at::Generator& rng);
// A torch generator on `device` (same algorithm as the default one) seeded with `seed`.
at::Generator make_rng(torch::Device device, uint64_t seed);

// ---- the generator --------------------------------------------------------------------------

class Generator {
 public:
  // Validates cfg (ConfigError). The model is switched to eval mode.
  explicit Generator(GPT model, GenerationConfig cfg = {});

  // The bytes of token ids, needed by stop strings (data::Tokenizer::decode_bytes).
  void set_decoder(DecodeFn decode) { decode_ = std::move(decode); }
  // Report, for every produced token, the k most probable tokens at its position
  // (TokenEvent::top, GeneratedSequence::top); 0 (the default) reports none.
  void set_alternatives(int64_t k) { alternatives_ = std::max<int64_t>(0, k); }
  void set_config(const GenerationConfig& cfg);
  const GenerationConfig& config() const { return cfg_; }
  GPT& model() { return model_; }

  // Continues each prompt (token ids, non-empty, of any lengths). Throws ModelError
  // for an empty prompt, ids outside the vocabulary, or (learned positions) a
  // prompt that leaves no room under context_length. With learned positions a
  // row also ends (kLength) at context_length tokens.
  GenerationOutput generate(const std::vector<std::vector<int64_t>>& prompts,
                            const TokenCallback& on_token = {});

 private:
  GenerationOutput run_decode(const std::vector<std::vector<int64_t>>& prompts,
                              const TokenCallback& on_token, int64_t seed);
  GenerationOutput run_beam(const std::vector<std::vector<int64_t>>& prompts,
                            const TokenCallback& on_token);

  GPT model_;
  GenerationConfig cfg_;
  DecodeFn decode_;
  int64_t alternatives_ = 0;
};

// Loading a model with its tokenizer, from any format: load::load_model
// (load/model_bundle.h).

}  // namespace shardlm::model
