// Validation: mean loss per token, perplexity and next-token accuracy (top-1,
// top-5) of a model on `batches` batches of a loader, summed over all ranks.
#pragma once

#include <cstdint>

#include "data/loader.h"
#include "model/gpt.h"
#include "parallel/process_group.h"

namespace shardlm::runtime {

struct EvalResult {
  double loss = 0;        // mean cross entropy per target token (nats)
  double perplexity = 0;  // exp(loss)
  double top1 = 0;        // fraction of targets that are the arg-max
  double top5 = 0;        // fraction of targets among the 5 most likely
  int64_t tokens = 0;     // targets counted, over all ranks
  int64_t batches = 0;    // per rank
};

// Runs in eval mode under no-grad (restores the previous mode), with autocast
// `dtype` (kFloat: none). `group` may be null (one rank). `runner`: how blocks
// run (the engine's, so that ZeRO-3 gathers their parameters).
EvalResult evaluate(model::GPT& model, data::Loader& loader, int64_t batches,
                    parallel::ProcessGroup* group, torch::Device device,
                    c10::ScalarType dtype = c10::kFloat, model::BlockRunner runner = {});

}  // namespace shardlm::runtime
