// BlockPool (block_pool.h): reference counts, the free stack, the LRU of cached
// blocks and the key index.
#include "serve/block_pool.h"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

#include "core/config.h"
#include "core/error.h"
#include "data/hash.h"

namespace shardlm::serve {

BlockPool::BlockPool(int num_blocks, int block_size, bool prefix_caching)
    : block_size_(block_size), prefix_caching_(prefix_caching) {
  core::config_require(num_blocks >= 1, "serve.kv_blocks", std::to_string(num_blocks),
                       ">= 1 block");
  core::config_require(block_size >= 1, "serve.block_size", std::to_string(block_size),
                       ">= 1 token");
  blocks_.resize(static_cast<size_t>(num_blocks));
  free_.reserve(blocks_.size());
  for (int i = num_blocks - 1; i >= 0; --i) free_.push_back(i);  // block 0 handed out first
}

uint64_t BlockPool::block_key(uint64_t parent, const int64_t* tokens, int block_size) {
  const std::string_view bytes(reinterpret_cast<const char*>(tokens),
                               static_cast<size_t>(block_size) * sizeof(int64_t));
  // The parent key seeds the hash: equal blocks under different prefixes differ.
  return data::hash64(bytes, data::mix64(parent));
}

void BlockPool::drop_key(Block& b) {
  by_key_.erase(b.key);
  b.keyed = false;
  b.tokens.clear();
}

int BlockPool::allocate() {
  int id = -1;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else if (!evictable_.empty()) {
    id = evictable_.front();
    evictable_.pop_front();
    drop_key(blocks_[static_cast<size_t>(id)]);
    ++evictions_;
  } else {
    return -1;
  }
  blocks_[static_cast<size_t>(id)].refs = 1;
  return id;
}

void BlockPool::release(int id) {
  Block& b = blocks_.at(static_cast<size_t>(id));
  SHARDLM_CHECK(b.refs > 0, core::Error, "BlockPool: block {} released more often than held", id);
  if (--b.refs > 0) return;
  if (b.keyed) {
    b.lru = evictable_.insert(evictable_.end(), id);
  } else {
    free_.push_back(id);
  }
}

void BlockPool::commit(int id, uint64_t key, const int64_t* tokens) {
  if (!prefix_caching_) return;
  Block& b = blocks_.at(static_cast<size_t>(id));
  if (b.keyed || by_key_.count(key)) return;
  b.keyed = true;
  b.key = key;
  b.tokens.assign(tokens, tokens + block_size_);
  by_key_[key] = id;
}

int BlockPool::lookup(uint64_t key, const int64_t* tokens) {
  if (!prefix_caching_) return -1;
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return -1;
  Block& b = blocks_[static_cast<size_t>(it->second)];
  if (!std::equal(b.tokens.begin(), b.tokens.end(), tokens)) return -1;  // a hash collision
  if (b.refs == 0) evictable_.erase(b.lru);
  ++b.refs;
  return it->second;
}

}  // namespace shardlm::serve
