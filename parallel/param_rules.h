// Which parameters decay and which look like embeddings: the rules that
// FlatParams applies to every parameter, torch-free so that the memory
// planner (plan/) lays out a model's units exactly as ShardedModel does.
#pragma once

#include <cstddef>
#include <string>

namespace shardlm::parallel {

// Names that look like embedding tables ("wte", "wpe", "embed", "embedding").
inline bool looks_like_embedding(const std::string& name) {
  for (const char* key : {"wte", "wpe", "embed"})
    if (name.find(key) != std::string::npos) return true;
  return false;
}

// The default weight-decay rule: matrices decay; vectors (biases, norm gains)
// and embeddings do not. `dims`: the parameter's number of dims.
inline bool default_decay(const std::string& name, size_t dims) {
  return dims >= 2 && !looks_like_embedding(name);
}

}  // namespace shardlm::parallel
