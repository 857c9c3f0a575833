// Communication accounting (see comm_stats.h).
#include "parallel/comm_stats.h"

#include <fmt/format.h>

namespace shardlm::parallel {

const char* collective_name(Collective c) {
  switch (c) {
    case Collective::kAllReduce:
      return "all_reduce";
    case Collective::kReduceScatter:
      return "reduce_scatter";
    case Collective::kAllGather:
      return "all_gather";
    case Collective::kBroadcast:
      return "broadcast";
    case Collective::kBarrier:
      return "barrier";
  }
  return "?";
}

CommCounters& CommCounters::operator+=(const CommCounters& o) {
  calls += o.calls;
  payload_bytes += o.payload_bytes;
  wire_bytes += o.wire_bytes;
  seconds += o.seconds;
  return *this;
}

uint64_t ring_wire_bytes(Collective c, uint64_t n, int p) {
  if (p <= 1) return 0;
  const uint64_t up = static_cast<uint64_t>(p);
  switch (c) {
    case Collective::kAllReduce:
      return 2 * n * (up - 1) / up;
    case Collective::kReduceScatter:
    case Collective::kAllGather:
    case Collective::kBroadcast:
      return n * (up - 1) / up;
    case Collective::kBarrier:
      return 0;
  }
  return 0;
}

void CommStats::record(Collective c, uint64_t payload_bytes, uint64_t wire_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  for (Table* t : {&total_, &step_}) {
    CommCounters& k = (*t)[static_cast<int>(c)];
    k.calls += 1;
    k.payload_bytes += payload_bytes;
    k.wire_bytes += wire_bytes;
  }
}

void CommStats::add_time(Collective c, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  total_[static_cast<int>(c)].seconds += seconds;
  step_[static_cast<int>(c)].seconds += seconds;
}

void CommStats::end_step() {
  std::lock_guard<std::mutex> lock(mu_);
  last_ = step_;
  step_ = Table{};
}

void CommStats::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  total_ = step_ = last_ = Table{};
}

CommCounters CommStats::total(Collective c) const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_[static_cast<int>(c)];
}
CommCounters CommStats::step(Collective c) const {
  std::lock_guard<std::mutex> lock(mu_);
  return step_[static_cast<int>(c)];
}
CommCounters CommStats::last_step(Collective c) const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_[static_cast<int>(c)];
}

CommCounters CommStats::sum(const Table& t) {
  CommCounters s;
  for (const CommCounters& k : t) s += k;
  return s;
}
CommCounters CommStats::total_all() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sum(total_);
}
CommCounters CommStats::last_step_all() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sum(last_);
}

std::string CommStats::summary() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (int i = 0; i < kNumCollectives; ++i) {
    const CommCounters& k = total_[i];
    if (k.calls == 0) continue;
    out += fmt::format("{:<15} calls {:>8}  sent {:>10.3f} MB  payload {:>10.3f} MB  {:>8.3f} s\n",
                       collective_name(static_cast<Collective>(i)), k.calls, k.wire_bytes / 1e6,
                       k.payload_bytes / 1e6, k.seconds);
  }
  return out;
}

}  // namespace shardlm::parallel
