// ResponseCache (cache.h): a list in recency order plus a hash index into it.
#include "serve/cache.h"

namespace shardlm::serve {

ResponseCache::ResponseCache(size_t max_entries, size_t max_bytes)
    : max_entries_(max_entries), max_bytes_(max_bytes) {}

std::optional<std::string> ResponseCache::get(const std::string& key) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void ResponseCache::put(const std::string& key, std::string value) {
  const size_t size = key.size() + value.size();
  if (max_entries_ == 0 || size > max_bytes_) return;
  std::lock_guard<std::mutex> g(mu_);
  auto it = index_.find(key);
  if (it != index_.end()) {
    bytes_ -= it->second->first.size() + it->second->second.size();
    lru_.erase(it->second);
    index_.erase(it);
  }
  lru_.emplace_front(key, std::move(value));
  index_[key] = lru_.begin();
  bytes_ += size;
  evict_locked();
}

void ResponseCache::evict_locked() {
  while (!lru_.empty() && (lru_.size() > max_entries_ || bytes_ > max_bytes_)) {
    const Entry& e = lru_.back();
    bytes_ -= e.first.size() + e.second.size();
    index_.erase(e.first);
    lru_.pop_back();
    ++evictions_;
  }
}

size_t ResponseCache::entries() const {
  std::lock_guard<std::mutex> g(mu_);
  return lru_.size();
}
size_t ResponseCache::bytes() const {
  std::lock_guard<std::mutex> g(mu_);
  return bytes_;
}
uint64_t ResponseCache::hits() const {
  std::lock_guard<std::mutex> g(mu_);
  return hits_;
}
uint64_t ResponseCache::misses() const {
  std::lock_guard<std::mutex> g(mu_);
  return misses_;
}
uint64_t ResponseCache::evictions() const {
  std::lock_guard<std::mutex> g(mu_);
  return evictions_;
}

}  // namespace shardlm::serve
