// Every section of a training run's configuration, read and checked once
// (unknown keys are refused), and what follows from them: the compute device
// and the autocast dtype. The Trainer and its parts read their settings here.
#pragma once

#include <torch/types.h>

#include "ckpt/config.h"
#include "core/config.h"
#include "core/env.h"
#include "data/loader.h"
#include "model/config.h"
#include "monitor/config.h"
#include "parallel/loss_scaler.h"
#include "parallel/optimizer.h"
#include "parallel/sharded_model.h"
#include "runtime/train_config.h"

namespace shardlm::runtime {

struct RunSettings {
  core::RunConfig run;  // the whole file + overrides (saved with the run and its checkpoints)
  TrainConfig train;
  ValidationConfig val;
  model::ModelConfig model;
  data::LoaderConfig data;
  parallel::OptimizerConfig opt;
  parallel::ShardedConfig shard;
  parallel::LossScalerConfig scaler;  // enabled = (train.precision == "fp16")
  monitor::MonitorConfig mon;
  ckpt::CheckpointConfig ckpt;
  torch::Device device{torch::kCPU};
  c10::ScalarType amp = c10::kFloat;  // autocast dtype; kFloat = none

  // Reads every section of `cfg` (train, validation, model, data, optimizer,
  // parallel, loss_scaler, monitor, ckpt, log), sets the log level, checks for
  // unknown keys and settings that do not fit together; throws ConfigError
  // naming the key.
  static RunSettings read(const core::RunConfig& cfg, const core::Env& env);
};

}  // namespace shardlm::runtime
