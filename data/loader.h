// data::Loader: this rank's batches of a prepared split, streamed from the HDF5
// shards by a prefetch thread, in an order that depends only on (seed, epoch,
// global step, rank, world size), and resumable exactly from a LoaderState --
// also with another world size (sampler.h explains why this works).
//
//   mode = "packed"     every row is a window of T + 1 tokens across documents;
//                       batches are (B, T), no padding.
//   mode = "documents"  every row is one document (dataset.h: truncation), padded
//                       to the longest row of the batch rounded up to
//                       pad_to_multiple (at most T): batches are (B, L), L <= T;
//                       bucket_window > 1 groups similar lengths (less padding).
// The last step of an epoch may have fewer samples than B x W: with last_batch =
// "pad" the missing rows are fill rows (loss_mask 0, sample_id -1), so every
// sample of the epoch is seen exactly once and every rank still gets a (B, L)
// batch; with "drop" that step is skipped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/config.h"
#include "data/manifest.h"
#include "data/sampler.h"

namespace shardlm::data {

// TOML section [data].
struct LoaderConfig {
  std::string path;  // prepared dataset directory (manifest.json)
  std::string split = "train";
  std::string mode = "packed";  // packed | documents
  int64_t batch_size = 8;       // rows per rank (B)
  int64_t seq_len = 128;        // T
  int64_t seed = 1234;
  bool shuffle = true;             // false: samples in stored order (evaluation)
  int64_t prefetch = 4;            // batches kept ready by the prefetch thread; 0 = none
  int64_t bucket_window = 1024;    // documents: samples sorted by length per window; 1 = off
  std::string truncate = "head";   // documents: head | split (see dataset.h)
  int64_t pad_to_multiple = 8;     // documents: L rounded up to this (capped at T)
  int64_t pad_id = -1;             // input id at padding; -1 = the EOS id (else 0)
  std::string last_batch = "pad";  // pad | drop
  std::string verify = "full";     // checksums at open: full (this rank's share), all, size
  int64_t cache_mb = 64;           // decoded HDF5 chunks kept in memory (see dataset.h)
  std::string tokenizer_hash;      // when set, must equal the manifest's

  static LoaderConfig from(const core::ConfigSection& s);
  void validate() const;
};

// One rank's batch. L = T in packed mode, L <= T in documents mode.
struct Batch {
  static constexpr int64_t kIgnoreIndex = -100;  // torch cross_entropy's default
  torch::Tensor input_ids;                       // (B, L) int64
  torch::Tensor targets;            // (B, L) int64: next token; kIgnoreIndex where loss_mask is 0
  torch::Tensor loss_mask;          // (B, L) float32: 1 where the target counts, 0 at padding
  torch::Tensor attention_mask;     // (B, L) bool: true for real tokens (key padding mask)
  std::vector<int64_t> sample_ids;  // (B) global sample index per row; -1 for a fill row
  int64_t epoch = 0;
  int64_t step = 0;    // global step (batches since the start, over all epochs)
  int64_t tokens = 0;  // real targets (sum of loss_mask)

  // (B, 1, L, L) bool: query i may attend key j iff j <= i and key j is real. For
  // attention implementations that take a full mask (true = attend).
  torch::Tensor causal_mask() const;
};

struct LoaderStats {
  int64_t batches = 0;           // handed out by next()
  int64_t produced = 0;          // built (<= batches + prefetch: the queue is bounded)
  double wait_seconds = 0;       // total time next() waited for the prefetch thread
  double last_wait_seconds = 0;  // of the last next()
  double produce_seconds = 0;    // time spent reading and building batches
  int64_t tokens = 0;            // real targets handed out
  int64_t slots = 0;             // B x L summed over batches
  double padding_fraction() const {
    return slots > 0 ? 1.0 - static_cast<double>(tokens) / static_cast<double>(slots) : 0.0;
  }
};

class Loader {
 public:
  // Opens the split for rank `rank` of `world_size` (no MPI calls: the caller
  // passes its Env). Throws DataError / ConfigError with the file and problem.
  Loader(const LoaderConfig& cfg, int rank, int world_size);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // This rank's next batch (rethrows a read error of the prefetch thread).
  Batch next();
  // The position after the last batch next() returned: loading it into a fresh
  // Loader (any world size, any batch size) continues with the next sample.
  LoaderState state() const;
  // Throws DataError when `s` belongs to another dataset, split or order.
  void load_state(const LoaderState& s);

  int64_t samples_per_epoch() const;
  // Global steps per epoch with this world and batch size.
  int64_t steps_per_epoch() const;
  LoaderStats stats() const;
  const Manifest& manifest() const;
  const LoaderConfig& config() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardlm::data
