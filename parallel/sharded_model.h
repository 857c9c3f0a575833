// ShardedModel: data parallelism applied from outside a single-device
// torch::nn::Module, at ZeRO stage 0 (DDP), 1, 2 or 3, with or without CPU
// offload. The module is cut into units (a list of its submodules, e.g. the
// transformer blocks; every parameter outside them forms one more "root"
// unit). Each unit's parameters are flattened into a FlatParams buffer (the
// module's parameters become views of it) and its gradients into a second
// one, which the module's .grad fields view, so autograd accumulates straight
// into the buffers that the collectives send.
//
//   stage 0  every rank holds everything; gradients all-reduced (avg) per
//            unit as soon as autograd has produced the unit's last gradient
//            (a post-hook on each parameter's AccumulateGrad), overlapping the
//            rest of backward. Units are the buckets.
//   stage 1  + optimizer states only for this rank's shard of each unit:
//            gradients reduce-scattered at the last micro-batch, each rank
//            steps its shard, then an all-gather refreshes the parameters.
//   stage 2  + gradients reduce-scattered at every micro-batch into a shard
//            accumulator; the full gradient buffers are freed between steps.
//   stage 3  + parameters sharded: a unit's full parameters exist only
//            around its forward (run_unit) and its backward (a pre-backward
//            hook gathers them again), with the next unit prefetched.
//   offload  fp32 master shards and optimizer states on the CPU; the step
//            runs there (CpuAdam), updated values are copied back.
//   offload_params (layer streaming; stage 3 + offload): the parameter
//            shards live only on the host as well. A unit's shard is copied
//            to the device just before its all-gather, the next unit's is
//            prefetched, and its full gradient exists on the device only
//            from the start of its backward until its reduce-scatter has
//            landed on the host. The compute device then holds about two
//            units' parameters and gradients (plus the root's) at any time,
//            so a model larger than device memory trains.
//   On a GPU, offload's transfers run on a copy stream of their own
//   (copy_stream.h) between pinned host buffers and the device: the step
//   copies every unit's gradient down first and then, unit by unit, waits for
//   one, steps it on the CPU and sends it back while the next is stepped;
//   streaming fetches a unit's shard (and issues its all-gather) on the copy
//   stream, and lands reduced gradients without stopping the host, so the
//   compute stream never queues behind a transfer.
//
// Per micro-batch: begin_micro_batch(last) -> forward, calling run_unit(i, x, f)
// for each unit -> loss.backward() -> ... -> step() after the last one.
// The loss of every rank must be a mean over its own samples; gradients are
// averaged over ranks, so all ranks together compute the gradient of the
// global mean (scale the loss by 1/micro-batches for accumulation).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "parallel/copy_stream.h"
#include "parallel/flat_params.h"
#include "parallel/optimizer.h"
#include "parallel/process_group.h"

namespace shardlm::core {
class ConfigSection;
}

namespace shardlm::parallel {

// The [parallel] section of a run configuration.
struct ShardedConfig {
  int64_t zero_stage = 0;  // 0 (DDP), 1, 2, 3
  bool cpu_offload = false;
  bool prefetch = true;  // stage 3: gather the next unit while this one runs
  // Layer streaming: parameter shards on the host too (needs zero_stage 3 and
  // cpu_offload); the device holds only the units in use.
  bool offload_params = false;
  // Between ranks: "auto" (NCCL when every rank has a GPU of its own and this
  // build has NCCL, MPI otherwise), "nccl" or "mpi" (see make_process_group).
  std::string backend = "auto";
  // A collective (MPI or NCCL) that has not completed after this long ends the
  // job: the watchdog names the ranks that did not arrive and the collective,
  // on every rank, then aborts (watchdog.h). Seconds; the default is 10 minutes.
  double collective_timeout_s = 600;

  static ShardedConfig from(const core::ConfigSection& s);
  void validate() const;
  // The options of the run's process group (MpiGroup or NcclGroup): the timeout above.
  ProcessGroupOptions group_options() const;
};

class ShardedModel {
 public:
  using UnitFn = std::function<torch::Tensor(const torch::Tensor&)>;

  // `units`: submodules of `module` (each parameter in at most one). The
  // parameters are copied from rank 0 to every rank first, so all ranks start
  // alike. Collective over `group`.
  ShardedModel(std::shared_ptr<torch::nn::Module> module,
               std::vector<std::shared_ptr<torch::nn::Module>> units,
               std::shared_ptr<ProcessGroup> group, ShardedConfig config,
               OptimizerConfig optimizer);
  ~ShardedModel();
  ShardedModel(const ShardedModel&) = delete;
  ShardedModel& operator=(const ShardedModel&) = delete;

  // Call before each micro-batch's forward. `last`: this micro-batch completes
  // the step (stages 0 and 1 reduce gradients only then).
  void begin_micro_batch(bool last = true);
  // Runs unit i: y = f(x). Stage 3 gathers the unit's parameters first and
  // frees them after (and again around the unit's backward).
  torch::Tensor run_unit(size_t i, const torch::Tensor& x, const UnitFn& f);
  // After the last micro-batch's backward: finishes the reductions, clips to
  // max_grad_norm (when > 0) by the global norm, steps the optimizers and
  // refreshes the parameters. Returns the global gradient norm before clipping
  // as a 0-dim fp64 tensor on the device: the step itself never waits for it.
  torch::Tensor step(double max_grad_norm = 0.0);

