// MpiGroup: the ProcessGroup over MPI for CPU tensors and, in a build with
// SHARDLM_WITH_CUDA, CUDA tensors (float32, float64, fp16, bf16, int32, int64,
// uint8). CUDA tensors are staged through pinned host memory (copied after the
// work queued on the caller's current stream, copied back before the Work
// completes), so ranks that share one GPU, which NCCL refuses, still run every
// collective on device tensors. fp16 and bf16 travel as 2-byte values and are
// reduced by user-defined MPI_Ops that widen each pair to fp32, combine and
// round back (as NCCL does), so the bytes on the wire stay half-sized.
//
// One communication thread per group runs the collectives in issue order with
// MPI's blocking calls; the caller's thread only enqueues. A watchdog (see
// watchdog.h) keeps the deadline of the collective in flight.
#pragma once

#include <mpi.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "parallel/process_group.h"
#include "parallel/watchdog.h"

namespace shardlm::parallel {

class MpiGroup final : public ProcessGroup {
 public:
  // Duplicates `comm`: collective over its ranks. MPI must be initialised with
  // MPI_THREAD_MULTIPLE (core::MpiSession does that). `device`: where the
  // run's tensors live (device() of ProcessGroup).
  explicit MpiGroup(MPI_Comm comm = MPI_COMM_WORLD, ProcessGroupOptions options = {},
                    torch::Device device = torch::kCPU);
  // Waits for the collectives still queued, then frees the communicators.
  ~MpiGroup() override;

  std::string backend() const override { return "mpi"; }
  MPI_Comm comm() const { return comm_; }
  // Sequence number of the last collective issued by this rank (the first is 1).
  int64_t issued() const;
  // Tests: stage CPU tensors through separate host buffers, as CUDA tensors
  // are, so that the staging path runs (and is checked) without a GPU. Set
  // before issuing collectives.
  void set_stage_cpu_tensors(bool on) { stage_cpu_ = on; }

  WorkPtr all_reduce_async(torch::Tensor tensor, ReduceOp op = ReduceOp::kSum,
                           const CollectiveOptions& opts = {}) override;
  WorkPtr reduce_scatter_async(torch::Tensor output, torch::Tensor input,
                               ReduceOp op = ReduceOp::kSum,
                               const CollectiveOptions& opts = {}) override;
  WorkPtr all_gather_async(torch::Tensor output, torch::Tensor input,
                           const CollectiveOptions& opts = {}) override;
  WorkPtr broadcast_async(torch::Tensor tensor, int root,
                          const CollectiveOptions& opts = {}) override;
  WorkPtr barrier_async(const CollectiveOptions& opts = {}) override;

 private:
  struct Op;
  WorkPtr enqueue(Collective kind, std::string what, uint64_t payload_bytes,
                  const CollectiveOptions& opts, std::function<void()> run);
  void run_thread();
  void execute(Op& op);

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::unique_ptr<Watchdog> watchdog_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Op>> queue_;
  bool stop_ = false;
  bool stage_cpu_ = false;
  int64_t seq_ = 0;
  std::thread thread_;
};

}  // namespace shardlm::parallel
