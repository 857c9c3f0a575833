// data::Loader: the one translation unit of data/ that makes tensors. Reading,
// order and position live in torch-free files (dataset.cpp, sampler.cpp).
#include "data/loader.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/h5_check.h"
#include "core/log.h"
#include "data/dataset.h"

namespace shardlm::data {

// ---- config ---------------------------------------------------------------------

LoaderConfig LoaderConfig::from(const core::ConfigSection& s) {
  LoaderConfig c;
  c.path = s.get("path", c.path);
  c.split = s.get("split", c.split);
  c.mode = s.get("mode", c.mode);
  c.batch_size = s.get("batch_size", c.batch_size);
  c.seq_len = s.get("seq_len", c.seq_len);
  c.seed = s.get("seed", c.seed);
  c.shuffle = s.get("shuffle", c.shuffle);
  c.prefetch = s.get("prefetch", c.prefetch);
  c.bucket_window = s.get("bucket_window", c.bucket_window);
  c.truncate = s.get("truncate", c.truncate);
  c.pad_to_multiple = s.get("pad_to_multiple", c.pad_to_multiple);
  c.pad_id = s.get("pad_id", c.pad_id);
  c.last_batch = s.get("last_batch", c.last_batch);
  c.verify = s.get("verify", c.verify);
  c.tokenizer_hash = s.get("tokenizer_hash", c.tokenizer_hash);
  c.cache_mb = s.get("cache_mb", c.cache_mb);
  return c;
}

void LoaderConfig::validate() const {
  using core::config_require;
  config_require(!path.empty(), "path", path, "the directory of a prepared dataset");
  config_require(mode == "packed" || mode == "documents", "mode", mode, "one of packed, documents");
  config_require(batch_size >= 1, "batch_size", std::to_string(batch_size), "an integer >= 1");
  config_require(seq_len >= 1, "seq_len", std::to_string(seq_len), "an integer >= 1");
  config_require(prefetch >= 0 && prefetch <= 1024, "prefetch", std::to_string(prefetch),
                 "an integer in [0, 1024]");
  config_require(bucket_window >= 1, "bucket_window", std::to_string(bucket_window),
                 "an integer >= 1 (1 = no bucketing)");
  config_require(truncate == "head" || truncate == "split", "truncate", truncate,
                 "one of head, split");
  config_require(pad_to_multiple >= 1, "pad_to_multiple", std::to_string(pad_to_multiple),
                 "an integer >= 1");
  config_require(pad_id >= -1, "pad_id", std::to_string(pad_id), "a token id, or -1 for EOS");
  config_require(last_batch == "pad" || last_batch == "drop", "last_batch", last_batch,
                 "one of pad, drop");
  config_require(verify == "full" || verify == "all" || verify == "size", "verify", verify,
                 "one of full, all, size");
  config_require(cache_mb >= 0, "cache_mb", std::to_string(cache_mb), "an integer >= 0 (MiB)");
}

// ---- batch ----------------------------------------------------------------------

torch::Tensor Batch::causal_mask() const {
  int64_t L = input_ids.size(1);
  auto causal = torch::ones({L, L}, torch::kBool).tril();  // (L, L)
  return causal.view({1, 1, L, L}) & attention_mask.view({attention_mask.size(0), 1, 1, L});
}

// ---- loader ---------------------------------------------------------------------

namespace {
double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

struct Loader::Impl {
  struct Item {
    Batch batch;
    LoaderState after;
    std::exception_ptr error;
  };

  LoaderConfig cfg;
  int rank, world;
  std::unique_ptr<TokenDataset> ds;
  std::unique_ptr<SampleOrder> order;  // used by whoever produces (worker or next())
  int64_t pad_id = 0;
  LoaderState state;  // after the last batch handed out
  LoaderState ahead;  // after the last batch produced (the worker's)

  mutable std::mutex mu;
  std::condition_variable not_empty;  // the consumer waits on it
  std::condition_variable not_full;   // the producer waits on it
  std::deque<Item> queue;
  bool stop = false;
  std::thread worker;
  LoaderStats stats;

