// Model inspection for the dashboard's Model tab: attention maps, the
// embedding space, MLP activations and the module tree of the live model, in
// the shapes of docs/monitor-inspect.md (monitor/inspect.schema.json); and
// the Generate tab's generation from the live weights (runtime/playground.h),
// streamed token by token through `partial`.
//
// Collective: every rank calls inspect_model with the same request at the same
// step boundary (the trainer broadcasts commands), because a ZeRO-3 forward
// gathers each block from all ranks. Every rank computes the answer; rank 0
// sends it.
#pragma once

#include <functional>
#include <string>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "model/gpt.h"

namespace shardlm::runtime {

struct InspectTarget {
  model::GPT model{nullptr};
  model::BlockRunner runner;                   // runs block i (the engine's: gathers it)
  const data::Tokenizer* tokenizer = nullptr;  // null: requests with a prompt are refused
  torch::Device device{torch::kCPU};
  int64_t max_prompt_tokens = 64;  // longer prompts are cut (attention is T x T per head)
  // generate: each token's event as it is produced (rank 0 sends it; may be empty),
  // the step the weights are at, and the request's id (seeds sampling when the
  // request has no seed: the same on every rank, so ZeRO-3 ranks stay in step).
  std::function<void(const nlohmann::json&)> partial;
  int64_t step = -1;
  std::string request_id;
};

// The `data` of an inspect_result for `what` (attention | embeddings |
// activations | architecture | generate) with `args` as in the schema; for
// generate, the last event ("done"), the others having gone to `partial`. Throws
// core::ConfigError naming the problem (unknown `what`, a layer out of range, no
// tokenizer, an empty prompt); the caller answers ok:false with that message.
// Runs without gradients, in eval mode, and restores the training mode.
nlohmann::json inspect_model(const std::string& what, const nlohmann::json& args,
                             InspectTarget& target);

}  // namespace shardlm::runtime
