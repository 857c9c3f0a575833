// HDF5 token shards: the on-disk form of a prepared split, and of the per-input
// caches that `prepare` re-uses.
//
// One shard file holds
//   /tokens       (N,)      uint16 when the vocabulary fits, else uint32; chunked
//                           (chunk_tokens), Fletcher-32 per chunk, optional
//                           shuffle+deflate
//   /doc_offsets  (D + 1,)  uint64; document d is tokens[doc_offsets[d], doc_offsets[d+1])
//   /doc_hash     (D, 2)    uint64, optional: the 128-bit key of each document's
//                           cleaned text (caches only: dedup and split at assembly)
// and the attributes format = "shardlm-tokens", version, vocab_size, tokenizer_hash,
// split. The file uses HDF5's 1.8 object format, whose metadata carries checksums;
// with Fletcher-32 on the data a flipped byte is found on read, and the manifest's
// whole-file checksum (ShardInfo::checksum) finds it before.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/hash.h"

namespace shardlm::data {

enum class TokenDtype { kUInt16, kUInt32 };
// uint16 when every id < vocab_size fits, else uint32.
TokenDtype dtype_for_vocab(uint64_t vocab_size);
const char* dtype_name(TokenDtype d);
TokenDtype dtype_from_name(const std::string& name);  // throws DataError

// What the manifest records of one shard file.
struct ShardInfo {
  std::string file;  // relative to the dataset directory
  uint64_t tokens = 0;
  uint64_t docs = 0;
  uint64_t bytes = 0;
  std::string checksum;  // file_checksum()

  nlohmann::json to_json() const;
  static ShardInfo from_json(const nlohmann::json& j, const std::string& where);
};

struct ShardWriterOptions {
  TokenDtype dtype = TokenDtype::kUInt16;
  uint64_t chunk_tokens = 1 << 14;
  int compression = 0;  // deflate level 0 (off) .. 9
  bool with_hashes = false;
  uint64_t vocab_size = 0;
  std::string tokenizer_hash;
  std::string split;
};

// Writes one shard. Tokens are buffered and appended chunk by chunk; nothing of a
// document is split across shards. close() writes the offsets and returns the
// shard's info (with checksum); the destructor of an unclosed writer removes the
// partial file.
class ShardWriter {
 public:
  ShardWriter(std::string path, ShardWriterOptions opts);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends one document. Throws DataError when a token does not fit the dtype.
  void add(const uint32_t* tokens, size_t n, const Hash128* key = nullptr);
  void add(const std::vector<uint32_t>& tokens, const Hash128* key = nullptr) {
    add(tokens.data(), tokens.size(), key);
  }
  uint64_t tokens() const { return total_; }
  uint64_t docs() const { return offsets_.size() - 1; }
  // Finishes the file; `relative_name` goes into the returned ShardInfo::file.
  ShardInfo close(const std::string& relative_name);

 private:
  void flush(bool all);

  std::string path_;
  ShardWriterOptions opts_;
  hid_t file_ = -1, tokens_ = -1;
  std::vector<uint32_t> pending_;
  std::vector<uint64_t> offsets_{0};
  std::vector<uint64_t> hashes_;  // hi, lo per document
  uint64_t total_ = 0, written_ = 0;
};

// Reads one shard, streaming: token ranges are read on demand, never the whole
// dataset (HDF5 keeps at most 1 MiB of chunks per open shard; the Loader keeps
// its own cache, see dataset.h). Errors name the file and what failed.
class ShardReader {
 public:
  explicit ShardReader(std::string path);
  ~ShardReader();
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  const std::string& path() const { return path_; }
  uint64_t tokens() const { return n_tokens_; }
  uint64_t docs() const { return n_docs_; }
  TokenDtype dtype() const { return dtype_; }
  uint64_t vocab_size() const { return vocab_size_; }
  const std::string& tokenizer_hash() const { return tokenizer_hash_; }
  const std::string& split() const { return split_; }

  // tokens[start, start + n) into out (n values). Throws DataError when the range
  // is outside the shard or the data fail their checksum.
  void read(uint64_t start, uint64_t n, uint32_t* out) const;
  // The same in the file's own type (uint16_t or uint32_t values, see dtype()):
  // no conversion, so a whole aligned chunk goes straight into `out`.
  void read_native(uint64_t start, uint64_t n, void* out) const;
  // Tokens per HDF5 chunk of /tokens (the unit in which HDF5 reads and checks).
  uint64_t chunk_tokens() const { return chunk_tokens_; }
  std::vector<uint32_t> read(uint64_t start, uint64_t n) const;
  // (D + 1) offsets; checked to start at 0, never decrease and end at tokens().
  std::vector<uint64_t> doc_offsets() const;
  // (D) document keys; throws DataError when the shard has none.
  std::vector<Hash128> doc_hashes() const;

 private:
  std::string path_;
  hid_t file_ = -1, tokens_ = -1;
  uint64_t n_tokens_ = 0, n_docs_ = 0, vocab_size_ = 0, chunk_tokens_ = 0;
  TokenDtype dtype_ = TokenDtype::kUInt16;
  std::string tokenizer_hash_, split_;
};

// Checks a shard file against the manifest: size (a truncated or extended file)
// and, when `full`, the whole-file checksum. Throws DataError naming the file.
void verify_shard(const std::string& path, const ShardInfo& expected, bool full);

}  // namespace shardlm::data
