// ContinuousBatcher (continuous.h): jobs to sequences, one step at a time.
// Shapes: S sequences choosing a token this step, V the vocabulary.
#include "serve/continuous.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <unordered_map>

#include "core/error.h"
#include "core/log.h"
#include "data/hash.h"
#include "model/generate.h"
#include "model/stopping.h"
#include "serve/paged_kv.h"
#include "serve/scheduler.h"

namespace shardlm::serve {

model::GenerationConfig sampling_config(const SamplingParams& p) {
  model::GenerationConfig g;
  g.strategy = p.greedy() ? "greedy" : "sample";
  g.temperature = p.greedy() ? 1.0 : p.temperature;
  g.top_k = p.top_k;
  g.top_p = p.top_p;
  g.min_p = p.min_p;
  g.repetition_penalty = p.repetition_penalty;
  g.frequency_penalty = p.frequency_penalty;
  g.presence_penalty = p.presence_penalty;
  return g;
}

using torch::Tensor;
using Clock = std::chrono::steady_clock;

namespace {

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Which logprob entries go out with which text: an entry leaves once the text
// stream has let out every byte of its token; at the end, the entries of the
// tokens that begin before the final text's end (a stop string cuts the rest).
struct LogprobQueue {
  std::vector<TokenLogprob> entries;
  std::vector<size_t> ends;  // byte offset where each token's text ends
  size_t bytes = 0, sent = 0;
  std::vector<TokenLogprob> kept;  // everything sent, for the whole response

  void push(TokenLogprob e) {
    bytes += e.text.size();
    ends.push_back(bytes);
    entries.push_back(std::move(e));
  }
  std::vector<TokenLogprob> take(size_t emitted) {
    std::vector<TokenLogprob> out;
    while (sent < entries.size() && ends[sent] <= emitted) out.push_back(entries[sent++]);
    kept.insert(kept.end(), out.begin(), out.end());
    return out;
  }
  std::vector<TokenLogprob> rest(size_t final_len) {
    std::vector<TokenLogprob> out;
    while (sent < entries.size() && ends[sent] - entries[sent].text.size() < final_len)
      out.push_back(entries[sent++]);
    kept.insert(kept.end(), out.begin(), out.end());
    return out;
  }
};

}  // namespace

struct ContinuousBatcher::Impl {
  struct JobRun {
    Job job;
    JobResult result;
    int64_t live = 0;      // sequences not ended
    bool started = false;  // a sequence was admitted: the job left the queue
    bool first_token = false;
    std::vector<uint64_t> seqs;  // per choice (0 once ended)
  };
  struct SeqRun {
    std::shared_ptr<JobRun> job;
    size_t choice = 0;
    model::GenerationConfig gen;  // this sequence's sampling and penalties
    at::Generator rng;
    Tensor seen, counts;  // (1, V) penalty state, undefined when off
    std::unique_ptr<model::TextStream> text;
    LogprobQueue lp;
    int64_t generated = 0;
    Clock::time_point last;
  };

  model::GPT model{nullptr};
  const data::Tokenizer* tok = nullptr;
  EngineConfig cfg;
  std::shared_ptr<ServeMetrics> metrics;
  model::DecodeFn decode;
  std::unique_ptr<BlockPool> pool;
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<PagedKV> kv;
  std::unordered_map<uint64_t, SeqRun> seqs;
  std::vector<std::shared_ptr<JobRun>> jobs;
  int64_t eos = -1;
  int64_t vocab = 0;
  torch::Device device = torch::kCPU;
  uint64_t last_queries = 0, last_hits = 0;

