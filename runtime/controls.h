// Control commands from the dashboard, applied by every rank at the same step
// boundary (rank 0 polls its channel; the trainer broadcasts the encoded
// commands over the run's process group), and the live settings they change. A new command: its
// kind in monitor/control.h and its case in Controls::apply (controls.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/env.h"
#include "data/tokenizer.h"
#include "model/gpt.h"
#include "monitor/control.h"
#include "parallel/process_group.h"
#include "runtime/early_stopping.h"
#include "runtime/engine.h"
#include "runtime/reporter.h"
#include "runtime/schedule.h"
#include "runtime/train_data.h"

namespace shardlm::runtime {

class Controls {
 public:
  // What the commands act on (all outlive the Controls).
  struct Targets {
    model::GPT model{nullptr};
    Engine* engine = nullptr;
    LrSchedule* schedule = nullptr;
    TrainData* data = nullptr;
    EarlyStopping* early = nullptr;
    Reporter* reporter = nullptr;
    int64_t* accumulation = nullptr;  // train.accumulation, changed by set_batch
    torch::Device device{torch::kCPU};
  };
  // `clip`: train.grad_clip. `tokenizer`: for inspection prompts (may be absent).
  Controls(Targets t, const core::Env& env, double clip, std::optional<data::Tokenizer> tokenizer);

  // Rank 0: the commands received since the last call, encoded ("" = none).
  std::string poll();
  // Applies encoded commands (the same on every rank) at `step`.
  void apply_all(const std::string& encoded, int64_t step);
  void apply(const monitor::ControlCommand& c, int64_t step);

  bool paused() const { return paused_; }
  bool stop_requested() const { return stop_; }
  // True once after a save_checkpoint command.
  bool take_save_request() { return std::exchange(save_, false); }
  double clip() const { return clip_; }
  Knobs knobs() const;

  // The state protocol (runtime/state.h): the live settings a resume keeps
  // (clip and weight decay; micro-batch and accumulation are recorded).
  std::string key() const { return "settings"; }
  nlohmann::json state() const;
  void load_state(const nlohmann::json& j);

 private:
  void inspect(const monitor::ControlCommand& c, int64_t step);

  Targets t_;
  core::Env env_;
  double clip_;
  std::optional<data::Tokenizer> tokenizer_;
  bool paused_ = false, stop_ = false, save_ = false;
};

// The tokenizer that goes with the training data, for inspection prompts:
// train.tokenizer when set (checked against the data's hash), else the first
// tokenizer.json in data.path or its parent whose hash is the data's. Collective:
// used only when every rank found it (hosts of a multi-host run have their own disks).
std::optional<data::Tokenizer> find_data_tokenizer(const std::string& configured,
                                                   const std::string& data_path,
                                                   const data::Manifest& manifest,
                                                   core::Comm& comm);

}  // namespace shardlm::runtime
