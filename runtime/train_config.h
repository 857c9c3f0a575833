// The [train], [validation] and [log] sections of a run: what the loop does,
// independent of the model, the data and the parallel layout (those have
// their own sections: [model], [data], [optimizer], [parallel], [monitor]...).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "runtime/early_stopping.h"
#include "runtime/schedule.h"

namespace shardlm::runtime {

struct TrainConfig {
  std::string run_dir = "runs/default";
  int64_t seed = 1234;
  int64_t steps = 1000;            // optimizer steps
  int64_t accumulation = 1;        // micro-batches per optimizer step and rank
  double grad_clip = 1.0;          // global-norm clipping; 0 = off
  std::string precision = "fp32";  // fp32 | bf16 | fp16 (dynamic loss scaling)
  std::string device = "auto";     // auto (cuda:<local rank> when available) | cpu | cuda
  std::string init_from;           // start from this safetensors model (fine-tuning)
  // The tokenizer of the data, for the dashboard's model inspection (prompts)
  // and for what the run records; default: tokenizer.json in data.path or its
  // parent folder when its hash is the one the data was prepared with.
  std::string tokenizer;
  bool activation_checkpointing = false;
  int64_t log_every = 1;
  // Layer-wise training: pairs [step, k]: from `step` on, only the top k blocks
  // (and the final norm and head) train; k < 0 or k >= n_layer = everything.
  // Empty = everything from the start.
  std::vector<std::vector<int64_t>> freeze_schedule;
  // Dynamic batch sizing: choose the largest micro-batch that fits (GPU: by
  // trying; CPU: within memory_budget_mb), then set accumulation so that
  // micro_batch x accumulation x ranks is as close to global_batch as fits, never above.
  bool auto_batch = false;
  int64_t global_batch = 0;      // rows per optimizer step over all ranks (auto_batch)
  int64_t memory_budget_mb = 0;  // CPU auto_batch: bytes this rank may use for training
  ScheduleConfig schedule;

  static TrainConfig from(const core::ConfigSection& s);
  void validate() const;
  // Number of top blocks that train at `step` (n_layer = all).
  int64_t trainable_blocks(int64_t step, int64_t n_layer) const;
};

struct ValidationConfig {
  int64_t every = 100;   // steps between validations; 0 = only at the end
  int64_t batches = 20;  // batches per rank per validation
  std::string split = "val";
  EarlyStoppingConfig early_stopping;
  static ValidationConfig from(const core::ConfigSection& s);
  void validate() const;
};

}  // namespace shardlm::runtime
