// NcclGroup: the ProcessGroup over NCCL for CUDA tensors (fp32, fp16, bf16,
// fp64, int32, int64, uint8). One communicator per group; its unique id is
// made on rank 0 and broadcast over MPI. Collectives are enqueued on the
// group's own CUDA stream after the caller's current stream, so they overlap
// with compute; Work::wait() makes the caller's stream wait and blocks until
// the collective completed or the watchdog fired.
//
// NCCL alone cannot say which rank is stuck: a monitor thread polls the CUDA
// events of the collectives in flight and arms the same MPI watchdog as
// MpiGroup (watchdog.h), which asks every rank over MPI how far it got.
//
// Compiled only with SHARDLM_WITH_CUDA (a CUDA LibTorch and NCCL). Otherwise
// the class still exists and create() throws core::NotCompiled.
#pragma once

#include <mpi.h>

#include <memory>

#include "parallel/process_group.h"

namespace shardlm::parallel {

class NcclGroup final : public ProcessGroup {
 public:
  // Collective over the ranks of `comm`. device: CUDA device index, or -1 for
  // the current device. Throws core::NotCompiled without CUDA/NCCL, and
  // core::NcclError / core::CudaError when NCCL cannot start.
  static std::shared_ptr<NcclGroup> create(MPI_Comm comm = MPI_COMM_WORLD,
                                           ProcessGroupOptions options = {}, int device = -1);
  // Whether this build has NCCL.
  static bool compiled();
  ~NcclGroup() override;

  std::string backend() const override { return "nccl"; }
  int device_index() const { return index_; }

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

  struct Impl;  // CUDA/NCCL state (nccl_group.cpp)

 private:
  NcclGroup(int rank, int size, ProcessGroupOptions options, int device);
  int index_ = -1;  // the CUDA device (device() is the same as a torch::Device)
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardlm::parallel
