// Reading a prepared dataset back, for people (`shardlm data inspect`): the
// documents of a split exactly as stored, where each one lives, and which
// tokenizer decodes them. Torch-free; the training path reads through
// TokenDataset (dataset.h) instead.
//
//   auto m = Manifest::load("data/prepared");
//   for (const auto& d : read_documents(m, "train", /*first=*/0, /*count=*/3))
//     std::cout << d.shard << " #" << d.index_in_shard << ": " << tok.decode(d.tokens);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/manifest.h"

namespace shardlm::data {

/// One document of a split as it is stored.
struct StoredDocument {
  uint64_t index = 0;            ///< in the split: shards in manifest order, documents in order
  std::string shard;             ///< its shard file, relative to the dataset directory
  uint64_t index_in_shard = 0;   ///< its position in that shard
  std::vector<uint32_t> tokens;  ///< its token ids, the EOS that preparation appended included
};

/// Documents [first, first + count) of `split` (fewer when the split ends
/// first; none when `first` is past its end). Each shard it opens is checked
/// against the manifest's size; throws DataError naming the manifest (an
/// unknown split) or the shard file (missing, truncated, unreadable).
std::vector<StoredDocument> read_documents(const Manifest& m, const std::string& split,
                                           uint64_t first, uint64_t count);

/// The tokenizer a dataset was prepared with, found beside it: the first of
/// tokenizer.json in the dataset directory and in its parent whose hash is the
/// manifest's. "" when there is none (a file with another hash is skipped).
std::string find_dataset_tokenizer(const Manifest& m);

}  // namespace shardlm::data
