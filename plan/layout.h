// A GPT's parameters cut into the units that runtime::Engine hands to
// parallel::ShardedModel — one per transformer block, then the root (every
// parameter outside the blocks) — in model::GPT's registration order, with
// FlatParams' padding and shard ranges. Torch-free: sizes come from the
// ModelConfig alone; tests check them against a real ShardedModel.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"

namespace shardlm::plan {

struct ParamInfo {
  std::string name;  // as named_parameters() names it ("blocks.0.attn.c_attn.weight")
  int64_t numel = 0;
  bool matrix = false;     // 2-D: a matmul weight or an embedding table
  bool decay = false;      // parallel::default_decay
  bool embedding = false;  // parallel::looks_like_embedding
};

struct UnitInfo {
  std::string name;  // "unit0", ... , "root" (ShardedModel's names)
  bool root = false;
  std::vector<ParamInfo> params;  // in flat-buffer order
  int64_t numel() const;
  // FlatParams: padded to a multiple of `world` (at least `world` elements).
  int64_t padded(int world) const;
  int64_t shard(int world) const { return padded(world) / world; }
};

// The blocks (n_layer units) and then the root unit.
std::vector<UnitInfo> model_units(const model::ModelConfig& cfg);

// An optimizer's view of the range [begin, end) of a unit's padded flat
// buffer: the segments that FlatParams::segments() hands to set_segments().
struct Segment {
  int64_t begin = 0, end = 0;  // relative to the range
  int64_t param_numel = 0;     // elements of the whole parameter
  bool decay = false, padding = false, embedding = false;
};
std::vector<Segment> segments(const UnitInfo& unit, int world, int64_t begin, int64_t end);

}  // namespace shardlm::plan
