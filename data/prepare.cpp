// Corpus preparation (see prepare.h for the two stages and the cache rules).
#include "data/prepare.h"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>

#include "core/comm.h"
#include "core/env.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/shard.h"
#include "data/thread_pool.h"

namespace fs = std::filesystem;

namespace shardlm::data {

// ---- config ---------------------------------------------------------------------

PrepareConfig PrepareConfig::from(const core::ConfigSection& s) {
  PrepareConfig c;
  c.inputs = s.get("inputs", c.inputs);
  c.output = s.get("output", c.output);
  c.tokenizer = s.get("tokenizer", c.tokenizer);
  c.reader = ReaderConfig::from(s);
  c.clean = CleanConfig::from(s.section("clean"));
  c.val_fraction = s.get("val_fraction", c.val_fraction);
  c.test_fraction = s.get("test_fraction", c.test_fraction);
  c.shard_mb = s.get("shard_mb", c.shard_mb);
  c.chunk_tokens = s.get("chunk_tokens", c.chunk_tokens);
  c.compression = s.get("compression", c.compression);
  c.append_eos = s.get("append_eos", c.append_eos);
  c.threads = s.get("threads", c.threads);
  c.batch_mb = s.get("batch_mb", c.batch_mb);
  c.progress = s.get("progress", c.progress);
  c.force = s.get("force", c.force);
  return c;
}

void PrepareConfig::validate() const {
  using core::config_require;
  config_require(!inputs.empty(), "inputs", "[]", "at least one file, directory or glob");
  config_require(!output.empty(), "output", output, "a directory");
  reader.validate();
  try {
    clean.validate();
  } catch (const core::ConfigError& e) {
    throw core::ConfigError("", "clean." + e.key(), e.value(), e.expected());
  }
  config_require(val_fraction >= 0 && val_fraction < 1, "val_fraction",
                 std::to_string(val_fraction), "a fraction in [0, 1)");
  config_require(test_fraction >= 0 && val_fraction + test_fraction < 1, "test_fraction",
                 std::to_string(test_fraction), "a fraction in [0, 1) with val + test < 1");
  config_require(shard_mb > 0, "shard_mb", std::to_string(shard_mb), "a size in MiB > 0");
  config_require(chunk_tokens >= 64 && chunk_tokens <= (1 << 24), "chunk_tokens",
                 std::to_string(chunk_tokens), "an integer in [64, 16777216]");
  config_require(compression >= 0 && compression <= 9, "compression", std::to_string(compression),
                 "a deflate level 0..9 (0 = none)");
  config_require(threads >= 0, "threads", std::to_string(threads), "an integer >= 0 (0 = auto)");
  config_require(batch_mb >= 1, "batch_mb", std::to_string(batch_mb), "an integer >= 1");
}

nlohmann::json PrepareConfig::to_json() const {
  return {{"inputs", inputs},
          {"reader", reader.to_json()},
          {"clean", clean.to_json()},
          {"val_fraction", val_fraction},
          {"test_fraction", test_fraction},
          {"shard_mb", shard_mb},
          {"chunk_tokens", chunk_tokens},
          {"compression", compression},
          {"append_eos", append_eos}};
}

Encoder encoder_for(const Tokenizer& tok) {
  Encoder e;
  e.hash = tok.hash();
  e.vocab_size = tok.vocab_size();
  e.eos_id = tok.eos_id();
  e.encode_batch = [tok](const std::vector<std::string>& texts, int threads) {
    return tok.encode_batch(texts, threads, false);
  };
  return e;
}

const char* split_of(const Hash128& key, double val_fraction, double test_fraction) {
  // The top 53 bits as a uniform number in [0, 1); the dedup key's other bits.
  double u = static_cast<double>(key.hi >> 11) * 0x1.0p-53;
  if (u < test_fraction) return "test";
  if (u < test_fraction + val_fraction) return "val";
  return "train";
}

// ---- ranks ----------------------------------------------------------------------

namespace {

// Every rank of the job (MPI_COMM_WORLD), or a world of one when MPI is not running.
core::MpiComm world_comm() {
  return core::MpiSession::active() ? core::MpiComm(MPI_COMM_WORLD) : core::MpiComm::single();
}

// Runs f on every rank; when it throws on any rank, every rank throws (the failing
// ranks their own error), so that no rank waits forever for another.
template <class F>
void on_all_ranks(core::Comm& comm, const char* stage, F&& f) {
  std::exception_ptr error;
  try {
    f();
  } catch (...) {
    error = std::current_exception();
  }
  if (core::any_rank(comm, error != nullptr) && !error)
    SHARDLM_FAIL(core::DataError, "prepare: {} failed on another rank (see its message)", stage);
  if (error) std::rethrow_exception(error);
}

void bcast_json(core::Comm& comm, nlohmann::json& j) {
  if (comm.size() == 1) return;
  std::string s = core::broadcast_string(comm, comm.rank() == 0 ? j.dump() : std::string());
  if (comm.rank() != 0) j = nlohmann::json::parse(s);
}

// ---- the plan -------------------------------------------------------------------

struct FilePlan {
  InputFile in;
  std::string key;  // cache file stem
  bool cached = false;
  int rank = 0;  // who tokenises it (when not cached)
};

std::string absolute(const std::string& p) {
  return fs::absolute(p).lexically_normal().string();
}

// Everything that makes one file's tokens what they are, besides the file.
std::string tokenize_key(const PrepareConfig& cfg, const Encoder& enc) {
  nlohmann::json clean = cfg.clean.to_json();
  clean.erase("dedup");  // applied at assembly
  nlohmann::json j = {{"tokenizer", enc.hash},
                      {"vocab_size", enc.vocab_size},
                      {"eos", enc.eos_id ? int64_t(*enc.eos_id) : -1},
                      {"reader", cfg.reader.to_json()},
                      {"clean", clean},
                      {"append_eos", cfg.append_eos},
                      {"cache_format", 1}};
  return hex64(hash64(j.dump()));
}

nlohmann::json read_json_file(const fs::path& p) {
  std::ifstream in(p);
  if (!in.good()) return nullptr;
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    return nullptr;  // an unreadable sidecar only means "not cached"
  }
}

void write_json_file(const fs::path& p, const nlohmann::json& j) {
  core::write_file_atomic<core::DataError>(p.string(), j.dump(2) + "\n");
}

bool cache_valid(const fs::path& cache_dir, const FilePlan& f, const std::string& tkey) {
  auto side = read_json_file(cache_dir / (f.key + ".json"));
  if (!side.is_object()) return false;
  try {
    if (side.at("path") != absolute(f.in.path) || side.at("size") != f.in.size ||
        side.at("mtime_ns") != f.in.mtime_ns || side.at("tokenize_key") != tkey)
      return false;
    auto info = ShardInfo::from_json(side.at("shard"), "cache");
    fs::path h5 = cache_dir / (f.key + ".h5");
    return fs::exists(h5) && fs::file_size(h5) == info.bytes;
  } catch (const std::exception&) {
    return false;
  }
}

// The whole output's key: the tokenise key, each file and its state, and the
// assembly settings.
std::string assembly_key(const PrepareConfig& cfg, const std::string& tkey,
                         const std::vector<FilePlan>& files) {
  nlohmann::json j = {{"tokenize_key", tkey},
                      {"dedup", cfg.clean.dedup},
                      {"val_fraction", cfg.val_fraction},
                      {"test_fraction", cfg.test_fraction},
                      {"shard_mb", cfg.shard_mb},
                      {"chunk_tokens", cfg.chunk_tokens},
                      {"compression", cfg.compression}};
  for (const auto& f : files) j["files"].push_back({absolute(f.in.path), f.in.size, f.in.mtime_ns});
  return hex64(hash64(j.dump()));
}

bool shards_present(const Manifest& m) {
  for (const auto& [name, split] : m.splits)
    for (const auto& sh : split.shards) {
      fs::path p = fs::path(m.dir) / sh.file;
      std::error_code ec;
      if (!fs::exists(p) || fs::file_size(p, ec) != sh.bytes) return false;
    }
  return true;
}

std::string list_some(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < 4; ++i)
    s += (i ? ", " : "") + fs::path(names[i]).filename().string();
  if (names.size() > 4) s += fmt::format(", ... {} more", names.size() - 4);
  return s;
}