  void end_seq(uint64_t id, const std::string& finish, SeqState how);
  void end_job(JobRun& jr);
  void handle_token(uint64_t id, int64_t token, double logprob, std::vector<TopLogprob> top);
  void publish_pool();
};

ContinuousBatcher::ContinuousBatcher(model::GPT model, const data::Tokenizer& tok,
                                     const EngineConfig& cfg, std::shared_ptr<ServeMetrics> metrics)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.model = std::move(model);
  m.tok = &tok;
  m.cfg = cfg;
  m.metrics = std::move(metrics);
  m.decode = [t = m.tok](const std::vector<int64_t>& ids) { return t->decode_model_ids(ids); };
  const model::ModelConfig& mc = m.model->config();
  m.vocab = mc.vocab_size;
  if (tok.eos_id()) m.eos = static_cast<int64_t>(*tok.eos_id());
  m.device = m.model->wte->weight.device();
  const int64_t per_context = (mc.context_length + cfg.block_size - 1) / cfg.block_size;
  const int64_t blocks =
      cfg.kv_blocks > 0 ? cfg.kv_blocks : per_context * std::max(1, cfg.max_batch);
  core::config_require(blocks >= per_context, "serve.kv_blocks", std::to_string(blocks),
                       fmt::format(">= {} blocks of {} tokens: one full context of {} tokens",
                                   per_context, cfg.block_size, mc.context_length));
  m.pool =
      std::make_unique<BlockPool>(static_cast<int>(blocks), cfg.block_size, cfg.prefix_caching);
  SchedulerConfig sc;
  sc.max_running = cfg.max_batch;
  sc.max_step_tokens = cfg.max_num_batched_tokens;
  m.sched = std::make_unique<Scheduler>(sc, *m.pool);
  m.kv = std::make_unique<PagedKV>(mc, static_cast<int>(blocks), cfg.block_size, m.device,
                                   m.model->wte->weight.scalar_type());
  m.metrics->kv_blocks_total = blocks;
  m.publish_pool();
}

ContinuousBatcher::~ContinuousBatcher() = default;

int ContinuousBatcher::block_size() const {
  return impl_->pool->block_size();
}
int ContinuousBatcher::num_blocks() const {
  return impl_->pool->num_blocks();
}
int64_t ContinuousBatcher::kv_bytes() const {
  return impl_->kv->bytes();
}

bool ContinuousBatcher::idle() const {
  return impl_->jobs.empty();
}

void ContinuousBatcher::Impl::publish_pool() {
  metrics->kv_blocks_used = pool->used();
  metrics->kv_blocks_cached = pool->cached();
  metrics->prefix_cache_queries += sched->prefix_queries() - last_queries;
  metrics->prefix_cache_hits += sched->prefix_hits() - last_hits;
  last_queries = sched->prefix_queries();
  last_hits = sched->prefix_hits();
}

void ContinuousBatcher::add(Job job) {
  Impl& m = *impl_;
  auto jr = std::make_shared<Impl::JobRun>();
  jr->job = std::move(job);
  const Job& j = jr->job;
  const SamplingParams& p = j.params;
  int64_t seed = p.seed;
  if (seed < 0) {
    std::random_device rd;
    seed = static_cast<int64_t>(((static_cast<uint64_t>(rd()) << 32) | rd()) >> 2);
  }
  jr->result.seed = seed;
  jr->result.choices.resize(static_cast<size_t>(j.rows()));
  jr->seqs.assign(static_cast<size_t>(j.rows()), 0);
  for (size_t pi = 0; pi < j.prompts.size(); ++pi) {
    uint64_t first = 0;
    for (int64_t s = 0; s < j.n; ++s) {
      const size_t choice = pi * static_cast<size_t>(j.n) + static_cast<size_t>(s);
      const uint64_t id = m.sched->add(j.prompts[pi], first);
      if (s == 0) first = id;
      Impl::SeqRun r;
      r.job = jr;
      r.choice = choice;
      r.gen = sampling_config(p);
      const model::GenerationConfig& g = r.gen;
      // Choice 0 draws from the seed itself (as `shardlm generate --seed` does),
      // choice i from a seed mixed from (seed, i).
      const uint64_t own = choice == 0 ? static_cast<uint64_t>(seed)
                                       : data::mix64(static_cast<uint64_t>(seed) + choice) >> 1;
      r.rng = model::make_rng(m.device, own);
      auto f = torch::dtype(torch::kFloat).device(m.device);
      if (g.repetition_penalty != 1.0) {
        r.seen = torch::zeros({1, m.vocab}, f.dtype(torch::kBool));
        r.seen.index_fill_(1, torch::tensor(j.prompts[pi], torch::kLong).to(m.device), true);
      }
      if (g.frequency_penalty != 0.0 || g.presence_penalty != 0.0)
        r.counts = torch::zeros({1, m.vocab}, f);
      r.text = std::make_unique<model::TextStream>(m.decode, p.stop);
      jr->seqs[choice] = id;
      ++jr->live;
      m.seqs.emplace(id, std::move(r));
    }
  }
  m.jobs.push_back(std::move(jr));
}

