// Engine (engine.h): loading the model, the bounded queue, the continuous loop
// (ContinuousBatcher) and the static one: the batching policy and the decode of
// one batch with model::Generator. Each row of a static batch is one (prompt,
// sample) of one job, passed to Generator as its own prompt, so
// TokenEvent::prompt is the row.
#include "serve/engine.h"

#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "core/error.h"
#include "core/log.h"
#include "load/model_bundle.h"
#include "model/generate.h"
#include "serve/chat.h"
#include "serve/continuous.h"

namespace shardlm::serve {

struct Engine::Impl {
  EngineConfig cfg;
  std::shared_ptr<ServeMetrics> metrics;
  data::Tokenizer tok;
  load::ModelBundle im;  // the model (and where it came from)
  ModelInfo info;
  model::DecodeFn decode;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job> queue;  // under mu
  bool stopping = false, drain = true;
  std::atomic<bool> abort{false};
  std::thread worker;
  std::unique_ptr<ContinuousBatcher> batcher;  // continuous scheduler only

  void loop();
  void loop_continuous();
  std::vector<Job> next_batch();  // blocks; empty when stopped and drained
  void run(std::vector<Job>& batch);
};

namespace {

model::GenerationConfig generation_config(const SamplingParams& p, int64_t max_new,
                                          const data::Tokenizer& tok) {
  model::GenerationConfig g = sampling_config(p);
  g.max_new_tokens = max_new;
  g.seed = p.seed;
  if (!p.ignore_eos && tok.eos_id()) g.eos_ids.push_back(*tok.eos_id());
  if (tok.pad_id()) g.pad_id = *tok.pad_id();
  return g;
}

// The one place serve loads a model and its tokenizer: load::load_model (a
// training checkpoint, a safetensors or quantised model; the tokenizer given or
// the one found beside the model, checked against the vocabulary), then what
// /v1/models reports and the chat template stored with the model.
void load_served_model(const std::string& model_path, const std::string& tokenizer_path,
                       const std::string& device, load::ModelBundle* im, data::Tokenizer* tok,
                       ModelInfo* info) {
  load::LoadOptions lo;
  lo.device = load::parse_device(device);
  lo.tokenizer = tokenizer_path;
  lo.need_tokenizer = true;
  *im = load::load_model(model_path, lo);
  info->tokenizer = im->tokenizer_path;
  *tok = std::move(*im->tokenizer);
  im->tokenizer.reset();
  const model::ModelConfig& mc = im->model->config();
  info->source = im->source;
  info->format = im->format;
  info->config = mc.to_json();
  info->context_length = mc.context_length;
  info->vocab_size = mc.vocab_size;
  for (const auto& p : im->model->parameters()) info->parameters += p.numel();
  info->chat_template = ChatTemplate::load_beside(im->source).to_json();
}

}  // namespace

Engine::Engine(const std::string& model_path, const std::string& tokenizer_path, EngineConfig cfg,
               std::shared_ptr<ServeMetrics> metrics)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.cfg = std::move(cfg);
  m.metrics = metrics ? std::move(metrics) : std::make_shared<ServeMetrics>();
  if (m.cfg.threads > 0) torch::set_num_threads(m.cfg.threads);
  load_served_model(model_path, tokenizer_path, m.cfg.device, &m.im, &m.tok, &m.info);
  m.info.scheduler = m.cfg.scheduler;
  if (m.cfg.scheduler == "continuous") {
    m.batcher = std::make_unique<ContinuousBatcher>(m.im.model, m.tok, m.cfg, m.metrics);
    m.info.block_size = m.batcher->block_size();
    m.info.kv_blocks = m.batcher->num_blocks();
    m.info.kv_bytes = m.batcher->kv_bytes();
  } else if (m.cfg.scheduler != "static") {
    throw core::ConfigError("", "--scheduler", m.cfg.scheduler, "continuous or static");
  }
  const data::Tokenizer* tok = &m.tok;
  m.decode = [tok](const std::vector<int64_t>& ids) { return tok->decode_model_ids(ids); };
  m.worker = std::thread([this] {
    if (impl_->batcher)
      impl_->loop_continuous();
    else
      impl_->loop();
  });
}

