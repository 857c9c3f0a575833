// The Generate tab's generation (docs/workbench.md): one request, a prompt (or
// several) with the decoding options of docs/generation.md, answered as JSON
// events, one per token with its probability and the most probable
// alternatives, and one at the end of each prompt with the text exactly as
// `shardlm generate` prints it. The same code serves the live run (rank 0
// generates from its current weights, runtime/inspect.cpp), a checkpoint and
// a `shardlm serve` URL (`shardlm generate --events`, a process the monitor
// starts). Event shapes: monitor/inspect.schema.json ($defs/generate_*).
//
//   PlaygroundRequest r = parse_playground_request(args);   // ConfigError names a bad key
//   run_playground(r, model, tokenizer, [&](const json& event) { send(event); });
//
// Generation leaves training alone: eval mode for the call (the previous mode
// is restored), no gradients, sampling from a torch::Generator of its own, and
// the global RNG state of the model's device saved and restored around it.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "model/generate.h"
#include "model/generation_config.h"
#include "model/gpt.h"

namespace shardlm::runtime {

struct PlaygroundRequest {
  std::vector<std::string> prompts;  // at least one
  model::GenerationConfig cfg;       // eos and pad come from the tokenizer (configure_for)
  bool ignore_eos = false;
  int64_t top = 5;  // alternatives per token (0: none)
};

// {"prompt": "..."} or {"prompts": [...]}, "options": {GenerationConfig keys as
// in the [generate] section, plus ignore_eos}, "top": 0..20. Unknown keys and
// wrong types throw core::ConfigError naming the key ("options.top_p") and what
// was expected; the options are validated (GenerationConfig::validate).
PlaygroundRequest parse_playground_request(const nlohmann::json& args);

// What `shardlm generate` does with a tokenizer: its EOS ends a row (unless
// ignore_eos), its pad id pads.
void configure_for(model::GenerationConfig& cfg, const data::Tokenizer& tok, bool ignore_eos);
// A prompt's ids as `shardlm generate` encodes it ("" starts from BOS when there is one).
std::vector<int64_t> encode_prompt(const data::Tokenizer& tok, const std::string& text);

// One event per token {"event":"token", ...} and one per prompt at its end
// {"event":"done", "text", "tokens", "finish_reason", ...}, in order, through
// `emit`. The model runs as it is (its default_block_runner, e.g. a ZeRO-3
// gather, applies). Throws core::ConfigError / core::ModelError for a request
// the model cannot serve (a prompt too long for learned positions).
void run_playground(const PlaygroundRequest& req, model::GPT model, const data::Tokenizer& tok,
                    const std::function<void(const nlohmann::json&)>& emit);

}  // namespace shardlm::runtime
