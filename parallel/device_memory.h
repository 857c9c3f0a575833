// Memory of a CUDA device as LibTorch's caching allocator and the driver see
// it: what tensors hold (allocated), what the allocator keeps from the driver
// (reserved), the allocated high-water mark, and the driver's free and total
// bytes. For the `step` message (mem.device_*) and for sizing batches from
// free memory (runtime/batch_size.h). Without SHARDLM_WITH_CUDA every
// function answers "nothing", so callers need no #ifdef.
#pragma once

#include <cstdint>
#include <optional>

namespace shardlm::parallel {

struct DeviceMemory {
  int64_t allocated = 0;       // bytes in live tensors (caching allocator)
  int64_t reserved = 0;        // bytes the caching allocator holds from the driver
  int64_t peak_allocated = 0;  // high-water mark of `allocated` since the last reset
  int64_t free = 0;            // the driver's free bytes on the device (cudaMemGetInfo)
  int64_t total = 0;           // the device's bytes
};

// Statistics of CUDA device `index`; nullopt without CUDA in the build, or
// when `index` is not a usable device.
std::optional<DeviceMemory> cuda_memory(int index);
// Starts a new high-water mark for peak_allocated (no-op without CUDA).
void reset_cuda_peak(int index);

}  // namespace shardlm::parallel
