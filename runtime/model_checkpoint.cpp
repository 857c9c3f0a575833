// Sharded model <-> checkpoint (see model_checkpoint.h).
#include "runtime/model_checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <torch/torch.h>

#include "core/error.h"
#include "core/json_int.h"

namespace shardlm::runtime {

using core::CheckpointError;

namespace {
nlohmann::json layout_json(const parallel::FlatParams& flat) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : flat.entries())
    out.push_back({{"name", e.name}, {"shape", e.shape}, {"offset", e.offset}});
  return out;
}
}  // namespace

ModelPieces model_pieces(parallel::ShardedModel& sm, const std::string& optimizer) {
  const int W = sm.group().size(), r = sm.group().rank();
  ModelPieces out;
  for (size_t i = 0; i < sm.num_units(); ++i) {
    const auto& flat = sm.unit_layout(i);
    ckpt::UnitPiece u;
    u.name = sm.unit_name(i);
    u.numel = flat.numel();
    u.layout = layout_json(flat);
    auto [b, e] = sm.unit_range(i);
    torch::Tensor params = sm.unit_params(i);  // host copy of [b, e)
    parallel::StateDict dense = sm.unit_dense_state(i);
    // At stage 0 every rank holds the whole unit: each saves only its 1/W.
    int64_t lo = b, hi = e;
    if (sm.config().zero_stage == 0) {
      int64_t P = flat.padded_numel();
      lo = P * r / W;
      hi = P * (r + 1) / W;
    }
    lo = std::min(lo, u.numel);
    hi = std::min(hi, u.numel);
    u.begin = lo;
    u.end = hi;
    u.params = params.narrow(0, lo - b, hi - lo).clone();
    if (!dense.empty()) {
      u.exp_avg = dense.at("exp_avg").narrow(0, lo - b, hi - lo).clone();
      u.exp_avg_sq = dense.at("exp_avg_sq").narrow(0, lo - b, hi - lo).clone();
      out.optimizer_steps[u.name] = dense.at("step").item<int64_t>();
      // 8-bit states: also the exact state, for a resume with the same layout.
      if (optimizer == "adam8bit")
        for (auto& [k, v] : sm.unit_optimizer(i).state_dict())
          u.raw[k] = v.to(torch::kCPU, false, true);
    }
    out.units.push_back(std::move(u));
  }
  return out;
}

void load_model_pieces(const ckpt::CheckpointReader& reader, parallel::ShardedModel& sm,
                       const std::string& optimizer, const nlohmann::json& optimizer_steps,
                       bool same_layout) {
  const std::string& dir = reader.dir();
  const int rank = sm.group().rank();
  for (size_t i = 0; i < sm.num_units(); ++i) {
    const std::string& name = sm.unit_name(i);
    const auto& flat = sm.unit_layout(i);
    SHARDLM_CHECK(reader.unit_numel(name) == flat.numel(), CheckpointError,
                  "{}: unit '{}' has {} elements there, {} here", dir, name,
                  reader.unit_numel(name), flat.numel());
    // (no structured binding: clang 14 cannot capture one in the lambda below)
    const auto range = sm.unit_range(i);
    const int64_t lo = range.first, hi = range.second;
    int64_t end = std::min(hi, flat.numel());
    auto read = [&](const char* what) {
      auto t = torch::zeros({hi - lo}, torch::kFloat);  // padding stays zero
      if (end > lo) t.narrow(0, 0, end - lo).copy_(reader.read_range(name, what, lo, end));
      return t;
    };
    torch::Tensor params = read("params");
    parallel::StateDict opt;
    bool dense = true;
    if (reader.has_optimizer_state(name)) {
      auto raw = same_layout && optimizer == "adam8bit" ? reader.unit_raw(rank, name)
                                                        : std::map<std::string, torch::Tensor>{};
      if (!raw.empty()) {
        opt = raw;
        dense = false;
      } else {
        opt["exp_avg"] = read("exp_avg");
        opt["exp_avg_sq"] = read("exp_avg_sq");
        opt["step"] = torch::tensor(core::json_int<int64_t, core::CheckpointError>(
            optimizer_steps.at(name), reader.dir() + ": state.optimizer_steps." + name));
      }
    }
    sm.load_unit(i, params, opt.empty() ? nullptr : &opt, dense);
  }
  sm.finish_load();
}

std::map<std::string, torch::Tensor> rng_states(torch::Device device) {
  std::map<std::string, torch::Tensor> out;
  out["rng_cpu"] = at::detail::getDefaultCPUGenerator().get_state();
  if (device.is_cuda()) out["rng_cuda"] = at::globalContext().defaultGenerator(device).get_state();
  return out;
}

void restore_rng(const ckpt::CheckpointReader& reader, int rank, int world, torch::Device device,
                 int64_t seed, int64_t step) {
  // The RNG continues exactly on the same world; otherwise a fresh stream per rank.
  if (reader.world_size() == world) {
    auto rt = reader.rank_tensors(rank);
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    gen.set_state(rt.at("rng_cpu"));
    if (device.is_cuda() && rt.count("rng_cuda")) {
      at::Generator g = at::globalContext().defaultGenerator(device);
      g.set_state(rt.at("rng_cuda"));
    }
  } else {
    torch::manual_seed(static_cast<uint64_t>(seed) + 7919ULL * step + 1000003ULL * rank);
  }
}

void require_same_model(const nlohmann::json& saved, const model::ModelConfig& cfg,
                        const std::string& where) {
  // Both through ModelConfig, so that defaults added since compare as equal.
  const nlohmann::json theirs = model::ModelConfig::from_json(saved).to_json();
  const nlohmann::json mine = cfg.to_json();
  for (const auto& [k, v] : mine.items())
    SHARDLM_CHECK(theirs.contains(k) && theirs[k] == v, CheckpointError,
                  "{}: a model of another configuration: model.{} is {} there, {} in this run",
                  where, k, theirs.contains(k) ? theirs[k].dump() : "absent", v.dump());
}

}  // namespace shardlm::runtime
