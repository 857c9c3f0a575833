// Metrics that need the model: per-token log-likelihood over a prepared split
// or raw text (perplexity, bits per byte), multiple-choice log-likelihoods
// (lm-evaluation-harness's acc / acc_norm), and two coherence proxies.
// docs/evaluation.md gives each formula and its limits.
//
// Everything runs in eval mode under no-grad, one device, fp32 unless a dtype is
// given; the model is not changed.
#pragma once

#include <torch/torch.h>

#include <string>

#include <nlohmann/json.hpp>
#include <vector>

#include "data/loader.h"
#include "data/tokenizer.h"
#include "model/gpt.h"

namespace shardlm::eval {

// ---- token statistics -----------------------------------------------------------------------

// Next-token accuracy by position in the context and calibration, summed over
// the scored tokens: the Evaluate tab's "by position" and "calibration" charts.
struct TokenDetail {
  // By the target's position in the model's input (0: predicted from one token).
  std::vector<double> tokens, top1, top5;
  // Calibration: kBins equal-width bins of the top-1 probability (the model's
  // confidence): tokens in each, the sum of their confidences and of top-1 hits.
  static constexpr int kBins = 10;
  std::vector<double> bin_count = std::vector<double>(kBins, 0.0);
  std::vector<double> bin_conf = std::vector<double>(kBins, 0.0);
  std::vector<double> bin_hit = std::vector<double>(kBins, 0.0);

  // logp (N, V) log-probabilities, targets (N) ids, positions (N) positions in
  // the input, mask (N) 1 = scored (may be undefined: all scored).
  void add(const torch::Tensor& logp, const torch::Tensor& targets, const torch::Tensor& positions,
           const torch::Tensor& mask = {});
  void merge(const TokenDetail& o);
  // {"by_position": {"tokens", "top1", "top5"} (accuracies, null where no token),
  //  "calibration": {"bins": [{"lo","hi","count","confidence","accuracy"}], "ece"}}
  nlohmann::json to_json() const;
};

// Per row of a batch: (B, 4) fp64 on the CPU holding [sum of -log p(target),
// top-1 hits, top-5 hits, targets] over the positions where loss_mask != 0.
// runtime::evaluate sums these over batches and ranks; eval's perplexity keeps
// rows. `detail` (may be null) also gets the batch's positions and calibration.
torch::Tensor token_stats(model::GPT& model, const data::Batch& batch, torch::Device device,
                          c10::ScalarType dtype = c10::kFloat,
                          const model::BlockRunner& runner = {}, TokenDetail* detail = nullptr);

// Per scored unit (a row of a split, a text): {nll (nats), tokens, bytes, top-1 hits, top-5 hits}.
// bytes is 0 when unknown (a split read without its tokenizer).
struct LmScores {
  enum Field { kNll = 0, kTokens, kBytes, kTop1, kTop5, kFields };
  std::vector<std::vector<double>> items;
  TokenDetail detail;
  double sum(Field f) const;
  double loss() const;           // nats per token
  double perplexity() const;     // exp(loss)
  double bits_per_byte() const;  // nll / ln 2 / bytes (0 when bytes unknown)
};

// One pass (or max_batches batches) over `cfg.path`'s split in stored order.
// `tok` (may be null) gives the byte length of every target for bits per byte
// (special tokens such as the EOS between documents count 0 bytes).
LmScores perplexity_split(model::GPT& model, data::LoaderConfig cfg, int64_t max_batches,
                          torch::Device device, const data::Tokenizer* tok);

struct SlidingWindow {
  int64_t window = 0;      // tokens per forward (0: context_length)
  int64_t stride = 0;      // new targets per window after the first (0: window / 2;
                           // larger values act as window - 1, so each window has context)
  bool prefix_eos = true;  // prepend the tokenizer's EOS so the first token is scored too
};
// Each text tokenised with `tok` and scored with a sliding window (Hugging Face's
// "Perplexity of fixed-length models"): the first window scores its w - 1
// targets, each later window ends `stride` tokens further and scores only its
// new targets, with the w - stride tokens before them as context. Every token is
// scored exactly once (also with stride = w, where HF's recipe drops one token
// per window); a text that fits one window scores as one forward pass.
LmScores perplexity_texts(model::GPT& model, const data::Tokenizer& tok,
                          const std::vector<std::string>& texts, const SlidingWindow& sw,
                          torch::Device device);

// ---- log-likelihood of continuations ----------------------------------------------------------

// sum log p(continuation | context) over the continuation's tokens. An empty
// context starts from EOS (ModelError when the tokenizer has none); when both do
// not fit in the context window the context is cut from the left. ModelError
// when the continuation is empty or alone longer than the window.
double continuation_logprob(model::GPT& model, std::vector<int64_t> context,
                            const std::vector<int64_t>& continuation, torch::Device device);

struct ChoiceItem {
  std::string context;
  std::vector<std::string> choices;
  int64_t answer = 0;  // index into choices
};
struct ChoiceScore {
  std::vector<double> loglik;  // per choice: log p(choice | context)
  int64_t pred = 0;            // argmax loglik (acc)
  int64_t pred_norm = 0;       // argmax loglik / bytes of the choice (acc_norm)
};
// lm-evaluation-harness's multiple choice: context and choice are tokenised
// apart (a trailing space of the context moves to the choice) and each choice is
// scored by its log-likelihood given the context.
std::vector<ChoiceScore> score_choices(model::GPT& model, const data::Tokenizer& tok,
                                       const std::vector<ChoiceItem>& items, torch::Device device);

// ---- coherence proxies ------------------------------------------------------------------------

// Mean cosine similarity of consecutive sentences' embeddings (each sentence fed
// alone; the embedding is the mean of its final hidden states). Returns NaN
// when the text has fewer than two sentences.
double embedding_coherence(model::GPT& model, const data::Tokenizer& tok, const std::string& text,
                           torch::Device device);
// Pointwise mutual information per token between prompt and continuation:
// (log p(c | prompt) - log p(c | EOS)) / tokens of c. > 0: the continuation is
// more likely after this prompt than out of context. NaN for an empty continuation.
double prompt_pmi(model::GPT& model, const data::Tokenizer& tok, const std::string& prompt,
                  const std::string& continuation, torch::Device device);

// The tokenizer's ids of `text` as int64.
std::vector<int64_t> encode_ids(const data::Tokenizer& tok, const std::string& text);

}  // namespace shardlm::eval
