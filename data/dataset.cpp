// A split as numbered samples (see dataset.h).
#include "data/dataset.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <list>
#include <unordered_map>

#include "core/error.h"

namespace fs = std::filesystem;

namespace shardlm::data {

// ---- chunk cache -------------------------------------------------------------------

// Whole HDF5 chunks of /tokens in the file's type, least recently used evicted
// first once more than `budget` bytes are held.
struct TokenDataset::ChunkCache {
  struct Entry {
    uint64_t key;
    std::vector<uint8_t> bytes;
  };
  uint64_t budget, held = 0, hits = 0, misses = 0;
  std::list<Entry> lru;  // most recent first
  std::unordered_map<uint64_t, std::list<Entry>::iterator> index;

  explicit ChunkCache(uint64_t b) : budget(b) {}

  const std::vector<uint8_t>& get(const ShardReader& r, size_t shard, uint64_t chunk) {
    uint64_t key = (static_cast<uint64_t>(shard) << 40) | chunk;
    if (auto it = index.find(key); it != index.end()) {
      ++hits;
      lru.splice(lru.begin(), lru, it->second);
      return it->second->bytes;
    }
    ++misses;
    uint64_t C = r.chunk_tokens(), a = chunk * C, n = std::min(C, r.tokens() - a);
    size_t width = r.dtype() == TokenDtype::kUInt16 ? 2 : 4;
    lru.push_front(Entry{key, std::vector<uint8_t>(n * width)});
    try {
      r.read_native(a, n, lru.front().bytes.data());
    } catch (...) {
      lru.pop_front();
      throw;
    }
    index[key] = lru.begin();
    held += lru.front().bytes.size();
    while (held > budget && lru.size() > 1) {
      held -= lru.back().bytes.size();
      index.erase(lru.back().key);
      lru.pop_back();
    }
    return lru.front().bytes;
  }
};

// ---- dataset ------------------------------------------------------------------------

TokenDataset::TokenDataset(const DatasetOptions& opts)
    : opts_(opts), manifest_(Manifest::load(opts.dir)) {
  SHARDLM_CHECK(opts_.mode == "packed" || opts_.mode == "documents", core::DataError,
                "unknown loader mode '{}' (expected packed or documents)", opts_.mode);
  SHARDLM_CHECK(opts_.seq_len >= 1, core::DataError, "seq_len must be >= 1, got {}", opts_.seq_len);
  if (!opts_.tokenizer_hash.empty()) check_tokenizer(manifest_, opts_.tokenizer_hash);
  const SplitInfo& split = manifest_.split(opts_.split);
  SHARDLM_CHECK(split.tokens > 0 && !split.shards.empty(), core::DataError,
                "{}: split '{}' is empty (0 tokens); prepare more data or choose another split "
                "(val_fraction / test_fraction)",
                manifest_.path(), opts_.split);
  const uint64_t T = static_cast<uint64_t>(opts_.seq_len);
  shard_start_.push_back(0);
  for (size_t i = 0; i < split.shards.size(); ++i) {
    const ShardInfo& info = split.shards[i];
    std::string path = (fs::path(opts_.dir) / info.file).string();
    bool mine = static_cast<int>(i % static_cast<size_t>(std::max(1, opts_.verify_ranks))) ==
                opts_.verify_rank;
    verify_shard(path, info, opts_.verify == "all" || (opts_.verify == "full" && mine));
    auto r = std::make_unique<ShardReader>(path);
    SHARDLM_CHECK(r->tokens() == info.tokens && r->docs() == info.docs, core::DataError,
                  "shard {} holds {} tokens and {} documents but the manifest says {} and {}", path,
                  r->tokens(), r->docs(), info.tokens, info.docs);
    SHARDLM_CHECK(r->tokenizer_hash() == manifest_.tokenizer_hash, core::DataError,
                  "shard {} was written with tokenizer {} but the manifest says {}", path,
                  r->tokenizer_hash(), manifest_.tokenizer_hash);
    if (opts_.mode == "documents") {
      auto off = r->doc_offsets();
      uint64_t base = shard_start_.back();
      for (size_t d = 0; d + 1 < off.size(); ++d) {
        uint64_t len = off[d + 1] - off[d];
        uint64_t pieces = opts_.truncate == "split" && len > T + 1 ? (len - 1 + T - 1) / T : 1;
        for (uint64_t k = 0; k < pieces; ++k) {
          uint64_t a = off[d] + k * T, n = std::min(len - k * T, T + 1);
          if (n < 2) continue;
          starts_.push_back(base + a);
          lengths_.push_back(static_cast<uint32_t>(n));
        }
      }
    }
    shard_start_.push_back(shard_start_.back() + r->tokens());
    shards_.push_back(std::move(r));
  }
  n_tokens_ = shard_start_.back();
  if (opts_.cache_mb > 0)
    cache_ = std::make_unique<ChunkCache>(static_cast<uint64_t>(opts_.cache_mb) << 20);
  if (opts_.mode == "packed") {
    SHARDLM_CHECK(n_tokens_ >= T + 1, core::DataError,
                  "{}: split '{}' has {} tokens, fewer than one window of seq_len + 1 = {}",
                  manifest_.path(), opts_.split, n_tokens_, T + 1);
    n_samples_ = (n_tokens_ - 1) / T;
  } else {
    n_samples_ = starts_.size();
    SHARDLM_CHECK(n_samples_ > 0, core::DataError,
                  "{}: split '{}' has no document of 2 or more tokens", manifest_.path(),
                  opts_.split);
  }
}

TokenDataset::~TokenDataset() = default;

uint32_t TokenDataset::length(uint64_t i) const {
  return opts_.mode == "packed" ? static_cast<uint32_t>(opts_.seq_len + 1) : lengths_[i];
}

// Tokens [start, start + n) of the split's stream, across shard boundaries.
void TokenDataset::read_stream(uint64_t start, uint64_t n, uint32_t* out) const {
  auto it = std::upper_bound(shard_start_.begin(), shard_start_.end(), start);
  size_t s = static_cast<size_t>(it - shard_start_.begin()) - 1;
  while (n > 0) {
    SHARDLM_CHECK(s < shards_.size(), core::DataError, "token {} is past the end of split '{}'",
                  start, opts_.split);
    const ShardReader& r = *shards_[s];
    uint64_t local = start - shard_start_[s];
    uint64_t take = std::min(n, r.tokens() - local);
    if (!cache_) {
      r.read(local, take, out);
    } else {  // chunk by chunk through the cache
      take = std::min(take, r.chunk_tokens() - local % r.chunk_tokens());
      const auto& bytes = cache_->get(r, s, local / r.chunk_tokens());
      uint64_t off = local % r.chunk_tokens();
      if (r.dtype() == TokenDtype::kUInt16) {
        const auto* src = reinterpret_cast<const uint16_t*>(bytes.data()) + off;
        std::copy(src, src + take, out);
      } else {
        std::memcpy(out, bytes.data() + off * 4, take * 4);
      }
    }
    out += take, start += take, n -= take;
    if (start == shard_start_[s + 1]) ++s;
  }
}

uint64_t TokenDataset::cache_hits() const {
  return cache_ ? cache_->hits : 0;
}
uint64_t TokenDataset::cache_misses() const {
  return cache_ ? cache_->misses : 0;
}

void TokenDataset::read(uint64_t i, uint32_t* out) const {
  SHARDLM_CHECK(i < n_samples_, core::DataError, "sample {} outside split '{}' of {} samples", i,
                opts_.split, n_samples_);
  if (opts_.mode == "packed")
    read_stream(i * static_cast<uint64_t>(opts_.seq_len), static_cast<uint64_t>(opts_.seq_len) + 1,
                out);
  else
    read_stream(starts_[i], lengths_[i], out);
}

int64_t fill_rows(const TokenDataset& ds, const std::vector<int64_t>& samples, int64_t L,
                  int64_t pad_id, int64_t ignore_index, int64_t* ids, int64_t* targets,
                  float* loss_mask, bool* attention) {
  std::vector<uint32_t> buf(static_cast<size_t>(ds.options().seq_len) + 1);
  int64_t real = 0;
  for (size_t b = 0; b < samples.size(); ++b) {
    int64_t* row_ids = ids + b * L;
    int64_t* row_tg = targets + b * L;
    float* row_loss = loss_mask + b * L;
    bool* row_att = attention + b * L;
    int64_t k = 0;  // real inputs in this row
    if (samples[b] >= 0) {
      auto i = static_cast<uint64_t>(samples[b]);
      uint32_t n = ds.length(i);
      ds.read(i, buf.data());
      k = std::min<int64_t>(L, n - 1);
      for (int64_t t = 0; t < k; ++t) {
        row_ids[t] = buf[static_cast<size_t>(t)];
        row_tg[t] = buf[static_cast<size_t>(t) + 1];
      }
    }
    std::fill(row_loss, row_loss + k, 1.0f);
    std::fill(row_att, row_att + k, true);
    std::fill(row_ids + k, row_ids + L, pad_id);
    std::fill(row_tg + k, row_tg + L, ignore_index);
    std::fill(row_loss + k, row_loss + L, 0.0f);
    std::fill(row_att + k, row_att + L, false);
    real += k;
  }
  return real;
}

}  // namespace shardlm::data
