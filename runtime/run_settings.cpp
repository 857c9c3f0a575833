// RunSettings::read (see run_settings.h).
#include "runtime/run_settings.h"

#include <torch/cuda.h>

#include "core/error.h"
#include "core/log.h"

namespace shardlm::runtime {

namespace {
c10::ScalarType autocast_dtype(const std::string& precision) {
  if (precision == "bf16") return c10::kBFloat16;
  if (precision == "fp16") return c10::kHalf;
  return c10::kFloat;
}
}  // namespace

RunSettings RunSettings::read(const core::RunConfig& cfg, const core::Env& env) {
  RunSettings s;
  s.run = cfg;
  s.train = cfg.get<TrainConfig>("train");
  s.val = cfg.get<ValidationConfig>("validation");
  s.model = cfg.get<model::ModelConfig>("model");
  s.data = cfg.get<data::LoaderConfig>("data");
  s.opt = cfg.get<parallel::OptimizerConfig>("optimizer");
  s.shard = cfg.get<parallel::ShardedConfig>("parallel");
  s.scaler = cfg.get<parallel::LossScalerConfig>("loss_scaler");
  s.mon = cfg.get<monitor::MonitorConfig>("monitor");
  s.ckpt = cfg.get<ckpt::CheckpointConfig>("ckpt");
  std::string level = cfg.section("log").get("level", std::string("info"));
  core::log::set_level(core::log::parse_level(level));
  cfg.check_unknown_keys();

  const std::string& d = s.train.device;
  if (d == "cpu")
    s.device = torch::kCPU;
  else if (d == "auto")
    s.device = torch::Device(env.device);
  else
    s.device = torch::Device(d == "cuda" ? "cuda:" + std::to_string(env.local_rank) : d);
  SHARDLM_CHECK(!s.device.is_cuda() || torch::cuda::is_available(), core::ConfigError,
                "train.device = {} but no CUDA device is usable in this process", d);
  s.amp = autocast_dtype(s.train.precision);
  if (s.amp == c10::kHalf && !s.device.is_cuda()) {
    // CPU autocast has no fp16: compute in fp32, keep the loss scaling (its
    // logic is then exercised on CPU, e.g. by tests that force an overflow).
    core::log::warn0("precision = \"fp16\" on CPU: computing in fp32 with dynamic loss scaling");
    s.amp = c10::kFloat;
  }
  s.scaler.enabled = s.train.precision == "fp16";
  if (s.data.seq_len > s.model.context_length && s.model.positional == "learned")
    throw core::ConfigError(cfg.file(), "data.seq_len", std::to_string(s.data.seq_len),
                            fmt::format("at most model.context_length = {} with learned positions",
                                        s.model.context_length));
  return s;
}

}  // namespace shardlm::runtime
