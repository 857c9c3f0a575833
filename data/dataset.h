// One split of a prepared dataset, seen as numbered samples (torch-free; the
// Loader turns rows of samples into tensors).
//
//   packed     sample i = tokens [i*T, i*T + T + 1) of the split's token stream
//              (its shards concatenated in manifest order, documents joined by
//              EOS); S = (N - 1) / T samples; windows cross document and shard
//              boundaries; the tail of fewer than T + 1 tokens is not used.
//   documents  sample = one document (shards in order, documents in order);
//              truncate = "head": its first T + 1 tokens (the rest is dropped);
//              truncate = "split": pieces [kT, kT + T + 1), each a sample.
//              Documents (or pieces) of fewer than 2 tokens have no target and
//              are not samples.
// Opening checks every shard of the split against the manifest (size, header,
// tokenizer hash) and the whole-file checksum of some: verify = "full" checks the
// shards s with s % verify_ranks == verify_rank (so W ranks together read every
// shard once), "all" every shard, "size" none (HDF5 still checks each chunk's
// Fletcher-32 when it is read).
// Reads are streamed: each sample's tokens are read on demand, whole HDF5 chunks
// at a time, and the last cache_mb of chunks are kept (a window read is then a
// copy, not an HDF5 call). read() is not thread-safe (one producer per Loader).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/manifest.h"
#include "data/shard.h"

namespace shardlm::data {

struct DatasetOptions {
  std::string dir;
  std::string split = "train";
  std::string mode = "packed";    // packed | documents
  int64_t seq_len = 128;          // T
  std::string truncate = "head";  // documents: head | split
  std::string verify = "full";    // full | all | size
  int verify_rank = 0, verify_ranks = 1;
  std::string tokenizer_hash;  // checked against the manifest when not empty
  int64_t cache_mb = 64;       // decoded HDF5 chunks kept in memory (LRU); 0 = none
};

class TokenDataset {
 public:
  // Throws DataError naming the file and problem: missing manifest, unknown or
  // empty split, truncated or corrupted shard, tokenizer hash mismatch.
  explicit TokenDataset(const DatasetOptions& opts);
  ~TokenDataset();

  const Manifest& manifest() const { return manifest_; }
  const DatasetOptions& options() const { return opts_; }
  uint64_t size() const { return n_samples_; }
  uint64_t tokens() const { return n_tokens_; }
  // Tokens read for sample i (T + 1 in packed mode; 2..T+1 for documents).
  uint32_t length(uint64_t i) const;
  // Every sample's length (documents mode; empty in packed mode).
  const std::vector<uint32_t>& lengths() const { return lengths_; }
  // Reads sample i's length(i) tokens into out.
  void read(uint64_t i, uint32_t* out) const;
  // Chunk cache lookups that found the chunk / had to read it.
  uint64_t cache_hits() const;
  uint64_t cache_misses() const;
  std::string fingerprint() const { return manifest_.fingerprint(opts_.split); }

 private:
  void read_stream(uint64_t start, uint64_t n, uint32_t* out) const;
  struct ChunkCache;

  DatasetOptions opts_;
  Manifest manifest_;
  std::vector<std::unique_ptr<ShardReader>> shards_;
  std::vector<uint64_t> shard_start_;  // global token offset of each shard (+ total)
  uint64_t n_tokens_ = 0, n_samples_ = 0;
  std::vector<uint64_t> starts_;   // documents: global token offset of each sample
  std::vector<uint32_t> lengths_;  // documents: tokens of each sample
  std::unique_ptr<ChunkCache> cache_;
};

// Fills rank rows for the Loader: (B, L) row-major arrays. Row b is sample
// samples[b] (or a fill row when -1): ids = its first k-1 tokens, targets = the
// next k-1, then padding: ids = pad_id, targets = ignore_index, loss 0,
// attention false. Returns the number of real targets.
int64_t fill_rows(const TokenDataset& ds, const std::vector<int64_t>& samples, int64_t L,
                  int64_t pad_id, int64_t ignore_index, int64_t* ids, int64_t* targets,
                  float* loss_mask, bool* attention);

}  // namespace shardlm::data
