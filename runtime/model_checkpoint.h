// The conversion between a sharded model and a checkpoint. A checkpoint holds
// every unit's parameters and Adam moments as [begin, end) ranges of the
// unit's flat layout, so any world size and ZeRO stage can read what any other
// wrote (resharding); the 8-bit optimizer's exact state is kept beside them
// for a resume with the same layout. The RNG states are per rank.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include "ckpt/checkpoint.h"
#include "model/config.h"
#include "parallel/sharded_model.h"

namespace shardlm::runtime {

struct ModelPieces {
  std::vector<ckpt::UnitPiece> units;                         // host copies of this rank's ranges
  nlohmann::json optimizer_steps = nlohmann::json::object();  // {unit: Adam step}
};

// This rank's ranges of every unit (at stage 0, where every rank holds the
// whole unit, rank r saves its 1/W of it). `optimizer`: the optimizer's name.
ModelPieces model_pieces(parallel::ShardedModel& sm, const std::string& optimizer);

// Loads every unit of `sm` from `reader`; `optimizer_steps` is the saved
// state's map of Adam steps; `same_layout`: saved by the same world size,
// stage and optimizer (then the 8-bit state is restored exactly). Throws
// CheckpointError naming the unit whose size differs.
void load_model_pieces(const ckpt::CheckpointReader& reader, parallel::ShardedModel& sm,
                       const std::string& optimizer, const nlohmann::json& optimizer_steps,
                       bool same_layout);

// The RNG states of this process (CPU, and `device`'s when it is CUDA).
std::map<std::string, torch::Tensor> rng_states(torch::Device device);
// Restores rank `rank`'s RNG states when the checkpoint was written by
// `world` ranks; otherwise starts a fresh stream per rank from `seed` and `step`.
void restore_rng(const ckpt::CheckpointReader& reader, int rank, int world, torch::Device device,
                 int64_t seed, int64_t step);

// Throws CheckpointError when `saved` (a ModelConfig's JSON, e.g. from a
// checkpoint or a safetensors model at `where`) is not the configuration `cfg`.
void require_same_model(const nlohmann::json& saved, const model::ModelConfig& cfg,
                        const std::string& where);

}  // namespace shardlm::runtime