  Impl(const LoaderConfig& c, int r, int w) : cfg(c), rank(r), world(w) {
    cfg.validate();
    hbool_t threadsafe = 0;
    H5is_library_threadsafe(&threadsafe);
    if (!threadsafe && cfg.prefetch > 0) {  // other threads may call HDF5 too (checkpoints)
      core::log::warn0(
          "data: this HDF5 library is not thread-safe; the loader reads without its "
          "prefetch thread (prefetch = 0)");
      cfg.prefetch = 0;
    }
    SHARDLM_CHECK(w >= 1 && r >= 0 && r < w, core::DataError, "loader: rank {} of world {}", r, w);
    DatasetOptions o;
    o.dir = cfg.path;
    o.split = cfg.split;
    o.mode = cfg.mode;
    o.seq_len = cfg.seq_len;
    o.truncate = cfg.truncate;
    o.verify = cfg.verify;
    o.verify_rank = r;
    o.verify_ranks = w;
    o.tokenizer_hash = cfg.tokenizer_hash;
    o.cache_mb = cfg.cache_mb;
    ds = std::make_unique<TokenDataset>(o);
    bool docs = cfg.mode == "documents";
    uint64_t window = docs ? static_cast<uint64_t>(cfg.bucket_window) : 1;
    order =
        std::make_unique<SampleOrder>(ds->size(), static_cast<uint64_t>(cfg.seed), cfg.shuffle,
                                      window, window > 1 ? ds->lengths() : std::vector<uint32_t>{});
    pad_id = cfg.pad_id >= 0 ? cfg.pad_id : (ds->manifest().eos_id ? *ds->manifest().eos_id : 0);
    int64_t global = cfg.batch_size * world;
    SHARDLM_CHECK(cfg.last_batch == "pad" || global <= static_cast<int64_t>(ds->size()),
                  core::DataError,
                  "{}: split '{}' has {} samples, fewer than one global batch of {} x {} ranks "
                  "(use last_batch = \"pad\" or a smaller batch)",
                  ds->manifest().path(), cfg.split, ds->size(), cfg.batch_size, world);
    state.dataset = ds->fingerprint();
    state.split = cfg.split;
    state.mode = cfg.mode;
    state.truncate = docs ? cfg.truncate : "";
    state.seed = static_cast<uint64_t>(cfg.seed);
    state.seq_len = cfg.seq_len;
    state.shuffle = cfg.shuffle;
    state.bucket_window = static_cast<int64_t>(window);
    state.samples_per_epoch = static_cast<int64_t>(ds->size());
    state.world_size = world;
    ahead = state;
  }

  ~Impl() { halt(); }

  // Builds the batch at `s` and advances `s` past it.
  Batch produce(LoaderState& s) {
    auto t0 = std::chrono::steady_clock::now();
    const int64_t B = cfg.batch_size, T = cfg.seq_len, G = B * world, S = s.samples_per_epoch;
    if (cfg.last_batch == "drop" && s.position + G > S) s.epoch += 1, s.position = 0;
    auto positions = rank_positions(s.position, B, rank, world, S);
    std::vector<int64_t> samples(positions.size());
    int64_t longest = 0;
    for (size_t i = 0; i < positions.size(); ++i) {
      samples[i] =
          positions[i] < 0
              ? -1
              : static_cast<int64_t>(order->at(s.epoch, static_cast<uint64_t>(positions[i])));
      if (samples[i] >= 0)
        longest = std::max<int64_t>(longest, ds->length(static_cast<uint64_t>(samples[i])) - 1);
    }
    int64_t L = T;
    if (cfg.mode == "documents") {
      int64_t m = cfg.pad_to_multiple;
      L = std::min(T, std::max<int64_t>(1, (longest + m - 1) / m * m));
    }
    Batch b;
    b.input_ids = torch::empty({B, L}, torch::kInt64);
    b.targets = torch::empty({B, L}, torch::kInt64);
    b.loss_mask = torch::empty({B, L}, torch::kFloat32);
    b.attention_mask = torch::empty({B, L}, torch::kBool);
    b.tokens = fill_rows(*ds, samples, L, pad_id, Batch::kIgnoreIndex,
                         b.input_ids.data_ptr<int64_t>(), b.targets.data_ptr<int64_t>(),
                         b.loss_mask.data_ptr<float>(), b.attention_mask.data_ptr<bool>());
    b.sample_ids = std::move(samples);
    b.epoch = s.epoch;
    b.step = s.step;
    s.position += G;
    s.step += 1;
    s.world_size = world;
    if (s.position >= S) s.epoch += 1, s.position = 0;
    double dt = since(t0);
    std::lock_guard<std::mutex> lk(mu);
    stats.produce_seconds += dt;
    stats.produced += 1;
    return b;
  }

