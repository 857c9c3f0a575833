// ResponseCache: a thread-safe LRU map from a request's key (model, prompt token
// ids, every parameter that decides the output) to its finished response body,
// bounded by entries and by bytes (keys + values). Only deterministic requests
// (greedy, or sampling with a seed) are put here; see docs/serving.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace shardlm::serve {

class ResponseCache {
 public:
  // max_entries 0 turns the cache off (get misses, put drops).
  ResponseCache(size_t max_entries, size_t max_bytes);

  // The value stored under `key`, which becomes the most recently used; counts a hit or a miss.
  std::optional<std::string> get(const std::string& key);
  // Stores (or replaces) `key`; evicts the least recently used entries until both
  // bounds hold. A single entry larger than max_bytes is not stored.
  void put(const std::string& key, std::string value);

  size_t entries() const;
  size_t bytes() const;
  uint64_t hits() const;
  uint64_t misses() const;
  uint64_t evictions() const;

 private:
  using Entry = std::pair<std::string, std::string>;  // key, value
  void evict_locked();

  const size_t max_entries_, max_bytes_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  size_t bytes_ = 0;
  uint64_t hits_ = 0, misses_ = 0, evictions_ = 0;
};

}  // namespace shardlm::serve
