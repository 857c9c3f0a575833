// manifest.json: what a prepared dataset directory holds. Written by `prepare`
// (rank 0, atomically: temp file + rename), read by every Loader.
//
//   { "format": "shardlm-dataset", "version": 1,
//     "tokenizer": {"hash", "vocab_size", "eos_id"}, "token_dtype": "uint16",
//     "cache_key": "...",             // everything that determines the shards
//     "config": {...},                 // the preparation config as used
//     "inputs": [{"path", "size", "mtime_ns", "cache", "documents", ...}],
//     "report": {...},                 // cleaning counts, timings
//     "splits": {"train": {"tokens", "documents", "shards": [ShardInfo...]}, "val": ..., "test":
//     ...} }
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/shard.h"

namespace shardlm::data {

struct SplitInfo {
  uint64_t tokens = 0;
  uint64_t docs = 0;
  std::vector<ShardInfo> shards;
};

struct Manifest {
  static constexpr const char* kFileName = "manifest.json";
  static constexpr int kVersion = 1;

  std::string dir;  // the directory it was loaded from (not stored)
  std::string tokenizer_hash;
  uint64_t vocab_size = 0;
  std::optional<uint32_t> eos_id;
  TokenDtype dtype = TokenDtype::kUInt16;
  std::string cache_key;
  nlohmann::json config = nlohmann::json::object();
  nlohmann::json inputs = nlohmann::json::array();
  nlohmann::json report = nlohmann::json::object();
  std::map<std::string, SplitInfo> splits;

  // Reads <dir>/manifest.json. Throws DataError when it is missing ("run
  // `shardlm prepare` first"), malformed, or of another format or version.
  static Manifest load(const std::string& dir);
  // Whether <dir>/manifest.json exists.
  static bool exists(const std::string& dir);
  // Writes <dir>/manifest.json atomically.
  void save(const std::string& dir) const;
  nlohmann::json to_json() const;

  // The split by name; throws DataError naming the manifest and the splits it has.
  const SplitInfo& split(const std::string& name) const;
  // A short hash that changes whenever the split's content could: the tokenizer
  // and every shard's checksum. A LoaderState is valid only for the same one.
  std::string fingerprint(const std::string& split_name) const;
  std::string path() const;
};

// Throws DataError unless `tokenizer_hash` is the one the dataset was prepared with.
void check_tokenizer(const Manifest& m, const std::string& tokenizer_hash);

}  // namespace shardlm::data