  void run() {
    core::h5_silence_errors();
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu);
        not_full.wait(lk,
                      [&] { return stop || static_cast<int64_t>(queue.size()) < cfg.prefetch; });
        if (stop) return;
      }
      Item it;
      try {
        it.batch = produce(ahead);
        it.after = ahead;
      } catch (...) {
        it.error = std::current_exception();
      }
      bool failed = it.error != nullptr, was_empty;
      {
        std::lock_guard<std::mutex> lk(mu);
        was_empty = queue.empty();
        queue.push_back(std::move(it));
      }
      if (was_empty) not_empty.notify_one();  // only then can the consumer be waiting
      if (failed) return;
    }
  }

  void start() {
    if (worker.joinable()) return;
    stop = false;
    worker = std::thread([this] { run(); });
  }

  void halt() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
    }
    not_full.notify_all();
    if (worker.joinable()) worker.join();
    std::lock_guard<std::mutex> lk(mu);
    stats.produced -= static_cast<int64_t>(queue.size());  // built but never handed out
    queue.clear();
    ahead = state;
  }

  void account(const Batch& b, double wait) {
    std::lock_guard<std::mutex> lk(mu);
    stats.batches += 1;
    stats.wait_seconds += wait;
    stats.last_wait_seconds = wait;
    stats.tokens += b.tokens;
    stats.slots += b.input_ids.numel();
  }

  Batch next() {
    if (cfg.prefetch == 0) {
      auto t0 = std::chrono::steady_clock::now();
      Batch b = produce(state);
      account(b, since(t0));
      return b;
    }
    start();
    auto t0 = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lk(mu);
    not_empty.wait(lk, [&] { return !queue.empty(); });
    if (queue.front().error)
      std::rethrow_exception(queue.front().error);  // stays: the loader is broken
    bool was_full = static_cast<int64_t>(queue.size()) >= cfg.prefetch;
    Item it = std::move(queue.front());
    queue.pop_front();
    lk.unlock();
    if (was_full) not_full.notify_one();  // only then can the producer be waiting
    state = it.after;
    account(it.batch, since(t0));
    return std::move(it.batch);
  }

  void check(const LoaderState& s) const {
    auto same = [&](const char* field, const auto& saved, const auto& here) {
      SHARDLM_CHECK(saved == here, core::DataError,
                    "loader state was saved with {} = {} but this loader has {} = {}; it cannot "
                    "continue that order",
                    field, fmt::format("{}", saved), field, fmt::format("{}", here));
    };
    same("dataset", s.dataset, state.dataset);
    same("split", s.split, state.split);
    same("mode", s.mode, state.mode);
    same("truncate", s.truncate, state.truncate);
    same("seed", s.seed, state.seed);
    same("seq_len", s.seq_len, state.seq_len);
    same("shuffle", s.shuffle, state.shuffle);
    same("bucket_window", s.bucket_window, state.bucket_window);
    same("samples_per_epoch", s.samples_per_epoch, state.samples_per_epoch);
    SHARDLM_CHECK(
        s.epoch >= 0 && s.step >= 0 && s.position >= 0 && s.position < s.samples_per_epoch,
        core::DataError, "loader state: epoch {} position {} step {} out of range ({} samples)",
        s.epoch, s.position, s.step, s.samples_per_epoch);
  }
};

Loader::Loader(const LoaderConfig& cfg, int rank, int world_size)
    : impl_(std::make_unique<Impl>(cfg, rank, world_size)) {}
Loader::~Loader() = default;

Batch Loader::next() {
  return impl_->next();
}

LoaderState Loader::state() const {
  LoaderState s = impl_->state;
  s.world_size = impl_->world;
  return s;
}

void Loader::load_state(const LoaderState& s) {
  impl_->check(s);
  impl_->halt();
  impl_->state = s;
  impl_->state.world_size = impl_->world;
  impl_->ahead = impl_->state;
}

int64_t Loader::samples_per_epoch() const {
  return impl_->state.samples_per_epoch;
}

int64_t Loader::steps_per_epoch() const {
  int64_t g = impl_->cfg.batch_size * impl_->world, s = samples_per_epoch();
  return impl_->cfg.last_batch == "drop" ? s / g : (s + g - 1) / g;
}

LoaderStats Loader::stats() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->stats;
}

const Manifest& Loader::manifest() const {
  return impl_->ds->manifest();
}
const LoaderConfig& Loader::config() const {
  return impl_->cfg;
}

}  // namespace shardlm::data
