// The process group a run uses, chosen from `parallel.backend` and where the
// ranks run. NCCL needs a GPU of its own per rank (it refuses two ranks on one
// device); MpiGroup works everywhere, staging GPU tensors through host memory.
//
//   auto group = parallel::make_process_group("auto", device, MPI_COMM_WORLD,
//                                             /*ranks_per_device=*/1);
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include <torch/types.h>

#include "parallel/process_group.h"

namespace shardlm::parallel {

// backend: "auto" (NCCL when `device` is CUDA, this build has NCCL and no two
// ranks share a device; MPI otherwise), "nccl" (throws ConfigError when it
// cannot be used, saying why) or "mpi". `ranks_per_device`: local ranks per
// GPU on this host (> 1: several ranks share one device).
std::shared_ptr<ProcessGroup> make_process_group(const std::string& backend, torch::Device device,
                                                 MPI_Comm comm, int ranks_per_device,
                                                 ProcessGroupOptions options = {});

// The backend "auto" resolves to: "nccl" or "mpi".
std::string resolve_backend(const std::string& backend, torch::Device device, int ranks_per_device);

}  // namespace shardlm::parallel
