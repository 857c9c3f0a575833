// Configuration search (see search.h).
#include "plan/search.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "core/error.h"

namespace shardlm::plan {

SearchResult search(const PlanInput& base, const SearchOptions& opt) {
  SearchResult r;
  const int64_t G = opt.global_batch > 0 ? opt.global_batch : base.global_batch();
  const int P = base.world;
  if (G % P != 0)
    throw core::ConfigError(fmt::format(
        "--global-batch {} is not a multiple of the world size {}: every rank takes the same "
        "number of rows per step",
        G, P));
  r.global_batch = G;
  const int64_t per_rank = G / P;
  std::vector<int64_t> micro;
  for (int64_t b = 1; b <= per_rank; ++b)
    if (per_rank % b == 0) micro.push_back(b);
  struct Layout {
    bool offload, stream;
  };
  for (int stage : opt.stages) {
    std::vector<Layout> layouts{{false, false}};
    if (opt.try_offload) layouts.push_back({true, false});
    if (opt.try_streaming && stage == 3) layouts.push_back({true, true});
    for (const Layout& l : layouts)
      for (bool ckpt : {false, true}) {
        if (ckpt && !opt.try_checkpointing) continue;
        for (int64_t b : micro) {
          PlanInput in = base;
          in.sharding.zero_stage = stage;
          in.sharding.cpu_offload = l.offload;
          in.sharding.offload_params = l.stream;
          in.activation_checkpointing = ckpt;
          in.micro_batch = b;
          in.sharding.accumulation = per_rank / b;
          Plan p = make_plan(in);
          (p.fits ? r.fitting : r.rejected).push_back(std::move(p));
        }
      }
  }
  // Fastest first. Step times within a part in a million tie (a step bound by
  // unhidden communication takes as long with checkpointing, whose recomputation
  // only hides more of it): then the fewer FLOPs (no recomputation), then no
  // offload, then the larger micro-batch (the step-time model applies one
  // efficiency to every micro-batch size; real kernels run better on larger
  // ones), then the less memory.
  std::stable_sort(r.fitting.begin(), r.fitting.end(), [](const Plan& a, const Plan& b) {
    if (std::fabs(a.step_s - b.step_s) > 1e-6 * std::max(a.step_s, b.step_s))
      return a.step_s < b.step_s;
    if (a.compute.flops_per_step != b.compute.flops_per_step)
      return a.compute.flops_per_step < b.compute.flops_per_step;
    if (a.input.sharding.cpu_offload != b.input.sharding.cpu_offload)
      return !a.input.sharding.cpu_offload;
    if (a.input.micro_batch != b.input.micro_batch)
      return a.input.micro_batch > b.input.micro_batch;
    return a.memory.device_total < b.memory.device_total;
  });
  return r;
}

std::string describe(const PlanInput& in) {
  std::string s = fmt::format("ZeRO-{}", in.sharding.zero_stage);
  if (in.sharding.offload_params)
    s += " + streaming";
  else if (in.sharding.cpu_offload)
    s += " + offload";
  if (in.activation_checkpointing) s += " + ckpt";
  return s + fmt::format(", {} x {}", in.micro_batch, in.sharding.accumulation);
}

nlohmann::json to_json(const SearchResult& r) {
  using nlohmann::json;
  auto row = [](const Plan& p) {
    const PlanInput& in = p.input;
    const StateBytes& pk = p.memory.states.peak;
    return json{{"config", describe(in)},
                {"zero_stage", in.sharding.zero_stage},
                {"cpu_offload", in.sharding.cpu_offload},
                {"offload_params", in.sharding.offload_params},
                {"activation_checkpointing", in.activation_checkpointing},
                {"micro_batch", in.micro_batch},
                {"accumulation", in.sharding.accumulation},
                {"model_state_bytes", pk.params + pk.grads + pk.optimizer},
                {"host_bytes", pk.host},
                {"activation_bytes", p.memory.activations.peak},
                {"device_total", p.memory.device_total},
                {"device_capacity", p.memory.device_capacity},
                {"host_per_node", p.memory.host_per_node},
                {"step_seconds", p.step_s},
                {"tokens_per_second", p.tokens_per_s},
                {"mfu", p.mfu},
                {"bottleneck", p.bottleneck},
                {"fits", p.fits},
                {"verdict", p.verdict}};
  };
  json j;
  j["global_batch"] = r.global_batch;
  j["fitting"] = json::array();
  for (const Plan& p : r.fitting) j["fitting"].push_back(row(p));
  j["rejected"] = json::array();
  for (const Plan& p : r.rejected) j["rejected"].push_back(row(p));
  if (!r.fitting.empty()) j["best"] = row(r.fitting.front());
  return j;
}

std::string format_search(const SearchResult& r, size_t rows) {
  std::string o;
  o += fmt::format("global batch {} rows: {} configuration(s) fit, {} do not\n\n", r.global_batch,
                   r.fitting.size(), r.rejected.size());
  if (!r.fitting.empty()) {
    o += fmt::format("  {:<36} {:>11} {:>11} {:>10} {:>12} {:>6}  {}\n", "fits (fastest first)",
                     "memory", "host/node", "step s", "tokens/s", "MFU", "bottleneck");
    for (size_t i = 0; i < std::min(rows, r.fitting.size()); ++i) {
      const Plan& p = r.fitting[i];
      o += fmt::format("  {:<36} {:>11} {:>11} {:>10.4g} {:>12.4g} {:>5.1f}%  {}\n",
                       describe(p.input), format_bytes(p.memory.device_total),
                       format_bytes(p.memory.host_per_node), p.step_s, p.tokens_per_s, 100 * p.mfu,
                       p.bottleneck);
    }
    if (r.fitting.size() > rows)
      o += fmt::format("  ... {} more (--json lists all)\n", r.fitting.size() - rows);
    o += "\n";
  }
  // Families with no member that fits: the smallest member and its reason.
  using Key = std::tuple<int, bool, bool, bool>;
  std::map<Key, bool> fits;
  for (const Plan& p : r.fitting)
    fits[Key{p.input.sharding.zero_stage, p.input.sharding.cpu_offload,
             p.input.sharding.offload_params, p.input.activation_checkpointing}] = true;
  std::map<Key, const Plan*> smallest;
  std::vector<Key> order;
  for (const Plan& p : r.rejected) {
    Key k{p.input.sharding.zero_stage, p.input.sharding.cpu_offload,
          p.input.sharding.offload_params, p.input.activation_checkpointing};
    if (fits.count(k)) continue;
    auto it = smallest.find(k);
    if (it == smallest.end()) {
      order.push_back(k);
      smallest[k] = &p;
    } else if (p.memory.device_total < it->second->memory.device_total) {
      it->second = &p;
    }
  }
  if (!order.empty()) {
    o += "  rejected (no micro-batch fits; the smallest shown)\n";
    for (const Key& k : order) {
      const Plan& p = *smallest[k];
      o += fmt::format("  {:<36} {}\n", describe(p.input), p.verdict);
    }
  }
  return o;
}

}  // namespace shardlm::plan
