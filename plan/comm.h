// Communication per training step and rank: the collectives ShardedModel and
// the trainer issue (kind, payload, how many), the bytes each rank sends under
// the ring model that parallel::CommStats records, and the time under two
// network models:
//   ring  all-reduce 2(P-1) a + 2 (P-1)/P n / b; reduce-scatter and
//         all-gather (P-1) a + (P-1)/P n / b
//   tree  all-reduce over a double binary tree 2 log2(P) a + 2 n / b;
//         reduce-scatter / all-gather by recursive halving / doubling
//         log2(P) a + (P-1)/P n / b
// with a the latency of one step and b the bandwidth of the slowest hop:
// NVLink/PCIe inside a node, min(intra, inter-node) once the ranks span
// nodes (a ring crosses each node boundary once per channel, and NCCL runs a
// channel per NIC, so the inter-node figure is per node).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "parallel/comm_stats.h"
#include "plan/layout.h"
#include "plan/memory.h"
#include "plan/profiles.h"

namespace shardlm::plan {

// When a collective runs, for the overlap model of the step time.
enum class Phase {
  kLastBackward,     // during the last micro-batch's backward (stage 0 all-reduce, stage 1)
  kEachBackward,     // during every micro-batch's backward (stage 2/3 reduce-scatter)
  kForwardBackward,  // during every micro-batch's forward and backward (stage 3 gathers)
  kSerial,           // after backward, nothing to hide behind (stage 1/2 gathers, scalars)
};

struct CollectiveCall {
  parallel::Collective kind;
  uint64_t payload_bytes = 0;  // as CommStats counts it (all-gather: the output)
  int64_t count = 1;           // calls per step
  Phase phase = Phase::kSerial;
};

struct CollectiveTotals {
  uint64_t calls = 0, payload_bytes = 0, wire_bytes = 0;
  double ring_seconds = 0, tree_seconds = 0, seconds = 0;  // seconds: the faster per call
};

struct CommPlan {
  std::vector<CollectiveCall> calls;
  std::array<CollectiveTotals, parallel::kNumCollectives> per_kind{};
  CollectiveTotals total;
  // Seconds per phase (the faster algorithm per call), for the overlap model.
  double last_backward_s = 0, each_backward_s = 0, forward_backward_s = 0, serial_s = 0;
  double bus_bandwidth = 0;  // bytes/s of the slowest hop
  double step_latency = 0;   // seconds per algorithm step
  int nodes = 1;
};

// The collectives of one optimizer step (`accumulation` micro-batches),
// including the trainer's two scalar all-reduces (token count, loss) and the
// gradient-norm all-reduce of stages 1-3.
std::vector<CollectiveCall> step_collectives(const std::vector<UnitInfo>& units,
                                             const ShardingSpec& spec, int world);

double ring_seconds(parallel::Collective kind, double payload, int world, double bw,
                    double latency);
double tree_seconds(parallel::Collective kind, double payload, int world, double bw,
                    double latency);

CommPlan comm_plan(const std::vector<UnitInfo>& units, const ShardingSpec& spec, int world,
                   int gpus_per_node, const NetworkProfile& net);

}  // namespace shardlm::plan
