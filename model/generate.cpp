// Generation: logits processing, the decode loop (greedy / sampling), beam
// search. docs/generation.md has the why of each part.
//
// Shapes: R rows in the batch (prompts x samples, or prompts x beams), V the
// vocabulary, L the longest prompt. Everything that decides (stopping, beam
// bookkeeping) runs on the CPU with one device-to-host copy per step; the
// tensors that are per row x vocabulary stay on the model's device.
#include "model/generate.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <mutex>
#include <random>

#include "core/error.h"
#include "core/log.h"
#include "model/safetensors.h"

namespace shardlm::model {

using torch::Tensor;
namespace fs = std::filesystem;

namespace {
constexpr double kMaskedLogit = -std::numeric_limits<double>::infinity();

Tensor as_index(const std::vector<int64_t>& v, torch::Device device) {
  return torch::tensor(v, torch::kLong).to(device);
}

// Runs the model one step at a time, with the KV cache or by recomputing the whole
// (left-padded) sequence; either way it returns the last position's logits.
class Stepper {
 public:
  // ids, mask (R, L): left-padded prompts. `capacity`: cache slots to reserve.
  Stepper(GPT& model, bool use_cache, Tensor ids, Tensor mask, int64_t capacity)
      : model_(model),
        use_cache_(use_cache),
        ids_(std::move(ids)),
        mask_(std::move(mask)),
        cache_(capacity) {}

  // The prompts' next-token logits (R, V) fp32.
  Tensor prefill() {
    ForwardOptions opts;
    opts.attention_mask = mask_;
    if (use_cache_) opts.cache = &cache_;
    return last_logits(ids_, opts);
  }
  // Keeps rows `index` (R') in that order (finished rows dropped, beams reordered).
  void select(const Tensor& index) {
    if (use_cache_) {
      cache_.reorder(index);
    } else {
      ids_ = ids_.index_select(0, index);
      mask_ = mask_.index_select(0, index);
    }
  }
  // Appends one token per row, tokens (R) int64; returns the next logits (R, V).
  Tensor append(const Tensor& tokens) {
    const int64_t R = tokens.size(0);
    ForwardOptions opts;
    if (use_cache_) {
      opts.cache = &cache_;
      return last_logits(tokens.view({R, 1}), opts);
    }
    ids_ = torch::cat({ids_, tokens.view({R, 1})}, 1);
    mask_ = torch::cat({mask_, torch::ones({R, 1}, mask_.options())}, 1);
    opts.attention_mask = mask_;
    return last_logits(ids_, opts);
  }
  int64_t calls() const { return calls_; }

