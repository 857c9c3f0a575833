// Content hashes for the data pipeline (xxHash's XXH3, Debian libxxhash-dev):
// 128-bit document keys for exact deduplication and the train/val/test split,
// 64-bit hashes for cache keys, and whole-file checksums for shards. XXH3 is
// not cryptographic: it detects corruption and duplicates, not tampering.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace shardlm::data {

// A 128-bit hash; the document key used for dedup and for the split.
struct Hash128 {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool operator==(const Hash128& o) const { return hi == o.hi && lo == o.lo; }
  bool operator!=(const Hash128& o) const { return !(*this == o); }
};
struct Hash128Hasher {
  size_t operator()(const Hash128& h) const { return static_cast<size_t>(h.lo ^ (h.hi * 31)); }
};

Hash128 hash128(std::string_view bytes);
uint64_t hash64(std::string_view bytes, uint64_t seed = 0);
// 16 lower-case hex digits.
std::string hex64(uint64_t v);

// "xxh3-64:<16 hex digits>" of the file's bytes, read in 1 MiB blocks.
// Throws DataError naming the file when it cannot be read.
std::string file_checksum(const std::string& path);

// splitmix64: a cheap, well-mixed bijection on 64-bit integers (seeds, keys).
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace shardlm::data