Engine::~Engine() {
  stop(false);
}

const ModelInfo& Engine::info() const {
  return impl_->info;
}
const data::Tokenizer& Engine::tokenizer() const {
  return impl_->tok;
}

bool Engine::submit(Job job) {
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    // Waiting jobs: in this queue, and (continuous) in the scheduler, not yet admitted.
    if (impl_->stopping || impl_->metrics->queue_depth >= impl_->cfg.max_queue) return false;
    job.submitted = std::chrono::steady_clock::now();
    impl_->queue.push_back(std::move(job));
    ++impl_->metrics->queue_depth;
  }
  impl_->cv.notify_all();
  return true;
}

void Engine::stop(bool drain) {
  std::deque<Job> dropped;
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    if (!impl_->stopping) {
      impl_->stopping = true;
      impl_->drain = drain;
    }
    if (!drain) {
      impl_->abort = true;
      dropped.swap(impl_->queue);
      impl_->metrics->queue_depth -= static_cast<int64_t>(dropped.size());
    }
  }
  impl_->cv.notify_all();
  for (auto& job : dropped) {
    JobResult r;
    r.error = "the server is shutting down";
    if (job.on_done) job.on_done(std::move(r));
  }
  if (impl_->worker.joinable()) impl_->worker.join();
}

// ---- continuous ---------------------------------------------------------------------------------

void Engine::Impl::loop_continuous() {
  while (true) {
    std::deque<Job> incoming;
    {
      std::unique_lock<std::mutex> lk(mu);
      if (batcher->idle()) cv.wait(lk, [&] { return stopping || !queue.empty(); });
      if (abort) break;
      if (stopping && queue.empty() && batcher->idle()) return;
      incoming.swap(queue);
    }
    for (auto& job : incoming) batcher->add(std::move(job));
    batcher->step();
  }
  batcher->cancel_all("the server is shutting down");
}

// ---- batching -----------------------------------------------------------------------------------

std::vector<Job> Engine::Impl::next_batch() {
  std::vector<Job> batch;
  std::unique_lock<std::mutex> lk(mu);
  cv.wait(lk, [&] { return stopping || !queue.empty(); });
  if (queue.empty()) return batch;
  batch.push_back(std::move(queue.front()));
  queue.pop_front();
  int64_t rows = batch[0].rows();
  const std::string key = batch[0].params.batch_key();
  // Takes the waiting jobs that fit (same key, rows within max_batch), oldest first;
  // the others keep their place for a later batch.
  auto gather = [&] {
    for (auto it = queue.begin(); it != queue.end() && rows < cfg.max_batch;) {
      if (it->params.batch_key() == key && rows + it->rows() <= cfg.max_batch) {
        rows += it->rows();
        batch.push_back(std::move(*it));
        it = queue.erase(it);
      } else {
        ++it;
      }
    }
  };
  if (!key.empty()) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(cfg.batch_wait_ms);
    gather();
    while (rows < cfg.max_batch && !stopping) {
      if (cv.wait_until(lk, deadline) == std::cv_status::timeout) {
        gather();
        break;
      }
      gather();
    }
  }
  metrics->queue_depth -= static_cast<int64_t>(batch.size());
  return batch;
}

void Engine::Impl::loop() {
  while (true) {
    std::vector<Job> batch = next_batch();
    if (batch.empty()) return;
    metrics->running += static_cast<int64_t>(batch.size());
    run(batch);
    metrics->running -= static_cast<int64_t>(batch.size());
  }
}

// ---- one batch ----------------------------------------------------------------------------------

