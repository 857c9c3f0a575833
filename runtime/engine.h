// Engine: how the trainer's GPT meets the ranks. It cuts the model into units
// (one per transformer block; embeddings, final norm and head form the root
// unit) and hands them to parallel::ShardedModel, which applies ZeRO stage
// 0-3 and CPU offload from outside; the model code stays single-device.
// The trainer's step, per optimizer step:
//   for each micro-batch: begin_micro_batch(last) -> forward with
//   block_runner() -> backward;  then  grads() (loss scaler) -> step(lr, clip)
//   or skip_step().
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "model/gpt.h"
#include "parallel/optimizer.h"
#include "parallel/process_group.h"
#include "parallel/sharded_model.h"

namespace shardlm::runtime {

class Engine {
 public:
  // Collective over `group`: every rank starts from rank 0's parameters.
  Engine(model::GPT model, parallel::ShardedConfig sharding, parallel::OptimizerConfig opt,
         std::shared_ptr<parallel::ProcessGroup> group, torch::Device device);

  // Layer-wise training: blocks below n_layer - k are frozen (no gradients, no
  // optimizer step); the root unit always trains. k >= n_layer: all train.
  void set_trainable_top_blocks(int64_t k);
  // The k last set (-1 before the first call).
  int64_t trainable_top_blocks() const { return trainable_k_; }

  // Runs each block through the sharded model (ZeRO-3 gathers), with
  // activation checkpointing when asked.
  model::BlockRunner block_runner(bool activation_checkpointing);
  void begin_micro_batch(bool last) { sharded_->begin_micro_batch(last); }
  // The reduced gradients step() will use (for the fp16 loss scaler).
  std::vector<torch::Tensor> grads() { return sharded_->reduced_grads(); }
  // Clips to the global norm (clip > 0) and steps; returns the norm before
  // clipping (0-dim fp64 on the device; reading it is the caller's sync).
  torch::Tensor step(double lr, double clip);
  void skip_step() { sharded_->skip_step(); }
  void set_weight_decay(double wd);
  double weight_decay() const { return weight_decay_; }
  // Makes every parameter readable outside a forward (ZeRO-3; a no-op otherwise).
  void gather_all() { sharded_->gather_all(); }

  parallel::ShardedModel& sharded() { return *sharded_; }
  int64_t num_trainable() const { return sharded_->num_trainable_params(); }
  // Bytes of parameters + gradients + optimizer state on the compute device
  // and offloaded to the host.
  parallel::ShardedModel::Memory memory() const { return sharded_->memory(); }
  // Calls, bytes and seconds of this rank's collectives since the start.
  const parallel::CommStats& comm_stats() const { return group_->stats(); }

 private:
  model::GPT model_;
  std::shared_ptr<parallel::ProcessGroup> group_;
  std::unique_ptr<parallel::ShardedModel> sharded_;
  double weight_decay_;
  int64_t trainable_k_ = -1;
};

}  // namespace shardlm::runtime
