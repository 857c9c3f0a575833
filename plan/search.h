// --search: every way to run a fixed global batch on the given ranks — ZeRO
// stage, CPU offload, layer streaming, activation checkpointing, and the
// split of the batch into micro-batch x accumulation — planned one by one.
// The configurations that fit come out fastest first; each rejected one
// carries its plan, whose verdict says why (which memory, how much over).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plan/plan.h"

namespace shardlm::plan {

struct SearchOptions {
  int64_t global_batch = 0;  // rows per optimizer step over all ranks; 0: base's
  std::vector<int> stages{0, 1, 2, 3};
  bool try_offload = true;    // CPU offload at every stage
  bool try_streaming = true;  // layer streaming (stage 3 + offload)
  bool try_checkpointing = true;
};

struct SearchResult {
  int64_t global_batch = 0;
  std::vector<Plan> fitting;   // fastest first
  std::vector<Plan> rejected;  // in search order
};

// Plans every combination; base supplies the model, sequence length,
// precision, optimizer, world and hardware. Throws core::ConfigError when the
// global batch is not a multiple of the world size.
SearchResult search(const PlanInput& base, const SearchOptions& options);

// "ZeRO-3 + offload + ckpt, 4 x 2" (micro-batch x accumulation).
std::string describe(const PlanInput& input);

nlohmann::json to_json(const SearchResult& result);
// The fitting configurations (at most `rows`), then, per configuration family
// (stage, offload, streaming, checkpointing) with no member that fits, its
// smallest member and why it does not fit.
std::string format_search(const SearchResult& result, size_t rows = 20);

}  // namespace shardlm::plan
