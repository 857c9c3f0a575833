// Sample order and loader position (see sampler.h).
#include "data/sampler.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "data/hash.h"

namespace shardlm::data {

// ---- state ----------------------------------------------------------------------

nlohmann::json LoaderState::to_json() const {
  return {{"version", kVersion},
          {"dataset", dataset},
          {"split", split},
          {"mode", mode},
          {"truncate", truncate},
          {"seed", seed},
          {"seq_len", seq_len},
          {"shuffle", shuffle},
          {"bucket_window", bucket_window},
          {"samples_per_epoch", samples_per_epoch},
          {"epoch", epoch},
          {"position", position},
          {"step", step},
          {"world_size", world_size}};
}

LoaderState LoaderState::from_json(const nlohmann::json& j) {
  LoaderState s;
  try {
    int version = j.at("version").get<int>();
    SHARDLM_CHECK(version == kVersion, core::DataError,
                  "loader state: version {} (this build reads version {})", version, kVersion);
    s.dataset = j.at("dataset").get<std::string>();
    s.split = j.at("split").get<std::string>();
    s.mode = j.at("mode").get<std::string>();
    s.truncate = j.at("truncate").get<std::string>();
    s.seed = j.at("seed").get<uint64_t>();
    s.seq_len = j.at("seq_len").get<int64_t>();
    s.shuffle = j.at("shuffle").get<bool>();
    s.bucket_window = j.at("bucket_window").get<int64_t>();
    s.samples_per_epoch = j.at("samples_per_epoch").get<int64_t>();
    s.epoch = j.at("epoch").get<int64_t>();
    s.position = j.at("position").get<int64_t>();
    s.step = j.at("step").get<int64_t>();
    s.world_size = j.value("world_size", int64_t{1});
  } catch (const nlohmann::json::exception& e) {
    SHARDLM_FAIL(core::DataError, "loader state: missing or mistyped field ({}) in {}", e.what(),
                 j.dump());
  }
  return s;
}

// ---- permutation ----------------------------------------------------------------

Permutation::Permutation(uint64_t n, uint64_t seed) : n_(n) {
  int bits = 0;
  while (bits < 64 && (uint64_t{1} << bits) < n) ++bits;
  half_bits_ = (bits + 1) / 2;
  mask_ = half_bits_ == 0 ? 0 : (uint64_t{1} << half_bits_) - 1;
  uint64_t k = seed;
  for (auto& key : keys_) key = k = mix64(k);
}

uint64_t Permutation::encrypt(uint64_t x) const {
  uint64_t l = x >> half_bits_, r = x & mask_;
  for (uint64_t key : keys_) {
    uint64_t next = l ^ (mix64(r ^ key) & mask_);
    l = r;
    r = next;
  }
  return (l << half_bits_) | r;
}

uint64_t Permutation::operator()(uint64_t i) const {
  if (n_ <= 1) return 0;
  uint64_t y = encrypt(i);
  while (y >= n_) y = encrypt(y);  // the domain is < 4n: a few steps on average
  return y;
}

// ---- order ----------------------------------------------------------------------

SampleOrder::SampleOrder(uint64_t n, uint64_t seed, bool shuffle, uint64_t bucket_window,
                         std::vector<uint32_t> lengths)
    : n_(n),
      seed_(seed),
      shuffle_(shuffle),
      window_(std::max<uint64_t>(1, bucket_window)),
      lengths_(std::move(lengths)) {
  SHARDLM_CHECK(window_ == 1 || lengths_.size() == n_, core::DataError,
                "bucketing needs one length per sample ({} given for {})", lengths_.size(), n_);
}

uint64_t SampleOrder::at(int64_t epoch, uint64_t position) {
  SHARDLM_CHECK(position < n_, core::DataError, "position {} outside the epoch of {} samples",
                position, n_);
  if (epoch != cached_epoch_) {
    perm_ = Permutation(n_, mix64(seed_ ^ mix64(static_cast<uint64_t>(epoch) + 1)));
    cached_epoch_ = epoch;
    cached_window_ = -1;
  }
  auto base = [&](uint64_t p) { return shuffle_ ? perm_(p) : p; };
  if (window_ == 1) return base(position);
  auto w = static_cast<int64_t>(position / window_);
  if (w != cached_window_) {
    uint64_t a = static_cast<uint64_t>(w) * window_, b = std::min(n_, a + window_);
    window_samples_.resize(b - a);
    for (uint64_t p = a; p < b; ++p) window_samples_[p - a] = base(p);
    bool ascending = w % 2 == 0;
    std::sort(window_samples_.begin(), window_samples_.end(), [&](uint64_t x, uint64_t y) {
      if (lengths_[x] != lengths_[y])
        return ascending ? lengths_[x] < lengths_[y] : lengths_[x] > lengths_[y];
      return x < y;
    });
    cached_window_ = w;
  }
  return window_samples_[position - static_cast<uint64_t>(w) * window_];
}

std::vector<int64_t> rank_positions(int64_t position, int64_t batch, int rank, int world,
                                    int64_t samples) {
  std::vector<int64_t> out(static_cast<size_t>(batch));
  for (int64_t j = 0; j < batch; ++j) {
    int64_t p = position + j * world + rank;
    out[static_cast<size_t>(j)] = p < samples ? p : -1;
  }
  return out;
}

}  // namespace shardlm::data
