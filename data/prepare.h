// Corpus preparation: raw text files -> cleaned, deduplicated, tokenised and
// split documents in HDF5 shards + manifest.json (the `shardlm prepare` command).
//
// Two stages, so that a change redoes only what it must:
//   1. tokenise: each input file is read, cleaned and tokenised into its own cache
//      file <output>/cache/<key>.h5 (+ <key>.json with its counts). The key covers
//      the file (path, size, mtime), the tokenizer's hash, the reading and cleaning
//      config and append_eos; a cache whose key still matches is re-used. Under
//      mpirun the files to tokenise are divided among the ranks (by size); each
//      rank uses `threads` threads.
//   2. assemble (rank 0): the caches, in input order, are deduplicated (exact, by
//      the 128-bit hash of the cleaned text; the first occurrence wins), split by
//      the same hash into train/val/test, and written into shards of shard_mb.
//      Then manifest.json is replaced atomically.
// When the manifest's cache_key equals the one computed from the inputs, the
// tokenizer and the config, nothing is done (and the log says so).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "data/corpus.h"
#include "data/hash.h"
#include "data/manifest.h"
#include "data/text_clean.h"
#include "data/tokenizer.h"

namespace shardlm::data {

// TOML section [prepare] (cleaning in [prepare.clean]).
struct PrepareConfig {
  std::vector<std::string> inputs;  // files, directories, globs
  std::string output = "prepared";  // the dataset directory
  std::string tokenizer;            // tokenizer file (read by the launcher)
  ReaderConfig reader;              // text_field, txt_documents, bad_records
  CleanConfig clean;                // [prepare.clean]
  double val_fraction = 0.01;       // of documents, by hash
  double test_fraction = 0.0;
  double shard_mb = 256;         // target shard size in MiB (tokens x bytes per token)
  int64_t chunk_tokens = 16384;  // HDF5 chunk of the token dataset
  int64_t compression = 0;       // deflate level, 0 = none
  bool append_eos = true;        // end every document with the tokenizer's EOS
  int64_t threads = 0;           // per rank; 0 = cores / local ranks
  int64_t batch_mb = 4;          // text cleaned and tokenised at once
  bool progress = true;          // progress bar on rank 0
  bool force = false;            // redo everything, ignoring manifest and caches

  static PrepareConfig from(const core::ConfigSection& s);
  void validate() const;
  // Everything that determines the output (not output, progress, threads, force).
  nlohmann::json to_json() const;
};

// What prepare() needs of a tokenizer: encoder_for(tokenizer) below, or a small
// stand-in in tests.
struct Encoder {
  std::string hash;
  uint64_t vocab_size = 0;
  std::optional<uint32_t> eos_id;
  std::function<std::vector<std::vector<uint32_t>>(const std::vector<std::string>&, int threads)>
      encode_batch;
};

// The Encoder of a real tokenizer: its hash, vocabulary size, EOS, and
// encode_batch (special tokens in the text stay ordinary text).
Encoder encoder_for(const Tokenizer& tok);

struct PrepareResult {
  bool up_to_date = false;      // nothing was done
  std::string reason;           // why (re)preparation happened, or "up to date"
  int64_t files_tokenized = 0;  // over all ranks
  int64_t files_cached = 0;
  double seconds = 0;                // the whole call
  double tokenize_seconds = 0;       // stage 1, until the slowest rank finished
  double assemble_seconds = 0;       // stage 2 (rank 0)
  int64_t files_tokenized_here = 0;  // by this rank
  double input_mb = 0;               // bytes of the inputs tokenised in this run (all ranks)
  Manifest manifest;
};

// Runs both stages. Collective when MPI is initialised (every rank of
// MPI_COMM_WORLD calls it with the same config); a failure on any rank makes
// every rank throw. Throws DataError / ConfigError with the file and problem.
PrepareResult prepare(const PrepareConfig& cfg, const Encoder& enc);

// "train", "val" or "test" for a document key: a fixed function of the hash, so a
// document stays in its split when files are added or removed.
const char* split_of(const Hash128& key, double val_fraction, double test_fraction);

}  // namespace shardlm::data