 private:
  Tensor last_logits(const Tensor& ids, const ForwardOptions& opts) {
    ++calls_;
    Tensor h = model_->hidden(ids, opts);  // (R, T, C); only the last position is projected
    return model_->project(h.select(1, h.size(1) - 1)).to(torch::kFloat);  // (R, V)
  }
  GPT& model_;
  bool use_cache_;
  Tensor ids_, mask_;
  KVCache cache_;
  int64_t calls_ = 0;
};

// Left-pads `rows` into ids and mask (R, L) on `device`.
void left_pad(const std::vector<const std::vector<int64_t>*>& rows, int64_t pad,
              torch::Device device, Tensor* ids, Tensor* mask) {
  size_t L = 0;
  for (auto* r : rows) L = std::max(L, r->size());
  const auto R = static_cast<int64_t>(rows.size());
  Tensor i = torch::full({R, static_cast<int64_t>(L)}, pad, torch::kLong);
  Tensor m = torch::zeros({R, static_cast<int64_t>(L)}, torch::kLong);
  auto ia = i.accessor<int64_t, 2>();
  auto ma = m.accessor<int64_t, 2>();
  for (int64_t r = 0; r < R; ++r) {
    const auto& row = *rows[r];
    const size_t off = L - row.size();
    for (size_t t = 0; t < row.size(); ++t) {
      ia[r][off + t] = row[t];
      ma[r][off + t] = 1;
    }
  }
  *ids = i.to(device);
  *mask = m.to(device);
}

// Per-row state of the penalties: `seen` (R, V) bool, tokens of prompt and output;
// `counts` (R, V) fp32, generated tokens. Undefined when their penalty is off.
struct PenaltyState {
  Tensor seen, counts;
  void init(const GenerationConfig& cfg, const Tensor& ids, const Tensor& mask, int64_t V) {
    const int64_t R = ids.size(0);
    auto f = torch::dtype(torch::kFloat).device(ids.device());
    if (cfg.repetition_penalty != 1.0)  // prompt tokens, padding excluded
      seen = torch::zeros({R, V}, f).scatter_add_(1, ids, mask.to(torch::kFloat)) > 0;
    if (cfg.frequency_penalty != 0.0 || cfg.presence_penalty != 0.0)
      counts = torch::zeros({R, V}, f);
  }
  void select(const Tensor& index) {
    if (seen.defined()) seen = seen.index_select(0, index);
    if (counts.defined()) counts = counts.index_select(0, index);
  }
  void add(const Tensor& tokens) {  // tokens (R)
    Tensor t = tokens.view({-1, 1});
    if (seen.defined()) seen.scatter_(1, t, true);
    if (counts.defined()) counts.scatter_add_(1, t, torch::ones(t.sizes(), counts.options()));
  }
};

// The prompts' checks and each prompt's room: max_new_tokens, or less where
// learned positions end at context_length.
std::vector<int64_t> check_prompts(const std::vector<std::vector<int64_t>>& prompts,
                                   const ModelConfig& mc, const GenerationConfig& cfg) {
  SHARDLM_CHECK(!prompts.empty(), core::ModelError, "generate: no prompts");
  std::vector<int64_t> room;
  for (size_t p = 0; p < prompts.size(); ++p) {
    const auto& ids = prompts[p];
    SHARDLM_CHECK(!ids.empty(), core::ModelError,
                  "generate: prompt {} is empty (give at least one token, e.g. BOS)", p);
    for (size_t t = 0; t < ids.size(); ++t)
      SHARDLM_CHECK(ids[t] >= 0 && ids[t] < mc.vocab_size, core::ModelError,
                    "generate: prompt {} token {} is id {}, outside the vocabulary [0, {})", p, t,
                    ids[t], mc.vocab_size);
    int64_t r = cfg.max_new_tokens;
    if (mc.positional == "learned") {
      const auto len = static_cast<int64_t>(ids.size());
      SHARDLM_CHECK(len < mc.context_length, core::ModelError,
                    "generate: prompt {} has {} tokens, but this model (learned positions) "
                    "holds at most {} tokens in all; shorten the prompt",
                    p, len, mc.context_length);
      r = std::min(r, mc.context_length - len);
    }
    room.push_back(r);
  }
  return room;
}

// What a stream callback says about a token; false ends the row.
bool notify(const TokenCallback& cb, int64_t prompt, int64_t seq, int64_t index, int64_t token,
            double lp, const Alternatives* top = nullptr) {
  if (!cb) return true;
  TokenEvent e;
  e.prompt = prompt;
  e.sequence = seq;
  e.index = index;
  e.token = token;
  e.logprob = lp;
  if (top) e.top = *top;
  return cb(e);
}

// The k most probable tokens of each row of log-probs (R, V), on the CPU.
std::vector<Alternatives> top_alternatives(const Tensor& logp, int64_t k) {
  std::vector<Alternatives> out;
  if (k <= 0) return out;
  auto [v, i] = logp.topk(std::min(k, logp.size(-1)), -1);  // (R, k)
  Tensor vals = v.to(torch::kCPU, torch::kDouble).contiguous();
  Tensor ids = i.to(torch::kCPU).contiguous();
  auto va = vals.accessor<double, 2>();
  auto ia = ids.accessor<int64_t, 2>();
  out.resize(static_cast<size_t>(vals.size(0)));
  for (int64_t r = 0; r < vals.size(0); ++r)
    for (int64_t j = 0; j < vals.size(1); ++j) out[r].emplace_back(ia[r][j], va[r][j]);
  return out;
}

}  // namespace

// ---- logits processing ----------------------------------------------------------------------

void apply_penalties(Tensor& logits, const Tensor& seen, const Tensor& counts,
                     const GenerationConfig& cfg) {
  // logits (R, V) fp32, modified in place
  if (cfg.repetition_penalty != 1.0 && seen.defined()) {
    const double r = cfg.repetition_penalty;
    Tensor penalised = torch::where(logits > 0, logits / r, logits * r);
    logits.copy_(torch::where(seen, penalised, logits));
  }
  if ((cfg.frequency_penalty != 0.0 || cfg.presence_penalty != 0.0) && counts.defined())
    logits.sub_(counts * cfg.frequency_penalty +
                (counts > 0).to(logits.scalar_type()) * cfg.presence_penalty);
}

Tensor warp_logits(const Tensor& logits, const GenerationConfig& cfg) {
  // logits (R, V) -> (R, V) with removed tokens at -inf
  Tensor x = cfg.temperature != 1.0 ? logits / cfg.temperature : logits.clone();
  const int64_t V = x.size(-1);
  if (cfg.top_k > 0 && cfg.top_k < V) {
    Tensor kth = std::get<0>(x.topk(cfg.top_k, -1)).narrow(-1, cfg.top_k - 1, 1);  // (R, 1)
    x.masked_fill_(x < kth, kMaskedLogit);
  }
  if (cfg.top_p < 1.0) {
    // Keep the most probable tokens until their mass reaches top_p: a token stays
    // when the mass strictly before it (in descending order) is below top_p.
    auto [sorted, order] = x.sort(-1, /*descending=*/true);
    Tensor probs = sorted.softmax(-1);
    Tensor drop_sorted = (probs.cumsum(-1) - probs) >= cfg.top_p;
    x.masked_fill_(torch::zeros_like(drop_sorted).scatter_(-1, order, drop_sorted), kMaskedLogit);
  }
  if (cfg.min_p > 0.0) {
    Tensor probs = x.softmax(-1);
    x.masked_fill_(probs < std::get<0>(probs.max(-1, true)) * cfg.min_p, kMaskedLogit);
  }
  return x;
}

Tensor choose_tokens(const Tensor& logits, const GenerationConfig& cfg, at::Generator& rng) {
  if (!cfg.sampling()) return logits.argmax(-1);
  Tensor probs = warp_logits(logits, cfg).softmax(-1);  // (R, V), 0 for removed tokens
  return at::multinomial(probs, 1, /*replacement=*/false, rng).squeeze(1);
}

at::Generator make_rng(torch::Device device, uint64_t seed) {
  if (device.is_cpu()) return at::detail::createCPUGenerator(seed);
  at::Generator def = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(def.mutex());
  at::Generator g = def.clone();
  g.set_current_seed(seed);
  return g;
}

// ---- the generator ----------------------------------------------------------------------------

Generator::Generator(GPT model, GenerationConfig cfg) : model_(std::move(model)) {
  set_config(cfg);
  model_->eval();
}

void Generator::set_config(const GenerationConfig& cfg) {
  cfg.validate();
  cfg_ = cfg;
}

GenerationOutput Generator::generate(const std::vector<std::vector<int64_t>>& prompts,
                                     const TokenCallback& on_token) {
  torch::NoGradGuard no_grad;
  int64_t seed = cfg_.seed;
  if (seed < 0) {
    std::random_device rd;
    seed = static_cast<int64_t>(((static_cast<uint64_t>(rd()) << 32) | rd()) >> 1);
  }
  GenerationOutput out =
      cfg_.beam() ? run_beam(prompts, on_token) : run_decode(prompts, on_token, seed);
  out.seed = seed;
  return out;
}

// ---- greedy and sampling ----------------------------------------------------------------------

GenerationOutput Generator::run_decode(const std::vector<std::vector<int64_t>>& prompts,
                                       const TokenCallback& on_token, int64_t seed) {
  const ModelConfig& mc = model_->config();
  const std::vector<int64_t> room = check_prompts(prompts, mc, cfg_);
  const StopCriteria stop(cfg_, decode_);
  const auto device = model_->wte->weight.device();
  const int64_t n = cfg_.strategy == "sample" ? cfg_.num_return_sequences : 1;
  const auto P = static_cast<int64_t>(prompts.size());

  // Row r continues prompt r / n (sample r % n).
  std::vector<const std::vector<int64_t>*> rows;
  for (int64_t p = 0; p < P; ++p)
    for (int64_t s = 0; s < n; ++s) rows.push_back(&prompts[p]);
  const auto R = static_cast<int64_t>(rows.size());
  Tensor ids, mask;
  left_pad(rows, cfg_.pad_id, device, &ids, &mask);
  int64_t longest = 0;
  for (int64_t r : room) longest = std::max(longest, r);

  GenerationOutput out;
  out.sequences.assign(P, std::vector<GeneratedSequence>(n));
  at::Generator rng = make_rng(device, static_cast<uint64_t>(seed));
  PenaltyState pen;
  pen.init(cfg_, ids, mask, mc.vocab_size);
  Stepper stepper(model_, cfg_.use_cache, ids, mask, ids.size(1) + longest);

  std::vector<int64_t> active(R);  // row of each batch entry
  for (int64_t r = 0; r < R; ++r) active[r] = r;
  Tensor logits = stepper.prefill();  // (A, V)
  while (true) {
    Tensor raw_logp = at::log_softmax(logits, -1);  // (A, V): reported log-probs
    if (pen.seen.defined() || pen.counts.defined())
      apply_penalties(logits, pen.seen, pen.counts, cfg_);
    Tensor tokens = choose_tokens(logits, cfg_, rng);                // (A)
    Tensor lp = raw_logp.gather(1, tokens.unsqueeze(1)).squeeze(1);  // (A)
    Tensor both = torch::stack({tokens.to(torch::kDouble), lp.to(torch::kDouble)}).cpu();
    auto acc = both.accessor<double, 2>();  // one device-to-host copy per step
    const std::vector<Alternatives> alts = top_alternatives(raw_logp, alternatives_);

    std::vector<int64_t> keep;  // batch entries still running
    for (size_t a = 0; a < active.size(); ++a) {
      const int64_t r = active[a], p = r / n, s = r % n;
      GeneratedSequence& seq = out.sequences[p][s];
      const auto tok = static_cast<int64_t>(acc[0][a]);
      seq.tokens.push_back(tok);
      seq.logprobs.push_back(acc[1][a]);
      if (!alts.empty()) seq.top.push_back(alts[a]);
      seq.score += acc[1][a];
      ++out.new_tokens;
      seq.finish = stop.check(seq.tokens, &seq.stop);
      if (seq.finish == FinishReason::kNone && static_cast<int64_t>(seq.tokens.size()) >= room[p])
        seq.finish = FinishReason::kLength;
      const bool go_on = notify(on_token, p, s, static_cast<int64_t>(seq.tokens.size()) - 1, tok,
                                acc[1][a], alts.empty() ? nullptr : &alts[a]);
      if (!go_on && seq.finish == FinishReason::kNone) seq.finish = FinishReason::kCallback;
      if (seq.finish == FinishReason::kNone) keep.push_back(static_cast<int64_t>(a));
    }
    if (keep.empty()) break;
    pen.add(tokens);
    if (keep.size() < active.size()) {  // drop finished rows from the batch and the cache
      Tensor index = as_index(keep, device);
      stepper.select(index);
      pen.select(index);
      tokens = tokens.index_select(0, index);
      std::vector<int64_t> next;
      for (int64_t a : keep) next.push_back(active[a]);
      active.swap(next);
    }
    logits = stepper.append(tokens);
  }
  out.forward_calls = stepper.calls();
  return out;
}

// ---- beam search ------------------------------------------------------------------------------

namespace {
struct Hypothesis {
  std::vector<int64_t> tokens;
  std::vector<double> logprobs;   // under the model (reported)
  std::vector<Alternatives> top;  // with alternatives requested
  double sum = 0;                 // sum of log p under the penalised distribution (ranked)
};

// The best `k` finished hypotheses of one prompt.
struct Finished {
  std::vector<GeneratedSequence> best;  // unsorted, at most k
  void add(const Hypothesis& h, double length_penalty, FinishReason why, const std::string& stop,
           size_t k) {
    GeneratedSequence s;
    s.tokens = h.tokens;
    s.logprobs = h.logprobs;
    s.top = h.top;
    s.score = h.sum / std::pow(static_cast<double>(h.tokens.size()), length_penalty);
    s.finish = why;
    s.stop = stop;
    if (best.size() == k) {
      auto worst = std::min_element(best.begin(), best.end(),
                                    [](auto& a, auto& b) { return a.score < b.score; });
      if (worst->score >= s.score) return;
      *worst = std::move(s);
    } else {
      best.push_back(std::move(s));
    }
  }
  double worst() const {
    double w = std::numeric_limits<double>::infinity();
    for (auto& s : best) w = std::min(w, s.score);
    return w;
  }
};
}  // namespace

GenerationOutput Generator::run_beam(const std::vector<std::vector<int64_t>>& prompts,
                                     const TokenCallback& on_token) {
  const ModelConfig& mc = model_->config();
  const std::vector<int64_t> room = check_prompts(prompts, mc, cfg_);
  const StopCriteria stop(cfg_, decode_);
  const auto device = model_->wte->weight.device();
  const int64_t K = cfg_.num_beams, V = mc.vocab_size;
  const auto P = static_cast<int64_t>(prompts.size());
  const double lp_exp = cfg_.length_penalty;

  std::vector<const std::vector<int64_t>*> rows;
  for (const auto& p : prompts) rows.push_back(&p);
  Tensor ids, mask;
  left_pad(rows, cfg_.pad_id, device, &ids, &mask);
  int64_t longest = 0;
  for (int64_t r : room) longest = std::max(longest, r);
  Stepper stepper(model_, cfg_.use_cache, ids, mask, ids.size(1) + longest);
  Tensor logits = stepper.prefill();  // (P, V)

  // Every prompt starts with K copies of itself; only copy 0 may extend at first,
  // so the first step picks K different tokens.
  Tensor expand = torch::arange(P, torch::dtype(torch::kLong).device(device)).repeat_interleave(K);
  stepper.select(expand);
  logits = logits.index_select(0, expand);  // (P*K, V)
  PenaltyState pen;
  pen.init(cfg_, ids.index_select(0, expand), mask.index_select(0, expand), V);

  std::vector<std::vector<Hypothesis>> beams(P, std::vector<Hypothesis>(K));
  std::vector<Finished> finished(P);
  std::vector<int64_t> active(P);  // prompt of each group of K batch rows
  for (int64_t p = 0; p < P; ++p) active[p] = p;
  std::vector<double> scores(P * K, kMaskedLogit);
  for (int64_t p = 0; p < P; ++p) scores[p * K] = 0;
  GenerationOutput out;

  for (int64_t step = 1;; ++step) {
    const auto A = static_cast<int64_t>(active.size());
    Tensor raw_logp = at::log_softmax(logits, -1);  // (A*K, V)
    Tensor logp = raw_logp;
    if (pen.seen.defined() || pen.counts.defined()) {
      apply_penalties(logits, pen.seen, pen.counts, cfg_);
      logp = at::log_softmax(logits, -1);
    }
    Tensor beam_scores = torch::tensor(scores, torch::kDouble).to(device).to(torch::kFloat);
    Tensor cand = (logp + beam_scores.unsqueeze(1)).view({A, K * V});  // (A, K*V)
    const int64_t C = std::min<int64_t>(2 * K, K * V);
    auto [top_val, top_idx] = cand.topk(C, -1);                        // (A, C)
    Tensor top_raw = raw_logp.reshape({A, K * V}).gather(1, top_idx);  // (A, C)
    Tensor host = torch::stack({top_val.to(torch::kDouble), top_idx.to(torch::kDouble),
                                top_raw.to(torch::kDouble)})
                      .cpu();
    auto acc = host.accessor<double, 3>();
    const std::vector<Alternatives> alts = top_alternatives(raw_logp, alternatives_);  // (A*K)
    out.new_tokens += A * K;

    std::vector<int64_t> next_active, select_rows, next_tokens;
    std::vector<double> next_scores;
    for (int64_t a = 0; a < A; ++a) {
      const int64_t p = active[a];
      std::vector<Hypothesis> next;
      for (int64_t c = 0; c < C && static_cast<int64_t>(next.size()) < K; ++c) {
        const double sum = acc[0][a][c];
        if (!std::isfinite(sum)) break;  // fewer than C live candidates
        const auto flat = static_cast<int64_t>(acc[1][a][c]);
        const int64_t k = flat / V, tok = flat % V;
        Hypothesis h = beams[p][k];
        h.tokens.push_back(tok);
        h.logprobs.push_back(acc[2][a][c]);
        if (!alts.empty()) h.top.push_back(alts[a * K + k]);
        h.sum = sum;
        std::string why;
        FinishReason r = stop.check(h.tokens, &why);
        if (r != FinishReason::kNone) {
          // As in Hugging Face: a finishing candidate counts only within the top K.
          if (c < K) finished[p].add(h, lp_exp, r, why, K);
          continue;
        }
        select_rows.push_back(a * K + k);
        next_tokens.push_back(tok);
        next.push_back(std::move(h));
      }
      // Fewer than K live candidates (a tiny vocabulary, many stops): pad with dead beams.
      while (static_cast<int64_t>(next.size()) < K) {
        select_rows.push_back(a * K);
        next_tokens.push_back(cfg_.pad_id);
        Hypothesis dead;
        dead.sum = kMaskedLogit;
        next.push_back(std::move(dead));
      }

      // Is this prompt done?
      bool done = false;
      const double best_running = next[0].sum;
      if (step >= room[p] || !std::isfinite(best_running)) {
        for (const auto& h : next)
          if (std::isfinite(h.sum)) finished[p].add(h, lp_exp, FinishReason::kLength, "", K);
        done = true;
      } else if (static_cast<int64_t>(finished[p].best.size()) >= K) {
        if (cfg_.early_stopping) {
          done = true;
        } else {
          // The best score a running beam can still reach: its sum only falls, and
          // the length divisor is largest at the longest length (length_penalty > 0)
          // or smallest at the next one (<= 0).
          const double len = lp_exp > 0 ? static_cast<double>(room[p]) : step + 1.0;
          done = finished[p].worst() >= best_running / std::pow(len, lp_exp);
        }
      }
      if (done) {
        select_rows.resize(select_rows.size() - K);
        next_tokens.resize(next_tokens.size() - K);
        continue;
      }
      beams[p] = std::move(next);
      next_active.push_back(p);
      for (const auto& h : beams[p]) next_scores.push_back(h.sum);
    }
    if (next_active.empty()) break;
    Tensor index = as_index(select_rows, device);
    Tensor tokens = as_index(next_tokens, device);
    stepper.select(index);
    pen.select(index);
    pen.add(tokens);
    active.swap(next_active);
    scores.swap(next_scores);
    logits = stepper.append(tokens);
  }

  out.sequences.resize(P);
  for (int64_t p = 0; p < P; ++p) {
    auto& best = finished[p].best;
    std::stable_sort(best.begin(), best.end(), [](auto& a, auto& b) { return a.score > b.score; });
    best.resize(std::min<size_t>(best.size(), cfg_.num_return_sequences));
    if (!best.empty()) {
      const auto& s = best[0];
      for (size_t i = 0; i < s.tokens.size(); ++i)
        if (!notify(on_token, p, 0, static_cast<int64_t>(i), s.tokens[i], s.logprobs[i],
                    i < s.top.size() ? &s.top[i] : nullptr))
          break;
    }
    out.sequences[p] = std::move(best);
  }
  out.forward_calls = stepper.calls();
  return out;
}

}  // namespace shardlm::model
