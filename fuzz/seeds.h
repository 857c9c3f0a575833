// Seed corpora for the fuzz targets: small valid inputs made with shardlm's
// own writers (a tokenizer trained here in four formats, HDF5 shards, a
// dataset, a committed checkpoint, safetensors with a config) and the
// project's own test files (configs/*.toml, configs/eval/*.jsonl, the
// dashboard's captured aggregator session, the requests of tests/serve).
// Every seed is checked to load with the reader its target calls, so a format
// change that breaks a seed fails here (tests/fuzz) instead of silently
// shrinking what the fuzzer starts from.
#pragma once

#include <string>
#include <vector>

namespace shardlm::fuzz {

// Writes out_dir/<target>/seed-*; `source_dir` is the repository (for its test
// files). Needs MPI initialised (the checkpoint is written by a Checkpointer
// on MPI_COMM_SELF). Returns the number of seeds written per target, in
// target-name order. Throws core::Error when a seed does not load.
std::vector<std::pair<std::string, size_t>> write_seeds(const std::string& out_dir,
                                                        const std::string& source_dir);

}  // namespace shardlm::fuzz
