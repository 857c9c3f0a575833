// Hardware probes for the `step` message: host memory from /proc and, when
// the NVIDIA driver is installed, GPU utilisation, temperature, power and
// memory from NVML. NVML is loaded with dlopen("libnvidia-ml.so.1") at run
// time, so the build needs no CUDA and a machine without a driver simply
// omits the `gpu` fields.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "monitor/protocol.h"

namespace shardlm::monitor {

struct HostMemory {
  int64_t rss = 0;        // this process, bytes (VmRSS)
  int64_t available = 0;  // the machine, bytes (MemAvailable)
  int64_t total = 0;      // the machine, bytes (MemTotal)
};

// Reads /proc/self/status and /proc/meminfo; nullopt where /proc is missing.
std::optional<HostMemory> read_host_memory();

// NVML through dlopen. One per process; every call is thread-safe.
class Nvml {
 public:
  // Loads the library and calls nvmlInit; available() is false when either fails.
  Nvml();
  ~Nvml();
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;
  bool available() const;
  // Why NVML is unavailable ("libnvidia-ml.so.1: cannot open shared object file"), or "".
  const std::string& reason() const;
  int device_count() const;
  // Utilisation, temperature, power and memory of GPU `index`; nullopt when the
  // query fails. Fields NVML cannot give on this device are left empty.
  std::optional<GpuStats> sample(int index) const;

 private:
  struct Lib;
  std::unique_ptr<Lib> lib_;
  std::string reason_;
};

// Bytes of the framework's device allocator (LibTorch's caching allocator:
// parallel/device_memory.h), handed in by the caller: monitor/ never links LibTorch.
struct DeviceAllocatorBytes {
  int64_t allocated = 0, reserved = 0, peak = 0;
};
// Called once per fill(); nullopt when there is nothing to report (CPU run).
using DeviceMemorySource = std::function<std::optional<DeviceAllocatorBytes>()>;

// What the trainer calls once per reported step: fills m.mem.host_*, with a
// DeviceMemorySource m.mem.device_*, and, with NVML, m.gpu for this rank's GPU
// (`gpu_index` < 0: no GPU).
class HardwareProbe {
 public:
  explicit HardwareProbe(int gpu_index = -1, DeviceMemorySource device_memory = {});
  void fill(StepMetrics& m) const;
  bool has_gpu() const { return gpu_index_ >= 0 && nvml_ && nvml_->available(); }

 private:
  int gpu_index_;
  std::shared_ptr<Nvml> nvml_;
  DeviceMemorySource device_memory_;
};

}  // namespace shardlm::monitor