void ContinuousBatcher::Impl::end_job(JobRun& jr) {
  if (jr.started)
    --metrics->running;
  else
    --metrics->queue_depth;
  auto self = std::find_if(jobs.begin(), jobs.end(), [&](auto& p) { return p.get() == &jr; });
  std::shared_ptr<JobRun> keep = *self;  // alive through on_done
  jobs.erase(self);
  if (keep->job.on_done) keep->job.on_done(std::move(keep->result));
}

void ContinuousBatcher::Impl::end_seq(uint64_t id, const std::string& finish, SeqState how) {
  auto it = seqs.find(id);
  if (it == seqs.end()) return;
  SeqRun& r = it->second;
  JobRun& jr = *r.job;
  const Job& job = jr.job;
  if (how == SeqState::kFinished && !r.text->stopped()) {  // what was held back goes out
    std::string tail = r.text->finish();
    auto lps =
        job.params.logprobs >= 0 ? r.lp.rest(r.text->text().size()) : std::vector<TokenLogprob>{};
    if ((!tail.empty() || !lps.empty()) && job.on_text) job.on_text(r.choice, tail, lps);
  } else if (how == SeqState::kFinished && job.params.logprobs >= 0) {
    auto lps = r.lp.rest(r.text->text().size());
    if (!lps.empty() && job.on_text) job.on_text(r.choice, "", lps);
  }
  ChoiceOutput& c = jr.result.choices[r.choice];
  c.text = r.text->text();
  c.finish_reason = finish;
  c.tokens = r.generated;
  c.logprobs = r.lp.kept;
  jr.result.completion_tokens += r.generated;
  if (sched->has(id)) {
    const Sequence& s = sched->seq(id);
    jr.result.computed_tokens += s.computed_tokens;
    // Per prompt: what its first choice took from the prefix cache.
    if (r.choice % static_cast<size_t>(job.n) == 0) jr.result.cached_tokens += s.cached_tokens;
    sched->finish(id, how);
  }
  jr.seqs[r.choice] = 0;
  seqs.erase(it);
  publish_pool();  // before the job's answer goes out: /metrics already shows the blocks freed
  if (--jr.live == 0) end_job(jr);
}

void ContinuousBatcher::cancel_all(const std::string& error) {
  Impl& m = *impl_;
  while (!m.jobs.empty()) {
    auto jr = m.jobs.front();
    jr->result.error = error;
    for (uint64_t id : std::vector<uint64_t>(jr->seqs))
      if (id) m.end_seq(id, "stop", SeqState::kCancelled);
    if (!m.jobs.empty() && m.jobs.front() == jr) m.end_job(*jr);  // a job with no sequences
  }
  m.publish_pool();
}

void ContinuousBatcher::Impl::handle_token(uint64_t id, int64_t token, double logprob,
                                           std::vector<TopLogprob> top) {
  SeqRun& r = seqs.at(id);
  JobRun& jr = *r.job;
  const Job& job = jr.job;
  const SamplingParams& p = job.params;
  const auto now = Clock::now();
  sched->append(id, token);
  ++r.generated;
  ++metrics->generated_tokens;
  if (!jr.first_token) {
    jr.first_token = true;
    metrics->ttft.observe(seconds(job.submitted, now));
  } else if (r.generated > 1) {
    metrics->tpot.observe(seconds(r.last, now));
  }
  r.last = now;
  if (r.seen.defined())
    r.seen.index_fill_(1, torch::tensor({token}, torch::kLong).to(device), true);
  if (r.counts.defined())
    r.counts.index_add_(1, torch::tensor({token}, torch::kLong).to(device),
                        torch::ones({1, 1}, r.counts.options()));

  const bool is_eos = !p.ignore_eos && token == eos;
  if (!is_eos) {  // the EOS token's text is not part of the completion
    std::string piece = r.text->push(token);
    std::vector<TokenLogprob> lps;
    if (p.logprobs >= 0) {
      TokenLogprob e;
      e.token = token;
      e.text = decode({token});
      e.logprob = logprob;
      e.top = std::move(top);
      r.lp.push(std::move(e));
      if (!r.text->stopped()) lps = r.lp.take(r.text->text().size());
    }
    if ((!piece.empty() || !lps.empty()) && job.on_text) job.on_text(r.choice, piece, lps);
  }
  if (r.text->stopped()) {
    if (p.logprobs >= 0) {
      auto lps = r.lp.rest(r.text->text().size());
      if (!lps.empty() && job.on_text) job.on_text(r.choice, "", lps);
    }
    return end_seq(id, "stop", SeqState::kFinished);
  }
  if (is_eos) return end_seq(id, "stop", SeqState::kFinished);
  if (r.generated >= p.max_tokens) return end_seq(id, "length", SeqState::kFinished);
}

