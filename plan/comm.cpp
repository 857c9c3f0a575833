// Collectives per step and their time (see comm.h).
#include "plan/comm.h"

#include <algorithm>
#include <cmath>

namespace shardlm::plan {

using parallel::Collective;

std::vector<CollectiveCall> step_collectives(const std::vector<UnitInfo>& units,
                                             const ShardingSpec& spec, int world) {
  // Mirrors parallel/sharded_model.cpp and runtime/trainer.cpp, call by call.
  std::vector<CollectiveCall> calls;
  const int stage = spec.zero_stage;
  const int64_t A = spec.accumulation;
  auto add = [&](Collective k, int64_t bytes, int64_t count, Phase ph) {
    calls.push_back(CollectiveCall{k, static_cast<uint64_t>(bytes), count, ph});
  };
  add(Collective::kAllReduce, 4, 1, Phase::kSerial);  // the trainer's token count (fp32)
  for (const auto& u : units) {
    const int64_t bytes = 4 * u.padded(world);
    switch (stage) {
      case 0:  // DDP: one bucket per unit, all-reduced during the last backward
        add(Collective::kAllReduce, bytes, 1, Phase::kLastBackward);
        break;
      case 1:
        add(Collective::kReduceScatter, bytes, 1, Phase::kLastBackward);
        add(Collective::kAllGather, bytes, 1, Phase::kSerial);
        break;
      case 2:
        add(Collective::kReduceScatter, bytes, A, Phase::kEachBackward);
        add(Collective::kAllGather, bytes, 1, Phase::kSerial);
        break;
      default:  // 3: gathered around forward and again around backward; the root once
        add(Collective::kAllGather, bytes, (u.root ? 1 : 2) * A, Phase::kForwardBackward);
        add(Collective::kReduceScatter, bytes, A, Phase::kEachBackward);
    }
  }
  // The global gradient norm over shards (stages 1-3, more than one rank): fp64.
  if (stage >= 1 && world > 1) add(Collective::kAllReduce, 8, 1, Phase::kSerial);
  add(Collective::kAllReduce, 4, 1, Phase::kSerial);  // the trainer's loss sum (fp32)
  return calls;
}

namespace {
double log2_ceil(int p) {
  return p <= 1 ? 0.0 : std::ceil(std::log2(static_cast<double>(p)));
}
}  // namespace

double ring_seconds(Collective kind, double n, int p, double bw, double lat) {
  if (p <= 1) return 0;
  const double f = static_cast<double>(p - 1) / p;
  switch (kind) {
    case Collective::kAllReduce:
      return 2 * (p - 1) * lat + 2 * f * n / bw;
    case Collective::kReduceScatter:
    case Collective::kAllGather:
    case Collective::kBroadcast:
      return (p - 1) * lat + f * n / bw;
    case Collective::kBarrier:
      return 2 * (p - 1) * lat;
  }
  return 0;
}

double tree_seconds(Collective kind, double n, int p, double bw, double lat) {
  if (p <= 1) return 0;
  const double f = static_cast<double>(p - 1) / p;
  switch (kind) {
    case Collective::kAllReduce:
      return 2 * log2_ceil(p) * lat + 2 * n / bw;
    case Collective::kReduceScatter:
    case Collective::kAllGather:
      return log2_ceil(p) * lat + f * n / bw;
    case Collective::kBroadcast:
      return log2_ceil(p) * lat + n / bw;
    case Collective::kBarrier:
      return 2 * log2_ceil(p) * lat;
  }
  return 0;
}

CommPlan comm_plan(const std::vector<UnitInfo>& units, const ShardingSpec& spec, int world,
                   int gpus_per_node, const NetworkProfile& net) {
  CommPlan c;
  c.calls = step_collectives(units, spec, world);
  const int g = std::max(1, gpus_per_node);
  c.nodes = (world + g - 1) / g;
  c.bus_bandwidth = c.nodes > 1 ? std::min(net.intra.effective_bw(), net.inter.effective_bw())
                                : net.intra.effective_bw();
  c.step_latency = c.nodes > 1 ? std::max(net.intra.latency, net.inter.latency) : net.intra.latency;
  for (const auto& call : c.calls) {
    const double n = static_cast<double>(call.payload_bytes);
    const double ring = ring_seconds(call.kind, n, world, c.bus_bandwidth, c.step_latency);
    const double tree = tree_seconds(call.kind, n, world, c.bus_bandwidth, c.step_latency);
    const double best = std::min(ring, tree) * call.count;
    CollectiveTotals& k = c.per_kind[static_cast<int>(call.kind)];
    for (CollectiveTotals* t : {&k, &c.total}) {
      t->calls += call.count;
      t->payload_bytes += call.payload_bytes * call.count;
      t->wire_bytes += parallel::ring_wire_bytes(call.kind, call.payload_bytes, world) * call.count;
      t->ring_seconds += ring * call.count;
      t->tree_seconds += tree * call.count;
      t->seconds += best;
    }
    switch (call.phase) {
      case Phase::kLastBackward:
        c.last_backward_s += best;
        break;
      case Phase::kEachBackward:
        c.each_backward_s += best;
        break;
      case Phase::kForwardBackward:
        c.forward_backward_s += best;
        break;
      case Phase::kSerial:
        c.serial_s += best;
        break;
    }
  }
  return c;
}

}  // namespace shardlm::plan
