// Model-based metrics: token statistics, perplexity, choice log-likelihoods,
// coherence proxies (see lm_metrics.h).
#include "eval/lm_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "eval/text_metrics.h"

namespace shardlm::eval {

namespace {

// Eval mode for one scope; the previous mode is restored.
class EvalMode {
 public:
  explicit EvalMode(model::GPT& m) : m_(m), was_training_(m->is_training()) { m_->eval(); }
  ~EvalMode() {
    if (was_training_) m_->train();
  }

 private:
  model::GPT& m_;
  bool was_training_;
};

int64_t context_of(model::GPT& model) {
  return model->config().context_length;
}

}  // namespace

std::vector<int64_t> encode_ids(const data::Tokenizer& tok, const std::string& text) {
  const auto v = tok.encode(text);
  return std::vector<int64_t>(v.begin(), v.end());
}

// ---- token statistics -----------------------------------------------------------------------

void TokenDetail::add(const torch::Tensor& logp, const torch::Tensor& targets,
                      const torch::Tensor& positions, const torch::Tensor& mask) {
  // logp (N, V), targets (N), positions (N), mask (N)
  auto safe = targets.clamp_min(0);
  auto best5 = std::get<1>(logp.topk(std::min<int64_t>(5, logp.size(-1)), -1));  // (N, 5)
  auto hit1 = (best5.select(-1, 0) == safe).to(torch::kDouble).cpu().contiguous();
  auto hit5 = (best5 == safe.unsqueeze(-1)).any(-1).to(torch::kDouble).cpu().contiguous();
  auto conf = std::get<0>(logp.max(-1)).exp().to(torch::kDouble).cpu().contiguous();
  auto pos = positions.to(torch::kCPU, torch::kLong).contiguous();
  auto m = mask.defined() ? mask.to(torch::kCPU, torch::kDouble).contiguous()
                          : torch::ones({targets.size(0)}, torch::kDouble);
  const double* h1 = hit1.data_ptr<double>();
  const double* h5 = hit5.data_ptr<double>();
  const double* c = conf.data_ptr<double>();
  const int64_t* ps = pos.data_ptr<int64_t>();
  const double* mk = m.data_ptr<double>();
  for (int64_t i = 0; i < targets.size(0); ++i) {
    if (mk[i] == 0) continue;
    const auto at = static_cast<size_t>(std::max<int64_t>(0, ps[i]));
    if (at >= tokens.size()) {
      tokens.resize(at + 1, 0.0);
      top1.resize(at + 1, 0.0);
      top5.resize(at + 1, 0.0);
    }
    tokens[at] += 1;
    top1[at] += h1[i];
    top5[at] += h5[i];
    const int bin = std::clamp(static_cast<int>(c[i] * kBins), 0, kBins - 1);
    bin_count[bin] += 1;
    bin_conf[bin] += c[i];
    bin_hit[bin] += h1[i];
  }
}

void TokenDetail::merge(const TokenDetail& o) {
  if (o.tokens.size() > tokens.size()) {
    tokens.resize(o.tokens.size(), 0.0);
    top1.resize(o.tokens.size(), 0.0);
    top5.resize(o.tokens.size(), 0.0);
  }
  for (size_t i = 0; i < o.tokens.size(); ++i) {
    tokens[i] += o.tokens[i];
    top1[i] += o.top1[i];
    top5[i] += o.top5[i];
  }
  for (int b = 0; b < kBins; ++b) {
    bin_count[b] += o.bin_count[b];
    bin_conf[b] += o.bin_conf[b];
    bin_hit[b] += o.bin_hit[b];
  }
}

nlohmann::json TokenDetail::to_json() const {
  auto ratio = [](double a, double n) { return n > 0 ? nlohmann::json(a / n) : nlohmann::json(); };
  nlohmann::json t1 = nlohmann::json::array(), t5 = nlohmann::json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    t1.push_back(ratio(top1[i], tokens[i]));
    t5.push_back(ratio(top5[i], tokens[i]));
  }
  nlohmann::json bins = nlohmann::json::array();
  double total = 0, ece = 0;
  for (int b = 0; b < kBins; ++b) total += bin_count[b];
  for (int b = 0; b < kBins; ++b) {
    bins.push_back({{"lo", static_cast<double>(b) / kBins},
                    {"hi", static_cast<double>(b + 1) / kBins},
                    {"count", bin_count[b]},
                    {"confidence", ratio(bin_conf[b], bin_count[b])},
                    {"accuracy", ratio(bin_hit[b], bin_count[b])}});
    if (bin_count[b] > 0 && total > 0)
      ece +=
          bin_count[b] / total * std::abs(bin_hit[b] / bin_count[b] - bin_conf[b] / bin_count[b]);
  }
  return {{"by_position", {{"tokens", tokens}, {"top1", t1}, {"top5", t5}}},
          {"calibration",
           {{"bins", bins}, {"ece", total > 0 ? nlohmann::json(ece) : nlohmann::json()}}}};
}

