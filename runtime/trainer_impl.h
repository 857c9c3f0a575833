// Private to runtime/: the Trainer's parts, shared by trainer.cpp (setup, the
// step, the loop) and trainer_ckpt.cpp (checkpoints). Not a public header.
// Each member owns one concern; what a checkpoint holds beside the model is
// the list resumables() returns.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/checkpoint.h"
#include "model/gpt.h"
#include "parallel/loss_scaler.h"
#include "parallel/process_group.h"
#include "runtime/controls.h"
#include "runtime/counters.h"
#include "runtime/engine.h"
#include "runtime/reporter.h"
#include "runtime/run_settings.h"
#include "runtime/schedule.h"
#include "runtime/state.h"
#include "runtime/train_data.h"
#include "runtime/trainer.h"
#include "runtime/validator.h"

namespace shardlm::runtime {

// The steps since the last logged one: their values stay on the device and
// are read together (one device-to-host copy) at the next logged step; and
// the throughput of this launch.
struct StepLog {
  std::vector<torch::Tensor> losses;     // (1,) fp64 each: the global mean loss of a step
  torch::Tensor tokens;                  // (1,) fp64: target tokens of those steps, all ranks
  torch::Tensor last_norm, last_tokens;  // of the last step: (1,) fp64 each
  StepRecord last;                       // its host-side part (times, lr, local tokens)
  double seconds = 0;                    // spent in steps since this launch began
  int64_t tokens_at_start = 0;           // counters.tokens_seen when it began (a resume's)
  // What the ranks agreed on at the last logged step (or boundary).
  bool agreed = false, stop = false;
  int64_t command_bytes = 0;  // rank 0's encoded commands, broadcast at the boundary
  std::string commands;       // rank 0's
};

struct Trainer::Impl {
  RunSettings s;
  core::Env env;
  std::shared_ptr<parallel::ProcessGroup> group;  // the run's collectives, on s.device
  model::GPT model{nullptr};
  std::unique_ptr<Engine> engine;
  std::unique_ptr<TrainData> data;
  std::unique_ptr<LrSchedule> schedule;
  parallel::LossScaler scaler;
  std::unique_ptr<Validator> validator;
  std::unique_ptr<Reporter> reporter;
  std::unique_ptr<Controls> controls;
  std::unique_ptr<ckpt::Checkpointer> checkpointer;
  Counters counters;
  StepLog log;
  TrainSummary summary;

  Impl(const core::RunConfig& cfg, const core::Env& e, const core::MpiComm& comm,
       const GroupDecorator& decorate);
  // trainer.cpp
  void apply_trainable(int64_t step);
  bool step();  // one optimizer step; true when it is a logged one
  torch::Tensor forward_backward(std::vector<data::Batch>& batches, const torch::Tensor& tokens);
  void read_log(bool report, bool agree);  // the one read of the logged step
  bool boundary();                         // controls and stop signals; true: stop now
  void validate_now(bool final);
  int run();
  std::vector<StateSlot> resumables();
  // trainer_ckpt.cpp
  void save_checkpoint(bool async);
  void restore_checkpoint(const std::string& dir);
  void init_from_safetensors(const std::string& path);
};

}  // namespace shardlm::runtime
