// CUDA caching-allocator statistics (see device_memory.h).
#include "parallel/device_memory.h"

#ifdef SHARDLM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime.h>
#endif

namespace shardlm::parallel {

#ifdef SHARDLM_WITH_CUDA
namespace {
bool usable(int index) {
  return index >= 0 && index < static_cast<int>(c10::cuda::device_count());
}
}  // namespace

std::optional<DeviceMemory> cuda_memory(int index) {
  if (!usable(index)) return std::nullopt;
  namespace alloc = c10::cuda::CUDACachingAllocator;
  const auto stats = alloc::getDeviceStats(static_cast<c10::DeviceIndex>(index));
  // Entry 0 of each StatArray is StatType::AGGREGATE (both pools together); the
  // enum moved between namespaces across LibTorch 2.x, its value did not.
  DeviceMemory m;
  m.allocated = stats.allocated_bytes[0].current;
  m.peak_allocated = stats.allocated_bytes[0].peak;
  m.reserved = stats.reserved_bytes[0].current;
  size_t free = 0, total = 0;
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
  if (cudaMemGetInfo(&free, &total) == cudaSuccess) {
    m.free = static_cast<int64_t>(free);
    m.total = static_cast<int64_t>(total);
  }
  return m;
}

void reset_cuda_peak(int index) {
  if (usable(index))
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(index));
}
#else
std::optional<DeviceMemory> cuda_memory(int) {
  return std::nullopt;
}
void reset_cuda_peak(int) {}
#endif

}  // namespace shardlm::parallel
