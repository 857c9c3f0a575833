// The CPU benchmark model (bench/RESULTS.md): 4 layers, 4 heads, width 256,
// vocabulary 4096, context 128. Shared by the model benchmarks.
#pragma once

#include "model/config.h"

namespace shardlm::model::bench {

inline ModelConfig bench_config() {
  ModelConfig c;
  c.vocab_size = 4096;
  c.context_length = 128;
  c.n_layer = 4;
  c.n_head = 4;
  c.d_model = 256;
  return c;
}

}  // namespace shardlm::model::bench
