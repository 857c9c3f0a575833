// A checked /v1/completions request turned into the engine's Job: prompts
// tokenized (text) or taken as ids, checked against the model (vocabulary,
// context length with max_tokens, rows per request), and the response-cache key
// of a deterministic request. Torch-free; the HTTP session adds the callbacks.
#pragma once

#include <cstdint>
#include <string>

#include "data/tokenizer.h"
#include "serve/config.h"
#include "serve/engine.h"
#include "serve/protocol.h"

namespace shardlm::serve {

struct PreparedCompletion {
  Job job;                    // prompts, n, params; no callbacks yet
  int64_t prompt_tokens = 0;  // over every prompt (usage.prompt_tokens)
  std::string cache_key;      // "" when the request is not cacheable
};

// Throws RequestError(400) naming the prompt ("prompt" or "prompt[i]") or
// max_tokens when a prompt has ids outside the model's vocabulary, does not fit
// the context, or leaves no room for max_tokens; and naming n when prompts x n
// exceeds 16 x cfg.max_batch rows.
PreparedCompletion prepare_completion(const CompletionRequest& r, const data::Tokenizer& tok,
                                      const ModelInfo& model, const ServeConfig& cfg);

}  // namespace shardlm::serve