// Why the output must be (re)built, for the log.
std::string explain(const PrepareConfig& cfg, const Encoder& enc,
                    const std::vector<FilePlan>& files, const std::optional<Manifest>& old) {
  if (cfg.force) return "forced: preparing everything again";
  if (!old) return "no manifest yet: preparing everything";
  if (old->tokenizer_hash != enc.hash)
    return fmt::format("tokenizer changed (hash {} -> {}): preparing everything again",
                       old->tokenizer_hash, enc.hash);
  const auto& oc = old->config;
  if (oc.value("reader", nlohmann::json()) != cfg.reader.to_json() ||
      oc.value("clean", nlohmann::json()) != cfg.clean.to_json() ||
      oc.value("append_eos", !cfg.append_eos) != cfg.append_eos)
    return "reading or cleaning config changed: preparing everything again";
  std::set<std::string> before;
  std::vector<std::string> changed, removed;
  for (const auto& in : old->inputs) before.insert(in.value("path", ""));
  for (const auto& f : files)
    if (!f.cached) changed.push_back(f.in.path);
  std::set<std::string> now;
  for (const auto& f : files) now.insert(absolute(f.in.path));
  for (const auto& p : before)
    if (!now.count(p)) removed.push_back(p);
  if (!changed.empty() || !removed.empty()) {
    std::string s;
    if (!changed.empty())
      s += fmt::format("{} input file(s) new or changed ({})", changed.size(), list_some(changed));
    if (!removed.empty())
      s += fmt::format("{}{} removed ({})", s.empty() ? "" : ", ", removed.size(),
                       list_some(removed));
    return s + fmt::format(": tokenising those, re-using {} cached, assembling the shards again",
                           files.size() - changed.size());
  }
  if (!shards_present(*old))
    return "shard files missing or changed: assembling them again from the cache";
  return "split or shard settings changed: assembling the shards again from the cache";
}

