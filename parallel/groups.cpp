// make_process_group (see groups.h).
#include "parallel/groups.h"

#include "core/error.h"
#include "parallel/mpi_group.h"
#include "parallel/nccl_group.h"

namespace shardlm::parallel {

std::string resolve_backend(const std::string& backend, torch::Device device,
                            int ranks_per_device) {
  const bool nccl_usable = device.is_cuda() && NcclGroup::compiled() && ranks_per_device <= 1;
  if (backend == "mpi") return "mpi";
  if (backend == "nccl") {
    SHARDLM_CHECK(device.is_cuda(), core::ConfigError,
                  "parallel.backend = \"nccl\" needs train.device = \"cuda\" (the device is {})",
                  device.str());
    SHARDLM_CHECK(NcclGroup::compiled(), core::ConfigError,
                  "parallel.backend = \"nccl\": this build has no NCCL (SHARDLM_WITH_CUDA is off)");
    SHARDLM_CHECK(ranks_per_device <= 1, core::ConfigError,
                  "parallel.backend = \"nccl\": {} ranks share each GPU of this host and NCCL "
                  "needs a GPU per rank; use \"mpi\" (or \"auto\")",
                  ranks_per_device);
    return "nccl";
  }
  SHARDLM_CHECK(backend == "auto", core::ConfigError,
                "parallel.backend = \"{}\": expected \"auto\", \"nccl\" or \"mpi\"", backend);
  return nccl_usable ? "nccl" : "mpi";
}

std::shared_ptr<ProcessGroup> make_process_group(const std::string& backend, torch::Device device,
                                                 MPI_Comm comm, int ranks_per_device,
                                                 ProcessGroupOptions options) {
  if (resolve_backend(backend, device, ranks_per_device) == "nccl")
    return NcclGroup::create(comm, std::move(options), device.index());
  return std::make_shared<MpiGroup>(comm, std::move(options), device);
}

}  // namespace shardlm::parallel
