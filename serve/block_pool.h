// BlockPool: the KV cache's memory as a fixed number of blocks of block_size
// token slots each (vLLM's paged KV cache). A sequence holds a list of blocks
// (its block table); a block's reference count says how many sequences hold
// it. With prefix caching a block that is full gets a key, the hash of its
// tokens and of its parent block's key, so a later request whose prompt starts
// with the same tokens takes the block instead of computing it again. A block
// whose count falls to 0 keeps its key and its contents until memory is needed:
// the free ones are reused before the cached ones, and cached ones go least
// recently released first. Torch-free: it only counts; serve/paged_kv.h holds
// the tensors the block ids index.
//
//   BlockPool pool(64, 16, /*prefix_caching=*/true);
//   int b = pool.allocate();                  // -1 when every block is held
//   pool.commit(b, key, tokens);              // full and computed: shareable
//   int same = pool.lookup(key, tokens);      // another sequence: the same block, count 2
//   pool.release(b); pool.release(same);      // count 0: kept as cached, evictable
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace shardlm::serve {

class BlockPool {
 public:
  // num_blocks >= 1, block_size >= 1 (ConfigError otherwise).
  BlockPool(int num_blocks, int block_size, bool prefix_caching);

  // The key of a full block: its tokens (block_size ids) chained to its parent's key
  // (0 for a sequence's first block).
  static uint64_t block_key(uint64_t parent, const int64_t* tokens, int block_size);

  // A block for one holder (count 1), without a key: a free one, else the least
  // recently released cached one (its key is dropped). -1 when every block is held.
  int allocate();
  // One holder fewer; at 0 the block becomes free (no key) or cached (with a key).
  void release(int block);
  // A full, computed block becomes shareable under `key`. When another block
  // already has that key this one stays private (it is freed as usual).
  void commit(int block, uint64_t key, const int64_t* tokens);
  // The cached block with `key` and exactly these tokens, now held once more
  // (taken off the evictable list when its count was 0); -1 when there is none.
  int lookup(uint64_t key, const int64_t* tokens);
  // Whether lookup(key, tokens) would find a block (no change, no counting).
  bool contains(uint64_t key) const { return by_key_.count(key) > 0; }

  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  int block_size() const { return block_size_; }
  bool prefix_caching() const { return prefix_caching_; }
  // Blocks allocate() can hand out now: free plus cached-and-unheld.
  int available() const { return static_cast<int>(free_.size() + evictable_.size()); }
  // Blocks held by at least one sequence (what KV-cache usage reports).
  int used() const { return num_blocks() - available(); }
  int cached() const { return static_cast<int>(by_key_.size()); }  // blocks with a key
  int ref_count(int block) const { return blocks_.at(static_cast<size_t>(block)).refs; }
  uint64_t evictions() const { return evictions_; }

 private:
  struct Block {
    int refs = 0;
    bool keyed = false;
    uint64_t key = 0;
    std::vector<int64_t> tokens;   // a keyed block's tokens (a hash is checked, not trusted)
    std::list<int>::iterator lru;  // its place in evictable_ while refs == 0 and keyed
  };
  void drop_key(Block& b);

  int block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  std::vector<int> free_;     // refs == 0, no key (a stack)
  std::list<int> evictable_;  // refs == 0, keyed; front = released longest ago
  std::unordered_map<uint64_t, int> by_key_;
  uint64_t evictions_ = 0;
};

}  // namespace shardlm::serve