// ---- stage 1: tokenise one file into its cache ----------------------------------

int threads_per_rank(const PrepareConfig& cfg, const core::Comm& comm) {
  if (cfg.threads > 0) return static_cast<int>(cfg.threads);
  int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, hw / comm.size());
}

// Runs body(thread, i) for i in [0, n) on the data/ thread pool (dynamic schedule).
template <class F>
void parallel_for(int threads, size_t n, F&& body) {
  size_t t = std::min<size_t>(static_cast<size_t>(threads), std::max<size_t>(1, n));
  std::atomic<size_t> next{0};
  parallel_run(t, [&](size_t tid) {
    for (size_t i; (i = next.fetch_add(1)) < n;) body(static_cast<int>(tid), i);
  });
}

struct TokenizeTotals {
  uint64_t bytes_done = 0, tokens = 0;
};

// Reads an input's documents in batches of about `limit` bytes on its own
// thread, one batch ahead, so that reading overlaps cleaning and tokenising.
class BatchReader {
 public:
  struct Batch {
    std::vector<std::string> docs;
    std::vector<int64_t> invalid;  // per document: invalid UTF-8 the reader repaired
    uint64_t consumed = 0;         // bytes of the file read so far
  };

  BatchReader(const InputFile& in, const ReaderConfig& cfg, size_t limit)
      : reader_(in, cfg), limit_(limit), thread_([this] { run(); }) {}
  ~BatchReader() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // The next batch; false at the end of the file. Rethrows a read error.
  bool next(Batch& out) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return !queue_.empty() || done_; });
    if (queue_.empty()) {
      if (error_) std::rethrow_exception(error_);
      return false;
    }
    out = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
    return true;
  }
  // Valid once next() returned false.
  int64_t skipped_records() const { return reader_.skipped_records(); }

 private:
  void run() {
    try {
      for (bool more = true; more;) {
        Batch b;
        size_t bytes = 0;
        std::string doc;
        while (bytes < limit_ && (more = reader_.next(doc))) {
          bytes += doc.size();
          b.docs.push_back(std::move(doc));
          b.invalid.push_back(reader_.last_invalid());
        }
        b.consumed = reader_.bytes_consumed();
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || queue_.size() < 2; });
        if (stop_) break;
        if (!b.docs.empty()) queue_.push_back(std::move(b));
        cv_.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      error_ = std::current_exception();
    }
    std::lock_guard<std::mutex> lk(mu_);
    done_ = true;
    cv_.notify_all();
  }

  DocumentReader reader_;
  size_t limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  bool stop_ = false, done_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: starts after the members it uses
};

