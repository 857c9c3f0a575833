// Communication accounting: calls, bytes and time per collective type, for the
// whole run and per training step. Tests compare the bytes with the textbook
// formulas (DDP all-reduce ~ 2 psi per rank, ZeRO-3 ~ 3 psi), the metrics
// stream reports them per step. Torch-free.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>

namespace shardlm::parallel {

enum class Collective : int { kAllReduce = 0, kReduceScatter, kAllGather, kBroadcast, kBarrier };
inline constexpr int kNumCollectives = 5;
const char* collective_name(Collective c);

struct CommCounters {
  uint64_t calls = 0;
  uint64_t payload_bytes = 0;  // bytes of the tensors handed to the collective
  uint64_t wire_bytes = 0;     // bytes this rank sends (ring model, see ring_wire_bytes)
  double seconds = 0;          // time from start to completion on the communication thread
  CommCounters& operator+=(const CommCounters& o);
};

// Bytes one rank sends for a collective under the bandwidth-optimal ring
// algorithm: all-reduce 2(P-1)/P n, reduce-scatter (P-1)/P n (n = input bytes),
// all-gather (P-1)/P n (n = output bytes), broadcast (P-1)/P n (pipelined
// chain, averaged over ranks), barrier 0. A world of one sends nothing.
uint64_t ring_wire_bytes(Collective c, uint64_t payload_bytes, int world_size);

// Thread-safe counters. The group records a call when it is issued and its time
// when it completes; end_step() closes a training step.
class CommStats {
 public:
  void record(Collective c, uint64_t payload_bytes, uint64_t wire_bytes);
  void add_time(Collective c, double seconds);
  // The counters of the step so far become last_step(); totals keep growing.
  void end_step();
  void reset();

  CommCounters total(Collective c) const;
  CommCounters step(Collective c) const;       // the step in progress
  CommCounters last_step(Collective c) const;  // the step closed by end_step()
  CommCounters total_all() const;              // summed over collective types
  CommCounters last_step_all() const;
  // One line per collective type with calls, MB sent and seconds.
  std::string summary() const;

 private:
  using Table = std::array<CommCounters, kNumCollectives>;
  static CommCounters sum(const Table& t);
  mutable std::mutex mu_;
  Table total_{}, step_{}, last_{};
};

}  // namespace shardlm::parallel