  // After the last micro-batch's backward: finishes the reductions and returns
  // the gradients step() will use, one tensor per unit: the whole unit at
  // stage 0 (the same on every rank), this rank's shard otherwise. For a
  // LossScaler: unscale_ them (with the group), then step() or skip_step().
  std::vector<torch::Tensor> reduced_grads();
  // Drops this step's gradients without touching parameters or optimizer
  // states (an fp16 overflow).
  void skip_step();

  // At stage 3 a unit's full parameters hold memory only inside run_unit and
  // the unit's backward: reading the module's parameters directly elsewhere
  // (export, evaluation without run_unit) needs gather_all() first
  // (collective; they stay until the unit's next run_unit).
  void gather_all();

  void set_lr(double lr);
  // Layer-wise training: a frozen unit's parameters get no gradient, take no
  // part in the reductions and are not stepped (their optimizer state is kept
  // for when they thaw). Activations still backpropagate through the unit.
  // Call between steps. The root unit cannot be frozen.
  void set_frozen(size_t i, bool frozen);
  bool frozen(size_t i) const;
  int64_t num_params() const;            // unpadded, all units
  int64_t num_trainable_params() const;  // unpadded, units not frozen
  size_t num_units() const { return units_.size(); }
  ProcessGroup& group() { return *group_; }
  const ShardedConfig& config() const { return config_; }
  const FlatParams& unit_layout(size_t i) const;
  // "unit0", "unit1", ... for the given units, "root" for the rest (checkpoint keys).
  const std::string& unit_name(size_t i) const;
  Optimizer& unit_optimizer(size_t i);

  // This rank's part of the training state for a checkpoint, keyed
  // "<unit>.<entry>": "<unit>.params" (fp32 parameters of the rank's shard; the
  // whole unit at stage 0), "<unit>.range" (int64 [begin, end, padded numel] of
  // that shard in the unit's flat layout) and "<unit>.optim.<key>" (the
  // optimizer's exact state). Units are "unit0", "unit1", ..., "root".
  StateDict state_dict() const;
  // Restores a state_dict() of the same world size, stage and model; the
  // parameters of every rank are refreshed (collective). Throws
  // core::CheckpointError naming the entry that is missing or mis-shaped.
  void load_state_dict(const StateDict& state);

  // Resharding-friendly loading, one unit at a time: `params` holds this
  // rank's elements of unit i — the whole unit at stage 0, else its shard
  // range (unit_layout(i).shard_range(rank)), padding included — and
  // `optimizer`, when given, the optimizer's state for them (raw, or dense
  // "exp_avg"/"exp_avg_sq"/"step" loaded with load_dense_state). After the
  // last unit call finish_load() (collective: refreshes the parameters).
  void load_unit(size_t i, const torch::Tensor& params, const StateDict* optimizer, bool dense);
  void finish_load();
  // This rank's elements of unit i as load_unit() takes them, and the dense
  // optimizer state for them (empty before the unit's first step).
  torch::Tensor unit_params(size_t i) const;
  StateDict unit_dense_state(size_t i) const;
  // [begin, end) of unit i's padded flat layout that load_unit/unit_params cover.
  std::pair<int64_t, int64_t> unit_range(size_t i) const;

  // Bytes this rank holds now for model states. `params`, `grads`,
  // `optimizer`: on the compute device; `host`: offloaded master parameters,
  // gradient copies and optimizer states.
  struct Memory {
    int64_t params = 0, grads = 0, optimizer = 0, host = 0;
    int64_t total() const { return params + grads + optimizer + host; }
  };
  Memory memory() const;
  // The largest value each field of memory() reached since construction or
  // the last reset_peak_memory() (fields peak independently), sampled at
  // every allocation of parameters or gradients on the compute device.
  Memory peak_memory() const { return peak_; }
  void reset_peak_memory() { peak_ = memory(); }

  struct Unit;  // sharded_model.cpp

 private:
  void gather(Unit& u, bool wait);
  void release_params(Unit& u);
  void on_unit_grads_ready(Unit& u);
  void finish_reductions();
  void zero_grads();
  void pre_backward(size_t i);
  void land_grads(Unit& u);
  void finish_landing(Unit& u);
  void note_memory();

  std::shared_ptr<torch::nn::Module> module_;
  std::shared_ptr<ProcessGroup> group_;
  ShardedConfig config_;
  std::vector<std::unique_ptr<Unit>> units_;  // the given units, then the root
  bool last_micro_batch_ = true;
  bool in_step_ = false;
  Memory peak_;
  std::vector<Unit*> in_flight_;        // offload_params: reductions not yet landed on the host
  std::unique_ptr<CopyStream> copier_;  // offload: host<->device transfers
  friend struct PreBackwardFn;
};

}  // namespace shardlm::parallel