nlohmann::json tokenize_file(const PrepareConfig& cfg, const Encoder& enc, const FilePlan& f,
                             const fs::path& cache_dir, const std::string& tkey, int threads,
                             TokenizeTotals& totals, core::ProgressBar& progress) {
  ShardWriterOptions opts;
  opts.dtype = dtype_for_vocab(enc.vocab_size);
  opts.chunk_tokens = static_cast<uint64_t>(cfg.chunk_tokens);
  opts.with_hashes = true;
  opts.vocab_size = enc.vocab_size;
  opts.tokenizer_hash = enc.hash;
  opts.split = "cache";
  fs::path h5 = cache_dir / (f.key + ".h5");
  std::string tmp = h5.string() + ".tmp";
  ShardWriter writer(tmp, opts);
  CleanStats stats;
  uint64_t tokens = 0;
  BatchReader reader(f.in, cfg.reader, static_cast<size_t>(cfg.batch_mb) << 20);
  BatchReader::Batch batch;
  while (reader.next(batch)) {
    size_t n = batch.docs.size();
    std::vector<CleanStats> st(static_cast<size_t>(threads));
    std::vector<char> keep(n);
    std::vector<Hash128> keys(n);
    parallel_for(threads, n, [&](int t, size_t i) {
      keep[i] = clean_text(batch.docs[i], cfg.clean, st[static_cast<size_t>(t)],
                           batch.invalid[i]) == CleanOutcome::kKept;
      if (keep[i]) keys[i] = hash128(batch.docs[i]);
    });
    for (auto& s : st) stats += s;
    std::vector<std::string> texts;
    std::vector<Hash128> kept_keys;
    for (size_t i = 0; i < n; ++i)
      if (keep[i]) texts.push_back(std::move(batch.docs[i])), kept_keys.push_back(keys[i]);
    auto ids = enc.encode_batch(texts, threads);
    SHARDLM_CHECK(ids.size() == texts.size(), core::DataError,
                  "tokenizer returned {} encodings for {} documents", ids.size(), texts.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      if (cfg.append_eos && enc.eos_id) ids[i].push_back(*enc.eos_id);
      for (uint32_t id : ids[i])
        SHARDLM_CHECK(id < enc.vocab_size, core::DataError,
                      "{}: the tokenizer produced id {} >= its vocab_size {}", f.in.path, id,
                      enc.vocab_size);
      writer.add(ids[i], &kept_keys[i]);
      tokens += ids[i].size();
      totals.tokens += ids[i].size();
    }
    const double mb = static_cast<double>(totals.bytes_done + batch.consumed) / 1e6;
    const double secs = std::max(progress.seconds(), 1e-9);
    progress.update(mb, fmt::format("{:.1f} MB | {:.2f} MB/s | {} tok/s", mb, mb / secs,
                                    core::ProgressBar::si(totals.tokens / secs)));
  }
  ShardInfo info = writer.close(f.key + ".h5");
  core::commit_file<core::DataError>(tmp, h5.string());
  totals.bytes_done += f.in.size;
  nlohmann::json side = {{"path", absolute(f.in.path)},
                         {"size", f.in.size},
                         {"mtime_ns", f.in.mtime_ns},
                         {"tokenize_key", tkey},
                         {"shard", info.to_json()},
                         {"stats", stats.to_json()},
                         {"bad_records_skipped", reader.skipped_records()},
                         {"tokens", tokens}};
  write_json_file(cache_dir / (f.key + ".json"), side);
  return side;
}

// ---- stage 2: assemble the shards -----------------------------------------------

