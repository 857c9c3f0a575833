// Helpers shared by the data/ tests (torch-free): temporary directories that all
// MPI ranks agree on, small files, a byte-level stand-in tokenizer, and datasets
// written directly with ShardWriter so that every token is known.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/manifest.h"
#include "data/prepare.h"

namespace shardlm::data::test_util {

// The message of the DataError that f throws ("" when it throws none).
std::string error_of(const std::function<void()>& f);

// A fresh, empty directory under the GoogleTest temp dir; the same path on every
// MPI rank (rank 0 names it, creates it and broadcasts the name).
std::string fresh_dir(const std::string& name);
void write_file(const std::string& path, const std::string& content);
void write_gz(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);
// Flips the bits of the byte at `offset` (negative: from the end).
void flip_byte(const std::string& path, int64_t offset);
void truncate_file(const std::string& path, uint64_t size);

// Token = byte + offset; EOS = 256 + offset; vocab = 257 + offset. A different
// offset is a different tokenizer (hash).
Encoder byte_encoder(uint32_t offset = 0);
// The text of byte-encoded tokens (EOS dropped).
std::string byte_decode(const std::vector<uint32_t>& ids, uint32_t offset = 0);

// Writes a dataset directory whose split `split` holds `docs` in shards of about
// `shard_tokens` tokens (never splitting a document), plus empty val/test splits
// unless `split` is one of them.
Manifest write_dataset(const std::string& dir, const std::vector<std::vector<uint32_t>>& docs,
                       uint64_t shard_tokens, uint64_t vocab_size = 65536,
                       const std::string& split = "train",
                       const std::string& tokenizer_hash = "test-tok");
// docs[d] = n_d tokens whose values are their index in the whole stream mod `mod`.
std::vector<std::vector<uint32_t>> stream_docs(const std::vector<uint64_t>& lengths,
                                               uint32_t mod = 65521);

}  // namespace shardlm::data::test_util

namespace shardlm::data::test_util {
// Offset of the first occurrence of `bytes` in the file, or -1.
int64_t find_bytes(const std::string& path, const std::string& bytes);
// The little-endian uint16 encoding of `count` consecutive token values from `first`.
std::string u16_run(uint32_t first, uint32_t count, uint32_t step = 1);
}  // namespace shardlm::data::test_util
