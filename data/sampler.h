// The order in which a Loader visits samples, and the position it has reached.
//
// Samples are numbered globally 0..S-1 over the whole split (a packed window or
// a document; see dataset.h). Epoch e visits them in an order that depends only
// on (seed, e): a keyed Feistel permutation of [0, S) (O(1) memory, any position
// computable directly), optionally bucketed by length (documents mode). A
// global step takes the next B x W positions of that order; rank r of W takes
// positions p + r, p + r + W, ..., p + r + (B-1)W. The position is counted in
// samples, not steps, so a run saved with W ranks continues with W' ranks, or
// another batch size, without repeating or skipping a sample.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shardlm::data {

// A Loader's exact position; goes into checkpoints as JSON (see docs/data.md).
struct LoaderState {
  static constexpr int kVersion = 1;
  // What the position refers to: load_state() refuses a state of another order.
  std::string dataset;  // Manifest::fingerprint(split)
  std::string split;
  std::string mode;      // packed | documents
  std::string truncate;  // documents mode: head | split
  uint64_t seed = 0;
  int64_t seq_len = 0;
  bool shuffle = true;
  int64_t bucket_window = 1;
  int64_t samples_per_epoch = 0;
  // The position.
  int64_t epoch = 0;
  int64_t position = 0;    // samples of this epoch already handed out (over all ranks)
  int64_t step = 0;        // global batches handed out since the start
  int64_t world_size = 1;  // informational: the world that saved it

  nlohmann::json to_json() const;
  // Throws DataError naming the missing or mistyped field.
  static LoaderState from_json(const nlohmann::json& j);
};
inline void to_json(nlohmann::json& j, const LoaderState& s) {
  j = s.to_json();
}
inline void from_json(const nlohmann::json& j, LoaderState& s) {
  s = LoaderState::from_json(j);
}

// A bijection of [0, n) keyed by `seed`: 4 Feistel rounds on the smallest even
// power of two >= n, cycle-walking values that fall outside.
class Permutation {
 public:
  Permutation(uint64_t n, uint64_t seed);
  uint64_t operator()(uint64_t i) const;
  uint64_t size() const { return n_; }

 private:
  uint64_t encrypt(uint64_t x) const;
  uint64_t n_;
  int half_bits_ = 0;
  uint64_t mask_ = 0;
  uint64_t keys_[4] = {};
};

// The sample at each position of each epoch.
class SampleOrder {
 public:
  // `lengths` (one per sample) turns on bucketing when bucket_window > 1: the
  // epoch's permutation is cut into windows of bucket_window positions, each window
  // sorted by length, ascending and descending in turn so that neighbouring
  // windows meet at similar lengths. shuffle = false: identity order.
  SampleOrder(uint64_t n, uint64_t seed, bool shuffle, uint64_t bucket_window = 1,
              std::vector<uint32_t> lengths = {});
  // Sample at `position` (< size()) of `epoch`. Not thread-safe (window cache).
  uint64_t at(int64_t epoch, uint64_t position);
  uint64_t size() const { return n_; }

 private:
  uint64_t n_, seed_;
  bool shuffle_;
  uint64_t window_;
  std::vector<uint32_t> lengths_;
  int64_t cached_epoch_ = -1;
  uint64_t cached_perm_n_ = 0;
  Permutation perm_{1, 0};
  int64_t cached_window_ = -1;
  std::vector<uint64_t> window_samples_;
};

// Global positions of rank `rank`'s rows in the step that starts at `position`;
// -1 for a row past the end of the epoch (a fill row).
std::vector<int64_t> rank_positions(int64_t position, int64_t batch, int rank, int world,
                                    int64_t samples);

}  // namespace shardlm::data