struct SplitOut {
  std::string name;
  std::unique_ptr<ShardWriter> writer;
  std::string current;  // relative name of the open shard
  SplitInfo info;
};

struct AssemblyResult {
  std::map<std::string, SplitInfo> splits;
  std::vector<std::string> tmp_files;  // written as <name>.tmp, to be renamed
  int64_t duplicates = 0;
};

AssemblyResult assemble(const PrepareConfig& cfg, const Encoder& enc,
                        const std::vector<FilePlan>& files, const fs::path& cache_dir,
                        const fs::path& out_dir) {
  AssemblyResult res;
  ShardWriterOptions opts;
  opts.dtype = dtype_for_vocab(enc.vocab_size);
  opts.chunk_tokens = static_cast<uint64_t>(cfg.chunk_tokens);
  opts.compression = static_cast<int>(cfg.compression);
  opts.vocab_size = enc.vocab_size;
  opts.tokenizer_hash = enc.hash;
  const uint64_t bytes_per_token = opts.dtype == TokenDtype::kUInt16 ? 2 : 4;
  const uint64_t shard_tokens =
      std::max<uint64_t>(1, static_cast<uint64_t>(cfg.shard_mb * (1 << 20)) / bytes_per_token);
  std::vector<SplitOut> outs(3);
  const char* names[3] = {"train", "val", "test"};
  for (int i = 0; i < 3; ++i) outs[static_cast<size_t>(i)].name = names[i];
  auto close_shard = [&](SplitOut& o) {
    ShardInfo info = o.writer->close(o.current);
    o.writer.reset();
    o.info.tokens += info.tokens;
    o.info.docs += info.docs;
    o.info.shards.push_back(info);
  };
  std::unordered_set<Hash128, Hash128Hasher> seen;
  std::vector<uint32_t> block;
  for (const auto& f : files) {
    ShardReader r((cache_dir / (f.key + ".h5")).string());
    auto offsets = r.doc_offsets();
    auto keys = r.doc_hashes();
    uint64_t block_start = 0, block_end = 0;  // tokens held in `block`
    for (uint64_t d = 0; d < r.docs(); ++d) {
      if (cfg.clean.dedup && !seen.insert(keys[d]).second) {
        ++res.duplicates;
        continue;
      }
      uint64_t a = offsets[d], b = offsets[d + 1];
      if (b > block_end) {  // read ahead in blocks of >= 4M tokens
        block_start = a;
        block_end = std::min(r.tokens(), std::max(b, a + (4u << 20)));
        block.resize(block_end - block_start);
        r.read(block_start, block_end - block_start, block.data());
      }
      const char* s = split_of(keys[d], cfg.val_fraction, cfg.test_fraction);
      auto& o = *std::find_if(outs.begin(), outs.end(), [&](auto& x) { return x.name == s; });
      if (!o.writer) {
        o.current = fmt::format("{}-{:05}.h5", o.name, o.info.shards.size());
        std::string tmp = (out_dir / (o.current + ".tmp")).string();
        opts.split = o.name;
        o.writer = std::make_unique<ShardWriter>(tmp, opts);
        res.tmp_files.push_back(o.current);
      }
      o.writer->add(block.data() + (a - block_start), b - a);
      if (o.writer->tokens() >= shard_tokens) close_shard(o);
    }
  }
  for (auto& o : outs) {
    if (o.writer) close_shard(o);
    res.splits[o.name] = o.info;
  }
  return res;
}

// Replaces the old output by the new one: no manifest while shards are swapped,
// so a crash in between leaves "not prepared" rather than a mismatched dataset.
void commit_output(const fs::path& out_dir, const std::optional<Manifest>& old,
                   const AssemblyResult& res, const Manifest& m) {
  std::error_code ec;
  fs::remove(out_dir / Manifest::kFileName, ec);
  std::set<std::string> fresh(res.tmp_files.begin(), res.tmp_files.end());
  if (old)
    for (const auto& [n, s] : old->splits)
      for (const auto& sh : s.shards)
        if (!fresh.count(sh.file)) fs::remove(out_dir / sh.file, ec);
  for (const auto& name : res.tmp_files)
    core::commit_file<core::DataError>((out_dir / (name + ".tmp")).string(),
                                       (out_dir / name).string());
  m.save(out_dir.string());
}