torch::Tensor token_stats(model::GPT& model, const data::Batch& b, torch::Device device,
                          c10::ScalarType dtype, const model::BlockRunner& runner,
                          TokenDetail* detail) {
  torch::NoGradGuard no_grad;
  auto ids = b.input_ids.to(device);
  auto targets = b.targets.to(device);  // (B, L), kIgnoreIndex at padding
  auto mask = b.loss_mask.to(device);   // (B, L) float
  model::ForwardOptions opts;
  opts.block_runner = runner;
  if (b.attention_mask.defined() && !b.attention_mask.all().item<bool>())
    opts.attention_mask = b.attention_mask.to(device);
  torch::Tensor logits;
  {
    model::AutocastGuard ac(device.type(), dtype, dtype != c10::kFloat);
    logits = model->forward(ids, opts);  // (B, L, V)
  }
  auto lp = model::log_probs(logits);  // (B, L, V) fp32
  auto safe = targets.clamp_min(0);
  auto nll = -lp.gather(-1, safe.unsqueeze(-1)).squeeze(-1);                // (B, L)
  auto top5 = std::get<1>(lp.topk(std::min<int64_t>(5, lp.size(-1)), -1));  // (B, L, 5)
  auto hit1 = (top5.select(-1, 0) == safe).to(torch::kFloat32);
  auto hit5 = (top5 == safe.unsqueeze(-1)).any(-1).to(torch::kFloat32);
  if (detail) {
    const int64_t B = lp.size(0), L = lp.size(1);
    auto pos = torch::arange(L, torch::kLong).unsqueeze(0).expand({B, L}).reshape({-1});
    detail->add(lp.reshape({B * L, -1}), targets.reshape({-1}), pos, mask.reshape({-1}));
  }
  return torch::stack(
             {(nll * mask).sum(1), (hit1 * mask).sum(1), (hit5 * mask).sum(1), mask.sum(1)},
             1)
      .to(torch::kCPU)
      .to(torch::kFloat64);  // (B, 4)
}

// ---- perplexity -----------------------------------------------------------------------------

double LmScores::sum(Field f) const {
  double s = 0;
  for (const auto& it : items) s += it[f];
  return s;
}
double LmScores::loss() const {
  const double t = sum(kTokens);
  return t > 0 ? sum(kNll) / t : 0.0;
}
double LmScores::perplexity() const {
  return std::exp(loss());
}
double LmScores::bits_per_byte() const {
  const double b = sum(kBytes);
  return b > 0 ? sum(kNll) / std::log(2.0) / b : 0.0;
}

LmScores perplexity_split(model::GPT& model, data::LoaderConfig cfg, int64_t max_batches,
                          torch::Device device, const data::Tokenizer* tok) {
  EvalMode em(model);
  torch::NoGradGuard no_grad;
  cfg.mode = "packed";
  cfg.shuffle = false;
  cfg.last_batch = "pad";
  if (cfg.seq_len <= 0) cfg.seq_len = context_of(model);
  cfg.validate();
  data::Loader loader(cfg, 0, 1);
  SHARDLM_CHECK(loader.manifest().vocab_size <= static_cast<uint64_t>(model->config().vocab_size),
                core::DataError,
                "{}: prepared with a {}-token vocabulary but the model has {} (another tokenizer)",
                loader.manifest().path(), loader.manifest().vocab_size, model->config().vocab_size);
  // Bytes of text per token id, for bits per byte: special tokens (EOS between
  // documents) and ids without a token stand for no text.
  std::vector<double> token_bytes;
  if (tok) {
    token_bytes.assign(tok->vocab_size(), 0.0);
    for (size_t id = 0; id < tok->vocab_size(); ++id)
      if (tok->is_token(static_cast<uint32_t>(id)))
        token_bytes[id] = static_cast<double>(tok->token_bytes(static_cast<uint32_t>(id)).size());
    for (const auto& sp : tok->special_tokens())
      if (sp.id < token_bytes.size()) token_bytes[sp.id] = 0;
  }
  int64_t steps = loader.steps_per_epoch();
  if (max_batches > 0) steps = std::min(steps, max_batches);
  LmScores out;
  for (int64_t s = 0; s < steps; ++s) {
    data::Batch b = loader.next();
    auto st = token_stats(model, b, device, c10::kFloat, {}, &out.detail).contiguous();  // (B, 4)
    auto acc = st.accessor<double, 2>();
    auto targets = b.targets.contiguous();
    for (int64_t r = 0; r < st.size(0); ++r) {
      if (acc[r][3] == 0) continue;  // a fill row
      double bytes = 0;
      if (!token_bytes.empty()) {
        const int64_t* t = targets[r].data_ptr<int64_t>();
        for (int64_t j = 0; j < targets.size(1); ++j)
          if (t[j] >= 0 && static_cast<size_t>(t[j]) < token_bytes.size())
            bytes += token_bytes[t[j]];
      }
      out.items.push_back({acc[r][0], acc[r][3], bytes, acc[r][1], acc[r][2]});
    }
  }
  return out;
}

