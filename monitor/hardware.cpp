// Host memory from /proc and GPU statistics through a dlopen'ed NVML (hardware.h).
#include "monitor/hardware.h"

#include <dlfcn.h>

#include <fstream>
#include <mutex>
#include <sstream>

namespace shardlm::monitor {

// ---- /proc ------------------------------------------------------------------------

namespace {
// The value in kB of the line "Key:   1234 kB" of a /proc file, in bytes; -1 if absent.
int64_t proc_kb(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0 || line.size() <= key.size() ||
        line[key.size()] != ':')
      continue;
    std::istringstream ss(line.substr(key.size() + 1));
    int64_t kb = -1;
    ss >> kb;
    return kb < 0 ? -1 : kb * 1024;
  }
  return -1;
}
}  // namespace

std::optional<HostMemory> read_host_memory() {
  HostMemory m;
  m.rss = proc_kb("/proc/self/status", "VmRSS");
  m.available = proc_kb("/proc/meminfo", "MemAvailable");
  m.total = proc_kb("/proc/meminfo", "MemTotal");
  if (m.rss < 0 && m.available < 0) return std::nullopt;
  return m;
}

// ---- NVML ---------------------------------------------------------------------------
// The few NVML declarations we need (nvml.h is not installed without the CUDA
// toolkit). Return code 0 is NVML_SUCCESS.

namespace {
using nvmlDevice_t = struct nvmlDevice_st*;
struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};
struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
constexpr int kNvmlTemperatureGpu = 0;
}  // namespace

struct Nvml::Lib {
  void* handle = nullptr;
  int (*init)() = nullptr;
  int (*shutdown)() = nullptr;
  int (*count)(unsigned int*) = nullptr;
  int (*by_index)(unsigned int, nvmlDevice_t*) = nullptr;
  int (*utilization)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  int (*temperature)(nvmlDevice_t, int, unsigned int*) = nullptr;
  int (*power)(nvmlDevice_t, unsigned int*) = nullptr;
  int (*memory)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  mutable std::mutex mu;  // NVML is thread-safe, but keep calls simple to reason about
};

namespace {
template <class F>
bool load(void* h, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(h, name));
  return fn != nullptr;
}
}  // namespace

Nvml::Nvml() {
  auto lib = std::make_unique<Lib>();
  lib->handle = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib->handle) {
    const char* e = dlerror();
    reason_ = e ? e : "libnvidia-ml.so.1 not found";
    return;
  }
  bool ok = load(lib->handle, "nvmlInit_v2", lib->init) &&
            load(lib->handle, "nvmlShutdown", lib->shutdown) &&
            load(lib->handle, "nvmlDeviceGetCount_v2", lib->count) &&
            load(lib->handle, "nvmlDeviceGetHandleByIndex_v2", lib->by_index) &&
            load(lib->handle, "nvmlDeviceGetUtilizationRates", lib->utilization) &&
            load(lib->handle, "nvmlDeviceGetTemperature", lib->temperature) &&
            load(lib->handle, "nvmlDeviceGetPowerUsage", lib->power) &&
            load(lib->handle, "nvmlDeviceGetMemoryInfo", lib->memory);
  if (!ok) {
    reason_ = "libnvidia-ml.so.1 lacks an expected symbol";
    dlclose(lib->handle);
    return;
  }
  if (int rc = lib->init(); rc != 0) {
    reason_ = "nvmlInit_v2 failed with code " + std::to_string(rc);
    dlclose(lib->handle);
    return;
  }
  lib_ = std::move(lib);
}

Nvml::~Nvml() {
  if (!lib_) return;
  lib_->shutdown();
  dlclose(lib_->handle);
}

bool Nvml::available() const {
  return lib_ != nullptr;
}
const std::string& Nvml::reason() const {
  return reason_;
}

int Nvml::device_count() const {
  if (!lib_) return 0;
  std::lock_guard<std::mutex> g(lib_->mu);
  unsigned int n = 0;
  return lib_->count(&n) == 0 ? static_cast<int>(n) : 0;
}

std::optional<GpuStats> Nvml::sample(int index) const {
  if (!lib_ || index < 0) return std::nullopt;
  std::lock_guard<std::mutex> g(lib_->mu);
  nvmlDevice_t dev = nullptr;
  if (lib_->by_index(static_cast<unsigned int>(index), &dev) != 0) return std::nullopt;
  GpuStats s;
  s.index = index;
  nvmlUtilization_t u{};
  if (lib_->utilization(dev, &u) == 0) {
    s.util = u.gpu;
    s.mem_util = u.memory;
  }
  unsigned int temp = 0;
  if (lib_->temperature(dev, kNvmlTemperatureGpu, &temp) == 0) s.temp_c = temp;
  unsigned int mw = 0;
  if (lib_->power(dev, &mw) == 0) s.power_w = mw / 1000.0;
  nvmlMemory_t mem{};
  if (lib_->memory(dev, &mem) == 0) {
    s.mem_used = static_cast<int64_t>(mem.used);
    s.mem_total = static_cast<int64_t>(mem.total);
  }
  return s;
}

// ---- probe -----------------------------------------------------------------------------

namespace {
// One NVML per process, loaded on first use, kept while any probe holds it.
std::shared_ptr<Nvml> shared_nvml() {
  static std::mutex mu;
  static std::weak_ptr<Nvml> cached;
  std::lock_guard<std::mutex> g(mu);
  auto p = cached.lock();
  if (!p) {
    p = std::make_shared<Nvml>();
    cached = p;
  }
  return p;
}
}  // namespace

HardwareProbe::HardwareProbe(int gpu_index, DeviceMemorySource device_memory)
    : gpu_index_(gpu_index), device_memory_(std::move(device_memory)) {
  if (gpu_index_ >= 0) nvml_ = shared_nvml();
}

void HardwareProbe::fill(StepMetrics& m) const {
  if (auto h = read_host_memory()) {
    if (h->rss >= 0) m.mem.host_rss = h->rss;
    if (h->available >= 0) m.mem.host_available = h->available;
    if (h->total >= 0) m.mem.host_total = h->total;
  }
  if (device_memory_) {
    if (auto d = device_memory_()) {
      m.mem.device_allocated = d->allocated;
      m.mem.device_reserved = d->reserved;
      m.mem.device_peak = d->peak;
    }
  }
  if (has_gpu()) m.gpu = nvml_->sample(gpu_index_);
}

}  // namespace shardlm::monitor