void remove_stale_cache(const fs::path& cache_dir, const std::vector<FilePlan>& files) {
  std::set<std::string> keep;
  for (const auto& f : files) keep.insert(f.key);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(cache_dir, ec)) {
    std::string stem = e.path().filename().string();
    stem = stem.substr(0, stem.find('.'));
    if (!keep.count(stem)) fs::remove(e.path(), ec);
  }
}

}  // namespace

// ---- prepare ----------------------------------------------------------------------

PrepareResult prepare(const PrepareConfig& cfg, const Encoder& enc) {
  cfg.validate();
  SHARDLM_CHECK(enc.vocab_size > 0 && enc.encode_batch, core::DataError,
                "prepare: the tokenizer is not usable (vocab_size {})", enc.vocab_size);
  auto t0 = std::chrono::steady_clock::now();
  core::MpiComm comm = world_comm();
  fs::path out_dir = cfg.output, cache_dir = out_dir / "cache";
  std::string tkey = tokenize_key(cfg, enc);
  std::vector<FilePlan> files;
  std::optional<Manifest> old;
  PrepareResult result;

  // Rank 0 decides what to do; every rank follows the same plan.
  nlohmann::json plan;
  on_all_ranks(comm, "planning", [&] {
    for (auto& in : expand_inputs(cfg.inputs)) {
      FilePlan f;
      f.in = in;
      f.key = hex64(hash64(absolute(in.path) + "|" + tkey));
      files.push_back(f);
    }
    if (comm.rank() != 0) return;
    fs::create_directories(cache_dir);
    if (Manifest::exists(out_dir.string()) && !cfg.force) {
      try {
        old = Manifest::load(out_dir.string());
      } catch (const core::DataError& e) {
        core::log::warn("prepare: ignoring the old manifest: {}", e.what());
      }
    }
    std::string akey = assembly_key(cfg, tkey, files);
    for (auto& f : files) f.cached = !cfg.force && cache_valid(cache_dir, f, tkey);
    bool up = old && old->cache_key == akey && shards_present(*old);
    plan["up_to_date"] = up;
    plan["reason"] = up ? "up to date" : explain(cfg, enc, files, old);
    plan["assembly_key"] = akey;
    for (auto& f : files) plan["cached"].push_back(f.cached);
  });
  bcast_json(comm, plan);
  result.reason = plan["reason"].get<std::string>();
  if (plan["up_to_date"].get<bool>()) {
    core::log::info0("prepare: {} is up to date (same inputs, tokenizer and config); nothing to do",
                     out_dir.string());
    result.up_to_date = true;
    result.manifest = Manifest::load(out_dir.string());
    result.files_cached = static_cast<int64_t>(files.size());
    return result;
  }
  core::log::info0("prepare: {}", result.reason);

  // Stage 1: the files whose cache is missing or stale, divided among the ranks
  // by size (largest first to the least loaded rank).
  std::vector<size_t> todo;
  for (size_t i = 0; i < files.size(); ++i) {
    files[i].cached = plan["cached"][i].get<bool>();
    if (!files[i].cached) todo.push_back(i);
  }
  std::stable_sort(todo.begin(), todo.end(),
                   [&](size_t a, size_t b) { return files[a].in.size > files[b].in.size; });
  std::vector<uint64_t> load(static_cast<size_t>(comm.size()), 0);
  uint64_t my_bytes = 0;
  for (size_t i : todo) {
    auto r = std::min_element(load.begin(), load.end()) - load.begin();
    files[i].rank = static_cast<int>(r);
    load[static_cast<size_t>(r)] += files[i].in.size + 1;
    if (r == comm.rank()) my_bytes += files[i].in.size;
    result.input_mb += static_cast<double>(files[i].in.size) / 1e6;
  }
  result.files_tokenized = static_cast<int64_t>(todo.size());
  result.files_cached = static_cast<int64_t>(files.size() - todo.size());
  auto t1 = std::chrono::steady_clock::now();
  on_all_ranks(comm, "tokenising", [&] {
    fs::create_directories(cache_dir);
    int threads = threads_per_rank(cfg, comm);
    core::ProgressBar progress(
        {comm.size() > 1 ? fmt::format("tokenise r{}", comm.rank()) : "tokenise",
         static_cast<double>(my_bytes) / 1e6, cfg.progress && comm.rank() == 0 && my_bytes > 0});
    TokenizeTotals totals;
    int mine = 0;
    for (size_t i : todo) {
      if (files[i].rank != comm.rank()) continue;
      tokenize_file(cfg, enc, files[i], cache_dir, tkey, threads, totals, progress);
      ++mine;
    }
    result.files_tokenized_here = mine;
    progress.finish();
    if (mine > 0)
      core::log::info(
          "prepare: tokenised {} file(s), {:.1f} MB, {} tokens in {:.1f} s ({:.2f} MB/s, {:.0f} "
          "tokens/s, {} threads)",
          mine, static_cast<double>(totals.bytes_done) / 1e6, totals.tokens, progress.seconds(),
          static_cast<double>(totals.bytes_done) / 1e6 / progress.seconds(),
          static_cast<double>(totals.tokens) / progress.seconds(), threads);
  });

  auto ta = std::chrono::steady_clock::now();
  result.tokenize_seconds = std::chrono::duration<double>(ta - t1).count();

  // Stage 2 (rank 0): assemble, then swap in the new shards and manifest.
  on_all_ranks(comm, "assembling", [&] {
    if (comm.rank() != 0) return;
    AssemblyResult res = assemble(cfg, enc, files, cache_dir, out_dir);
    Manifest m;
    m.dir = out_dir.string();
    m.tokenizer_hash = enc.hash;
    m.vocab_size = enc.vocab_size;
    m.eos_id = enc.eos_id;
    m.dtype = dtype_for_vocab(enc.vocab_size);
    m.cache_key = plan["assembly_key"].get<std::string>();
    m.config = cfg.to_json();
    m.splits = res.splits;
    CleanStats total;
    int64_t skipped = 0;
    for (const auto& f : files) {
      auto side = read_json_file(cache_dir / (f.key + ".json"));
      SHARDLM_CHECK(side.is_object(), core::DataError, "prepare: cache record {} is missing",
                    (cache_dir / (f.key + ".json")).string());
      total += CleanStats::from_json(side.at("stats"));
      skipped += side.value("bad_records_skipped", int64_t{0});
      m.inputs.push_back({{"path", side.at("path")},
                          {"size", f.in.size},
                          {"mtime_ns", f.in.mtime_ns},
                          {"cache", f.key},
                          {"documents", side.at("shard").at("documents")},
                          {"tokens", side.at("shard").at("tokens")}});
    }
    total.docs_duplicate = res.duplicates;
    double assemble_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - ta).count();
    m.report = {{"clean", total.to_json()},
                {"bad_records_skipped", skipped},
                {"documents_kept", total.docs_out - res.duplicates},
                {"reason", result.reason},
                {"files_tokenized", result.files_tokenized},
                {"files_cached", result.files_cached},
                {"input_mb_tokenized", result.input_mb},
                {"tokenize_seconds", result.tokenize_seconds},
                {"assemble_seconds", assemble_s}};
    result.assemble_seconds = assemble_s;
    commit_output(out_dir, old, res, m);
    remove_stale_cache(cache_dir, files);
    core::log::info(
        "prepare: {} documents read, {} kept ({} invalid UTF-8 dropped, {} too short, {} "
        "duplicates; {} with invalid UTF-8 repaired, {} NFC-changed, {} control chars removed)",
        total.docs_in, total.docs_out - res.duplicates, total.docs_rejected_utf8,
        total.docs_too_short, res.duplicates, total.docs_invalid_utf8 - total.docs_rejected_utf8,
        total.docs_nfc_changed, total.control_removed);
    for (const auto& [name, s] : m.splits)
      core::log::info("prepare: {:<5} {:>10} tokens {:>8} documents in {} shard(s)", name, s.tokens,
                      s.docs, s.shards.size());
  });
  result.manifest = Manifest::load(out_dir.string());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace shardlm::data
