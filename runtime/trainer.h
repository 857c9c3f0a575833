// runtime::Trainer: the training loop, the one place where the model, the
// data, the parallel engine, the monitor and checkpoints meet.
// A step reads top to bottom in Trainer::Impl::step(): get batches -> forward
// -> loss -> backward -> reduce -> clip -> optimizer -> schedule -> metrics;
// then run() does control -> validation / early stopping -> checkpoint
// cadence. One code path for every world size.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "core/comm.h"
#include "core/config.h"
#include "core/env.h"

namespace shardlm::parallel {
class ProcessGroup;
}

namespace shardlm::runtime {

// Exit code of a run stopped by SIGTERM/SIGUSR1 after a clean stop (75 =
// EX_TEMPFAIL: "try again"), which SLURM scripts use to requeue.
inline constexpr int kExitStoppedBySignal = 75;

struct TrainSummary {
  int64_t steps_done = 0;
  std::vector<double> losses;  // global mean loss of each optimizer step
  double final_val_loss = 0;
  double best_val_loss = 0;
  int64_t best_step = -1;
  bool early_stopped = false;
  bool stopped = false;     // by a control command or a signal
  double tokens_per_s = 0;  // over all ranks, mean over the run
};

// Wraps the process group a run chose (parallel.backend) before anything
// uses it: tests record the traffic through it.
using GroupDecorator =
    std::function<std::shared_ptr<parallel::ProcessGroup>(std::shared_ptr<parallel::ProcessGroup>)>;

class Trainer {
 public:
  // Reads every section it needs from `cfg` (train, validation, model, data,
  // optimizer, parallel, loss_scaler, monitor, ckpt, log) and checks for
  // unknown keys; throws ConfigError / DataError / ModelError naming what is wrong.
  // `comm` holds the ranks of this run (tests run a one-rank trainer on
  // MPI_COMM_SELF inside a larger job); `env` must describe the same world.
  Trainer(const core::RunConfig& cfg, const core::Env& env,
          const core::MpiComm& comm = core::MpiComm(MPI_COMM_WORLD), GroupDecorator decorate = {});
  ~Trainer();
  // Trains until the configured number of steps, an early stop, a stop
  // command or a stop signal. Returns the process exit code (0, or
  // kExitStoppedBySignal).
  int run();
  const TrainSummary& summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardlm::runtime