LmScores perplexity_texts(model::GPT& model, const data::Tokenizer& tok,
                          const std::vector<std::string>& texts, const SlidingWindow& sw,
                          torch::Device device) {
  EvalMode em(model);
  torch::NoGradGuard no_grad;
  const int64_t w = sw.window > 0 ? sw.window : context_of(model);
  const int64_t stride = sw.stride > 0 ? sw.stride : std::max<int64_t>(1, w / 2);
  SHARDLM_CHECK(w >= 2, core::ConfigError, "sliding window of {} tokens: need at least 2", w);
  SHARDLM_CHECK(w <= context_of(model) || model->config().positional != "learned",
                core::ConfigError, "window {} exceeds the model's context_length {}", w,
                context_of(model));
  LmScores out;
  for (const auto& text : texts) {
    std::vector<int64_t> ids;
    if (sw.prefix_eos) {
      SHARDLM_CHECK(tok.eos_id().has_value(), core::ModelError,
                    "prefix_eos: the tokenizer has no EOS token (set prefix_eos = false)");
      ids.push_back(*tok.eos_id());
    }
    const auto body = encode_ids(tok, text);
    ids.insert(ids.end(), body.begin(), body.end());
    const int64_t L = static_cast<int64_t>(ids.size());
    std::vector<double> item(LmScores::kFields, 0.0);
    item[LmScores::kBytes] = static_cast<double>(text.size());
    const auto all = torch::tensor(ids, torch::kLong);
    // Windows [end - w, end): the first ends at w, each next one `step` tokens
    // later and scores the targets [prev_end, end). step <= w - 1 keeps at least
    // one token of context before the first new target.
    const int64_t step = std::min(stride, w - 1);
    int64_t prev_end = 1;  // the first target not scored yet
    int64_t end = std::min(w, L);
    while (L >= 2) {
      const int64_t begin = std::max<int64_t>(0, end - w);
      auto x = all.slice(0, begin, end - 1).unsqueeze(0).to(device);  // (1, n)
      auto lp = model::log_probs(model->forward(x)).squeeze(0);       // (n, V)
      // logits at index i predict position begin + i + 1
      auto rows = lp.slice(0, prev_end - begin - 1, end - begin - 1);  // (k, V)
      auto tgt = all.slice(0, prev_end, end).to(device);               // (k)
      auto nll = -rows.gather(1, tgt.unsqueeze(1)).squeeze(1);
      auto top5 = std::get<1>(rows.topk(std::min<int64_t>(5, rows.size(1)), 1));
      // position in the window of each scored target (predicted from that many tokens, minus 1)
      out.detail.add(rows, tgt, torch::arange(prev_end - begin - 1, end - begin - 1, torch::kLong));
      item[LmScores::kNll] += nll.sum().item<double>();
      item[LmScores::kTokens] += static_cast<double>(end - prev_end);
      item[LmScores::kTop1] += (top5.select(1, 0) == tgt).sum().item<double>();
      item[LmScores::kTop5] += (top5 == tgt.unsqueeze(1)).any(1).sum().item<double>();
      prev_end = end;
      if (end == L) break;
      end = std::min(end + step, L);
    }
    out.items.push_back(std::move(item));
  }
  return out;
}

// ---- log-likelihood of continuations ----------------------------------------------------------

