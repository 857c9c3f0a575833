// Optimizer base: configuration, segment checks, step bookkeeping, factory.
#include "parallel/optimizer.h"

#include "core/config.h"
#include "parallel/adam8bit.h"
#include "parallel/adamw.h"
#include "parallel/cpu_adam.h"

namespace shardlm::parallel {

// ---- configuration --------------------------------------------------------------

OptimizerConfig OptimizerConfig::from(const core::ConfigSection& s) {
  OptimizerConfig c;
  c.name = s.get("name", c.name);
  c.lr = s.get("lr", c.lr);
  c.beta1 = s.get("beta1", c.beta1);
  c.beta2 = s.get("beta2", c.beta2);
  c.eps = s.get("eps", c.eps);
  c.weight_decay = s.get("weight_decay", c.weight_decay);
  c.block_size = s.get("block_size", c.block_size);
  c.min_8bit_numel = s.get("min_8bit_numel", c.min_8bit_numel);
  c.embedding_fp32_state = s.get("embedding_fp32_state", c.embedding_fp32_state);
  c.fused = s.get("fused", c.fused);
  return c;
}

void OptimizerConfig::validate() const {
  using core::config_require;
  config_require(name == "adamw" || name == "cpu_adam" || name == "adam8bit", "name", name,
                 "one of adamw, cpu_adam, adam8bit");
  config_require(lr >= 0, "lr", std::to_string(lr), "a learning rate >= 0");
  config_require(beta1 >= 0 && beta1 < 1, "beta1", std::to_string(beta1), "a number in [0, 1)");
  config_require(beta2 >= 0 && beta2 < 1, "beta2", std::to_string(beta2), "a number in [0, 1)");
  config_require(eps > 0, "eps", std::to_string(eps), "a number > 0");
  config_require(weight_decay >= 0, "weight_decay", std::to_string(weight_decay), "a number >= 0");
  config_require(block_size == 256 || block_size == 512 || block_size == 1024 ||
                     block_size == 2048 || block_size == 4096,
                 "block_size", std::to_string(block_size), "256, 512, 1024, 2048 or 4096");
  config_require(min_8bit_numel >= 0, "min_8bit_numel", std::to_string(min_8bit_numel),
                 "a count >= 0");
}

// ---- base -------------------------------------------------------------------------

Optimizer::Optimizer(OptimizerConfig config) : config_(std::move(config)) {}

void Optimizer::set_segments(std::vector<ParamSegment> segments) {
  SHARDLM_CHECK(step_ == 0 && numel_ < 0, core::ModelError,
                "{}: set_segments must come before the first step", name());
  int64_t at = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    const ParamSegment& s = segments[i];
    SHARDLM_CHECK(s.begin == at && s.end >= s.begin, core::ModelError,
                  "{}: segment {} ('{}') is [{}, {}) but must start at {} (segments tile the "
                  "shard in order)",
                  name(), i, s.name, s.begin, s.end, at);
    at = s.end;
  }
  segments_ = std::move(segments);
}

std::vector<ParamSegment> Optimizer::decay_runs() const {
  std::vector<ParamSegment> runs;
  for (const ParamSegment& s : segments_) {
    if (s.end == s.begin) continue;
    if (!runs.empty() && runs.back().decay == s.decay)
      runs.back().end = s.end;
    else
      runs.push_back(s);
  }
  return runs;
}

void Optimizer::step(torch::Tensor params, const torch::Tensor& grads) {
  SHARDLM_CHECK(
      params.dim() == 1 && params.scalar_type() == torch::kFloat && params.is_contiguous(),
      core::ModelError, "{}: params must be a flat contiguous fp32 tensor (got {} {})", name(),
      c10::toString(params.scalar_type()), c10::str(params.sizes()));
  SHARDLM_CHECK(grads.sizes() == params.sizes() && grads.scalar_type() == torch::kFloat &&
                    grads.device() == params.device(),
                core::ModelError,
                "{}: grads must match params (fp32, {} elements on {}); got {} {} on {}", name(),
                params.numel(), params.device().str(), c10::toString(grads.scalar_type()),
                c10::str(grads.sizes()), grads.device().str());
  const int64_t n = params.numel();
  if (numel_ < 0) {
    if (segments_.empty()) segments_.push_back(ParamSegment{0, n, true, false, n, "shard"});
    SHARDLM_CHECK(segments_.back().end == n, core::ModelError,
                  "{}: segments cover {} elements but the shard has {}", name(),
                  segments_.back().end, n);
    init_state(n, params.device());
    numel_ = n;
  }
  SHARDLM_CHECK(n == numel_, core::ModelError, "{}: shard had {} elements, now {}", name(), numel_,
                n);
  ++step_;
  do_step(params, grads.is_contiguous() ? grads : grads.contiguous());
}

const torch::Tensor& Optimizer::need(const StateDict& state, const std::string& key) {
  auto it = state.find(key);
  SHARDLM_CHECK(it != state.end() && it->second.defined(), core::CheckpointError,
                "optimizer state has no '{}'", key);
  return it->second;
}

void Optimizer::begin_load(const StateDict& state, int64_t n, const torch::Device& device) {
  const torch::Tensor& s = need(state, "step");
  SHARDLM_CHECK(s.numel() == 1, core::CheckpointError, "optimizer state 'step' must be a scalar");
  if (numel_ < 0) {
    if (segments_.empty()) segments_.push_back(ParamSegment{0, n, true, false, n, "shard"});
    SHARDLM_CHECK(segments_.back().end == n, core::CheckpointError,
                  "{}: the state holds {} elements but the segments cover {}", name(), n,
                  segments_.back().end);
    init_state(n, device);
    numel_ = n;
  }
  SHARDLM_CHECK(n == numel_, core::CheckpointError,
                "{}: the state holds {} elements but this shard has {}", name(), n, numel_);
  step_ = s.item<int64_t>();
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config) {
  config.validate();
  if (config.name == "adamw") return std::make_unique<AdamW>(config);
  if (config.name == "cpu_adam") return std::make_unique<CpuAdam>(config);
  return std::make_unique<Adam8bit>(config);
}

}  // namespace shardlm::parallel
