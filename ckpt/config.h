// The [ckpt] section: when to save, what to keep, how to resume.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"

namespace shardlm::ckpt {

struct CheckpointConfig {
  int64_t every = 0;       // save every K optimizer steps; 0 = only at the end and on signals
  int64_t keep_last = 3;   // newest n checkpoints kept
  int64_t keep_best = 1;   // best m by validation loss kept (0 = none)
  int64_t keep_every = 0;  // every P-th step kept for good (0 = none)
  bool async = true;       // write in a background thread (snapshot in host memory first)
  bool save_final = true;  // save when the run ends
  std::string resume;      // "" | "latest" | a checkpoint directory
  static CheckpointConfig from(const core::ConfigSection& s);
  void validate() const;
};

}  // namespace shardlm::ckpt