double continuation_logprob(model::GPT& model, std::vector<int64_t> context,
                            const std::vector<int64_t>& continuation, torch::Device device) {
  SHARDLM_CHECK(!continuation.empty(), core::ModelError, "an empty continuation has no tokens");
  SHARDLM_CHECK(!context.empty(), core::ModelError,
                "an empty context: start it with the EOS token");
  EvalMode em(model);
  torch::NoGradGuard no_grad;
  const int64_t T = context_of(model);
  const int64_t n = static_cast<int64_t>(continuation.size());
  SHARDLM_CHECK(n < T, core::ModelError,
                "a continuation of {} tokens does not fit the context window of {}", n, T);
  // Only the last T + 1 tokens matter (the first of them is context only).
  const int64_t keep = std::min<int64_t>(static_cast<int64_t>(context.size()), T + 1 - n);
  context.erase(context.begin(), context.end() - keep);
  std::vector<int64_t> ids = context;
  ids.insert(ids.end(), continuation.begin(), continuation.end());
  auto all = torch::tensor(ids, torch::kLong);
  const int64_t L = all.size(0);
  auto x = all.slice(0, 0, L - 1).unsqueeze(0).to(device);   // (1, L-1)
  auto lp = model::log_probs(model->forward(x)).squeeze(0);  // (L-1, V)
  auto rows = lp.slice(0, L - 1 - n, L - 1);                 // predict the continuation
  auto tgt = all.slice(0, L - n, L).to(device);
  return rows.gather(1, tgt.unsqueeze(1)).sum().item<double>();
}

std::vector<ChoiceScore> score_choices(model::GPT& model, const data::Tokenizer& tok,
                                       const std::vector<ChoiceItem>& items, torch::Device device) {
  std::vector<ChoiceScore> out;
  for (const auto& it : items) {
    std::string ctx = it.context;
    std::string lead;  // trailing spaces of the context belong to the continuation
    while (!ctx.empty() && ctx.back() == ' ') {
      lead += ' ';
      ctx.pop_back();
    }
    std::vector<int64_t> cids;
    if (tok.eos_id() && ctx.empty()) cids.push_back(*tok.eos_id());
    const auto body = encode_ids(tok, ctx);
    cids.insert(cids.end(), body.begin(), body.end());
    SHARDLM_CHECK(!cids.empty(), core::ModelError,
                  "an empty context and a tokenizer without EOS: nothing to condition on");
    ChoiceScore s;
    double best = -std::numeric_limits<double>::infinity(), best_norm = best;
    for (size_t c = 0; c < it.choices.size(); ++c) {
      const std::string cont = lead + it.choices[c];
      const double ll = continuation_logprob(model, cids, encode_ids(tok, cont), device);
      s.loglik.push_back(ll);
      const double norm = ll / std::max<double>(1.0, static_cast<double>(cont.size()));
      if (ll > best) best = ll, s.pred = static_cast<int64_t>(c);
      if (norm > best_norm) best_norm = norm, s.pred_norm = static_cast<int64_t>(c);
    }
    out.push_back(std::move(s));
  }
  return out;
}

// ---- coherence proxies ------------------------------------------------------------------------

double embedding_coherence(model::GPT& model, const data::Tokenizer& tok, const std::string& text,
                           torch::Device device) {
  const auto sentences = split_sentences(text);
  if (sentences.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  EvalMode em(model);
  torch::NoGradGuard no_grad;
  const int64_t T = context_of(model);
  std::vector<torch::Tensor> emb;
  for (const auto& s : sentences) {
    auto ids = encode_ids(tok, s);
    if (ids.empty()) continue;
    if (static_cast<int64_t>(ids.size()) > T) ids.resize(T);
    auto x = torch::tensor(ids, torch::kLong).unsqueeze(0).to(device);
    emb.push_back(model->hidden(x).squeeze(0).mean(0).to(torch::kFloat32));  // (C)
  }
  if (emb.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  for (size_t i = 1; i < emb.size(); ++i)
    sum += torch::cosine_similarity(emb[i - 1], emb[i], 0).item<double>();
  return sum / static_cast<double>(emb.size() - 1);
}

double prompt_pmi(model::GPT& model, const data::Tokenizer& tok, const std::string& prompt,
                  const std::string& continuation, torch::Device device) {
  const auto cont = encode_ids(tok, continuation);
  if (cont.empty()) return std::numeric_limits<double>::quiet_NaN();
  SHARDLM_CHECK(tok.eos_id().has_value(), core::ModelError,
                "PMI needs an EOS token for the unconditioned likelihood");
  std::vector<int64_t> with{*tok.eos_id()};
  const auto p = encode_ids(tok, prompt);
  with.insert(with.end(), p.begin(), p.end());
  const double cond = continuation_logprob(model, with, cont, device);
  const double uncond = continuation_logprob(model, {*tok.eos_id()}, cont, device);
  return (cond - uncond) / static_cast<double>(cont.size());
}

}  // namespace shardlm::eval