void ContinuousBatcher::step() {
  Impl& m = *impl_;
  // Cancelled jobs leave before the step: their blocks are free for it.
  for (auto jr : std::vector<std::shared_ptr<Impl::JobRun>>(m.jobs))
    if (jr->job.cancelled->load()) {
      for (uint64_t id : std::vector<uint64_t>(jr->seqs))
        if (id) m.end_seq(id, "cancelled", SeqState::kCancelled);
    }
  StepPlan plan = m.sched->schedule();
  m.metrics->preemptions += plan.preempted.size();
  for (const Chunk& c : plan.chunks) {
    Impl::JobRun& jr = *m.seqs.at(c.seq).job;
    if (!jr.started) {
      jr.started = true;
      --m.metrics->queue_depth;
      ++m.metrics->running;
    }
  }
  if (plan.empty()) {
    m.publish_pool();
    return;
  }
  std::vector<ChunkInput> inputs;
  std::vector<uint64_t> sampled;
  for (const Chunk& c : plan.chunks) {
    const Sequence& s = m.sched->seq(c.seq);
    inputs.push_back({s.tokens.data(), c.start, c.count, &s.blocks, c.sample});
    if (c.sample) sampled.push_back(c.seq);
    m.metrics->prompt_tokens_computed += static_cast<uint64_t>(std::max<int64_t>(
        0, std::min(c.start + c.count, s.prompt_len) - std::min(c.start, s.prompt_len)));
  }
  Tensor logits;
  try {
    logits = m.kv->step(m.model, inputs);  // (S, V)
  } catch (const std::exception& e) {
    core::log::error("serve: a step of {} tokens failed: {}", plan.tokens, e.what());
    cancel_all(e.what());
    return;
  }
  m.sched->computed(plan);
  ++m.metrics->batches;
  m.metrics->batch_rows += plan.chunks.size();
  m.metrics->batch_size.observe(static_cast<double>(plan.chunks.size()));
  m.metrics->computed_tokens += static_cast<uint64_t>(plan.tokens);
  m.metrics->step_tokens.observe(static_cast<double>(plan.tokens));

  if (!sampled.empty()) {
    torch::NoGradGuard no_grad;
    Tensor raw_logp = at::log_softmax(logits, -1);  // (S, V): what logprobs report
    std::vector<int64_t> tokens(sampled.size());
    for (size_t i = 0; i < sampled.size(); ++i) {
      Impl::SeqRun& r = m.seqs.at(sampled[i]);
      Tensor row = logits.narrow(0, static_cast<int64_t>(i), 1);  // (1, V)
      if (r.seen.defined() || r.counts.defined())
        model::apply_penalties(row, r.seen, r.counts, r.gen);
      tokens[i] = model::choose_tokens(row, r.gen, r.rng).item<int64_t>();
    }
    Tensor lp =
        raw_logp.gather(1, torch::tensor(tokens, torch::kLong).to(logits.device()).unsqueeze(1))
            .squeeze(1)
            .to(torch::kDouble)
            .cpu();
    for (size_t i = 0; i < sampled.size(); ++i) {
      const int64_t k = m.seqs.at(sampled[i]).job->job.params.logprobs;
      std::vector<TopLogprob> top;
      if (k > 0) {
        auto [vals, idx] = raw_logp[static_cast<int64_t>(i)].topk(k);
        Tensor v = vals.to(torch::kDouble).cpu(), ix = idx.cpu();
        for (int64_t a = 0; a < k; ++a) {
          TopLogprob t;
          t.token = ix[a].item<int64_t>();
          t.text = m.decode({t.token});
          t.logprob = v[a].item<double>();
          top.push_back(std::move(t));
        }
      }
      m.handle_token(sampled[i], tokens[i], lp[static_cast<int64_t>(i)].item<double>(),
                     std::move(top));
    }
  }
  m.publish_pool();
}

}  // namespace shardlm::serve
