// Dynamic batch sizing (train.auto_batch): the largest micro-batch that fits
// (on a GPU by trying, halving after an out-of-memory; on the CPU within
// train.memory_budget_mb from an activation estimate), then the accumulation
// that brings micro_batch x accumulation x ranks closest to train.global_batch
// without going over.
#pragma once

#include <cstdint>

#include "model/gpt.h"
#include "runtime/engine.h"
#include "runtime/run_settings.h"

namespace shardlm::runtime {

struct BatchChoice {
  int64_t micro_batch = 1;
  int64_t accumulation = 1;
};

// Collective on a GPU (trial steps run through the engine); leaves the model
// and optimizer untouched (every trial step is skipped).
BatchChoice choose_batch(const RunSettings& s, model::GPT& model, Engine& engine, int world);

}  // namespace shardlm::runtime
