// Private to runtime/: the Trainer's state, shared by trainer.cpp (setup and
// the loop) and trainer_ckpt.cpp (checkpoints). Not a public header.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/checkpoint.h"
#include "ckpt/config.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "model/config.h"
#include "model/gpt.h"
#include "monitor/config.h"
#include "monitor/control.h"
#include "monitor/hardware.h"
#include "parallel/loss_scaler.h"
#include "parallel/sharded_model.h"
#include "runtime/early_stopping.h"
#include "runtime/engine.h"
#include "runtime/progress.h"
#include "runtime/schedule.h"
#include "runtime/train_config.h"
#include "runtime/trainer.h"

namespace shardlm::runtime {

// --------------------------------------------------------------------

struct Trainer::Impl {
  core::RunConfig run_cfg;
  core::Env env;
  TrainConfig train;
  ValidationConfig val;
  model::ModelConfig model_cfg;
  data::LoaderConfig data_cfg;
  parallel::OptimizerConfig opt_cfg;
  parallel::ShardedConfig shard_cfg;
  parallel::LossScalerConfig scaler_cfg;
  monitor::MonitorConfig mon_cfg;
  ckpt::CheckpointConfig ckpt_cfg;
  std::string init_from;  // train.init_from: a safetensors model to start from

  torch::Device device{torch::kCPU};
  c10::ScalarType amp = c10::kFloat;
  std::shared_ptr<parallel::ProcessGroup> group;
  model::GPT model{nullptr};
  std::unique_ptr<Engine> engine;
  std::unique_ptr<data::Loader> loader, val_loader;
  data::LoaderState val_start;
  std::unique_ptr<LrSchedule> schedule;
  parallel::LossScaler scaler;
  EarlyStopping early;
  monitor::Monitor mon;
  std::unique_ptr<monitor::HardwareProbe> probe;
  std::unique_ptr<Progress> progress;
  std::unique_ptr<ckpt::Checkpointer> checkpointer;
  std::optional<data::Tokenizer> tokenizer;  // for inspection; may be absent
  std::optional<double> last_val_loss;
  bool save_requested = false;  // a save_checkpoint command

  int64_t step_ = 0;            // optimizer steps done
  int64_t tokens_seen = 0;      // over all ranks
  int64_t tokens_at_start = 0;  // tokens_seen when this launch began (a resume's)
  int64_t last_val_step = -1;   // step of the last validation
  int64_t trainable_k = -1;     // blocks trainable now (layer-wise training)
  int64_t micro_batch = 0;
  bool paused = false;
  bool stop_requested = false;
  double clip = 0;
  TrainSummary summary;
  double train_seconds = 0;

  MPI_Comm comm;
  Impl(const core::RunConfig& cfg, const core::Env& e, MPI_Comm c)
      : run_cfg(cfg), env(e), comm(c) {}
  void setup();
  void apply_trainable(int64_t step);
  void choose_batch();
  double step();  // one optimizer step; returns the global mean loss
  void handle_control();
  void apply(const monitor::ControlCommand& c);
  void inspect(const monitor::ControlCommand& c);
  void load_tokenizer();
  void validate_now(bool final);
  void write_report();
  int run();
  // trainer_ckpt.cpp
  ckpt::Snapshot snapshot();
  void save_checkpoint(bool async);
  void restore_checkpoint(const std::string& dir);
  void init_from_safetensors(const std::string& path);
  std::string unit_name(size_t i) const;
};

}  // namespace shardlm::runtime