void Engine::Impl::run(std::vector<Job>& batch) {
  struct Row {
    size_t job = 0, choice = 0;
    std::unique_ptr<model::TextStream> text;
    int64_t count = 0;
    bool stopped = false;  // a stop string appeared
    std::chrono::steady_clock::time_point last;
  };
  std::vector<Row> rows;
  std::vector<std::vector<int64_t>> prompts;
  int64_t max_new = 1;
  for (size_t j = 0; j < batch.size(); ++j) {
    const Job& job = batch[j];
    max_new = std::max(max_new, job.params.max_tokens);
    for (size_t p = 0; p < job.prompts.size(); ++p)
      for (int64_t s = 0; s < job.n; ++s) {
        Row r;
        r.job = j;
        r.choice = p * static_cast<size_t>(job.n) + static_cast<size_t>(s);
        r.text = std::make_unique<model::TextStream>(decode, job.params.stop);
        rows.push_back(std::move(r));
        prompts.push_back(job.prompts[p]);
      }
  }
  const model::GenerationConfig g = generation_config(batch[0].params, max_new, tok);
  const std::unordered_set<int64_t> eos(g.eos_ids.begin(), g.eos_ids.end());
  ++metrics->batches;
  metrics->batch_rows += rows.size();
  metrics->batch_size.observe(static_cast<double>(rows.size()));

  std::vector<char> first_token(batch.size(), 0);  // per job: its first token came
  // Per-row limits: Generator applies max_new (the batch's largest) to every row.
  auto on_token = [&](const model::TokenEvent& e) {
    Row& r = rows[static_cast<size_t>(e.prompt)];
    Job& job = batch[r.job];
    ++r.count;
    ++metrics->generated_tokens;
    const auto now = std::chrono::steady_clock::now();
    if (!first_token[r.job]) {
      first_token[r.job] = true;
      metrics->ttft.observe(std::chrono::duration<double>(now - job.submitted).count());
    } else if (r.count > 1) {
      metrics->tpot.observe(std::chrono::duration<double>(now - r.last).count());
    }
    r.last = now;
    if (abort || job.cancelled->load()) return false;
    if (!eos.count(e.token)) {  // the EOS token's text is not part of the completion
      std::string piece = r.text->push(e.token);
      if (!piece.empty() && job.on_text) job.on_text(r.choice, piece, {});
    }
    if (r.text->stopped()) {
      r.stopped = true;
      return false;
    }
    return r.count < job.params.max_tokens;
  };

  std::vector<JobResult> results(batch.size());
  for (size_t j = 0; j < batch.size(); ++j)
    results[j].choices.resize(static_cast<size_t>(batch[j].rows()));
  try {
    model::Generator gen(im.model, g);
    const model::GenerationOutput out = gen.generate(prompts, on_token);
    for (size_t i = 0; i < rows.size(); ++i) {  // every row's prompt is prefilled
      const auto len = static_cast<int64_t>(prompts[i].size());
      results[rows[i].job].computed_tokens += len;
      metrics->prompt_tokens_computed += static_cast<uint64_t>(len);
      metrics->computed_tokens += static_cast<uint64_t>(len);
    }
    for (auto& r : results) r.seed = out.seed;
    for (size_t i = 0; i < rows.size(); ++i) {
      Row& r = rows[i];
      const model::GeneratedSequence& seq = out.sequences[i][0];
      ChoiceOutput& c = results[r.job].choices[r.choice];
      if (!r.stopped) {
        std::string tail = r.text->finish();  // held back at the end: an unfinished character
        if (!tail.empty() && batch[r.job].on_text) batch[r.job].on_text(r.choice, tail, {});
      }
      c.text = r.text->text();
      c.tokens = static_cast<int64_t>(seq.tokens.size());
      const bool stop = r.stopped || seq.finish == model::FinishReason::kEos ||
                        seq.finish == model::FinishReason::kStop;
      c.finish_reason = stop ? "stop" : "length";
      results[r.job].completion_tokens += c.tokens;
      results[r.job].computed_tokens += c.tokens;
      metrics->computed_tokens += static_cast<uint64_t>(c.tokens);
    }
  } catch (const std::exception& e) {
    core::log::error("serve: a batch of {} rows failed: {}", rows.size(), e.what());
    for (auto& r : results) r.error = e.what();
  }
  for (size_t j = 0; j < batch.size(); ++j)
    if (batch[j].on_done) batch[j].on_done(std::move(results[j]));
}

}  // namespace shardlm::serve
