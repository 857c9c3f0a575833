// Open-addressing hash maps for the tokenizer's hot paths (internal header).
//
// std::unordered_map allocates a node per entry and chases pointers; encoding
// looks up a few million pre-tokens and pairs per second, so these maps keep
// slots in one array (linear probing, power-of-two capacity, load <= 1/2) and
// byte-string keys in one arena. Nothing is ever erased, only cleared.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace shardlm::data::detail {

inline uint64_t hash_bytes(const char* p, size_t n) {
  return XXH3_64bits(p, n) | 1;
}

// Slots for n entries at load <= 1/2: a power of two, at least 16.
inline size_t table_capacity(size_t n) {
  size_t c = 16;
  while (c < 2 * n) c *= 2;
  return c;
}

// ---- byte-string keys ---------------------------------------------------------------
template <class V>
class BytesMap {
 public:
  explicit BytesMap(size_t expected = 16) { rehash(table_capacity(expected)); }

  size_t size() const { return size_; }
  size_t arena_bytes() const { return arena_.size(); }

  const V* find(const char* p, size_t n) const { return find(p, n, hash_bytes(p, n)); }
  const V* find(std::string_view k) const { return find(k.data(), k.size()); }
  const V* find(const char* p, size_t n, uint64_t h) const {
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.hash == 0) return nullptr;
      if (s.hash == h && s.len == n && std::memcmp(arena_.data() + s.off, p, n) == 0)
        return &s.value;
    }
  }

  // The value stored under the key, inserted as `def` when absent.
  V& get_or_insert(const char* p, size_t n, const V& def, bool* inserted = nullptr) {
    return get_or_insert(p, n, hash_bytes(p, n), def, inserted);
  }
  V& get_or_insert(std::string_view k, const V& def, bool* inserted = nullptr) {
    return get_or_insert(k.data(), k.size(), def, inserted);
  }
  V& get_or_insert(const char* p, size_t n, uint64_t h, const V& def, bool* inserted) {
    if (2 * (size_ + 1) > slots_.size()) rehash(slots_.size() * 2);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.hash == 0) {
        s.hash = h;
        s.off = arena_.size();
        s.len = static_cast<uint32_t>(n);
        s.value = def;
        arena_.append(p, n);
        ++size_;
        if (inserted) *inserted = true;
        return s.value;
      }
      if (s.hash == h && s.len == n && std::memcmp(arena_.data() + s.off, p, n) == 0) {
        if (inserted) *inserted = false;
        return s.value;
      }
    }
  }

  // f(std::string_view key, const V& value) for every entry, in slot order.
  template <class F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_)
      if (s.hash) f(std::string_view(arena_.data() + s.off, s.len), s.value);
  }

  void clear() {
    for (Slot& s : slots_) s.hash = 0;
    arena_.clear();
    size_ = 0;
  }

 private:
  struct Slot {
    uint64_t hash = 0;  // 0 = empty (hash_bytes never returns 0)
    size_t off = 0;
    uint32_t len = 0;
    V value{};
  };
  void rehash(size_t cap) {
    std::vector<Slot> old(cap);
    old.swap(slots_);
    mask_ = cap - 1;
    for (const Slot& s : old) {
      if (!s.hash) continue;
      size_t i = s.hash & mask_;
      while (slots_[i].hash) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  std::string arena_;
  size_t size_ = 0, mask_ = 0;
};

// ---- 64-bit keys (a pair of token ids) -------------------------------------------------
inline uint64_t pair_key(uint32_t a, uint32_t b) {
  return (uint64_t{a} << 32) | b;
}

template <class V>
class PairMap {
 public:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  explicit PairMap(size_t expected = 16) { rehash(table_capacity(expected)); }

  size_t size() const { return size_; }
  const V* find(uint64_t key) const {
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.value;
      if (s.key == kEmpty) return nullptr;
    }
  }
  V* find(uint64_t key) { return const_cast<V*>(static_cast<const PairMap*>(this)->find(key)); }
  V& get_or_insert(uint64_t key, const V& def, bool* inserted = nullptr) {
    if (2 * (size_ + 1) > slots_.size()) rehash(slots_.size() * 2);
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.key == key) {
        if (inserted) *inserted = false;
        return s.value;
      }
      if (s.key == kEmpty) {
        s.key = key;
        s.value = def;
        ++size_;
        if (inserted) *inserted = true;
        return s.value;
      }
    }
  }
  template <class F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_)
      if (s.key != kEmpty) f(s.key, s.value);
  }

 private:
  struct Slot {
    uint64_t key = kEmpty;
    V value{};
  };
  size_t slot_of(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
  void rehash(size_t cap) {
    std::vector<Slot> old(cap);
    old.swap(slots_);
    mask_ = cap - 1;
    shift_ = 64;
    for (size_t c = cap; c > 1; c >>= 1) --shift_;
    for (const Slot& s : old) {
      if (s.key == kEmpty) continue;
      size_t i = slot_of(s.key);
      while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  size_t size_ = 0, mask_ = 0;
  int shift_ = 60;
};

}  // namespace shardlm::data::detail
