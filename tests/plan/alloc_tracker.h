// Activation bytes of a real training step on the CPU, measured through
// LibTorch's allocator: while an AllocationTracker is installed (thread-local,
// as the profiler's memory reporter is), the CPU allocator reports every
// allocation and free made on this thread — the forward pass and, for CPU
// tensors, the whole backward pass run here. The tracker keeps the live sum
// of the bytes allocated since it was installed and subtracts what the model
// states gained meanwhile (ShardedModel::memory(): ZeRO-3 gathers, gradient
// buffers), so what remains is what autograd keeps plus the transients.
//
// Each sample is taken before an event is applied: at that point the model
// states read by `states` are consistent with the live sum (ShardedModel sets
// a storage's size right after its allocation returns and before its release
// returns). Frees of blocks allocated before the tracker existed are not
// reported (the allocator only knows the sizes of blocks it saw), so install
// it while the model states are at rest, between steps.
#pragma once

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include <algorithm>
#include <functional>
#include <memory>

namespace shardlm::plan::testing {

class AllocationTracker final : public c10::MemoryReportingInfoBase {
 public:
  explicit AllocationTracker(std::function<int64_t()> states)
      : states_(std::move(states)), states0_(states_()) {}

  void reportMemoryUsage(void*, int64_t alloc_size, int64_t, int64_t, c10::Device device) override {
    if (device.type() != c10::DeviceType::CPU) return;
    sample();
    live_ += alloc_size;
  }
  bool memoryProfilingEnabled() const override { return true; }

  // Bytes above the model states now; updates the peak.
  int64_t sample() {
    const int64_t a = live_ - (states_() - states0_);
    peak_ = std::max(peak_, a);
    return a;
  }
  int64_t peak() {
    sample();
    return peak_;
  }

 private:
  std::function<int64_t()> states_;
  int64_t states0_;
  int64_t live_ = 0, peak_ = 0;
};

// Installs a tracker on this thread for its lifetime.
class TrackAllocations {
 public:
  explicit TrackAllocations(std::function<int64_t()> states)
      : tracker_(std::make_shared<AllocationTracker>(std::move(states))),
        guard_(c10::DebugInfoKind::PROFILER_STATE, tracker_) {}
  AllocationTracker& tracker() { return *tracker_; }

 private:
  std::shared_ptr<AllocationTracker> tracker_;
  c10::DebugInfoGuard guard_;
};

}  // namespace shardlm::plan::testing
