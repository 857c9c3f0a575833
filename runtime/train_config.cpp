// Reading and checking the trainer's configuration sections.
#include "runtime/train_config.h"

#include <fmt/format.h>

namespace shardlm::runtime {

TrainConfig TrainConfig::from(const core::ConfigSection& s) {
  TrainConfig c;
  c.run_dir = s.get("run_dir", c.run_dir);
  c.tokenizer = s.get("tokenizer", c.tokenizer);
  c.seed = s.get("seed", c.seed);
  c.steps = s.get("steps", c.steps);
  c.accumulation = s.get("accumulation", c.accumulation);
  c.grad_clip = s.get("grad_clip", c.grad_clip);
  c.precision = s.get("precision", c.precision);
  c.device = s.get("device", c.device);
  c.init_from = s.get("init_from", c.init_from);
  c.activation_checkpointing = s.get("activation_checkpointing", c.activation_checkpointing);
  c.log_every = s.get("log_every", c.log_every);
  auto flat = s.get("freeze_schedule", std::vector<int64_t>{});
  if (flat.size() % 2 != 0)
    s.fail("freeze_schedule", fmt::format("{} numbers", flat.size()),
           "pairs step, k as a flat array [s0, k0, s1, k1, ...]");
  for (size_t i = 0; i + 1 < flat.size(); i += 2)
    c.freeze_schedule.push_back({flat[i], flat[i + 1]});
  c.auto_batch = s.get("auto_batch", c.auto_batch);
  c.global_batch = s.get("global_batch", c.global_batch);
  c.memory_budget_mb = s.get("memory_budget_mb", c.memory_budget_mb);
  c.schedule = ScheduleConfig::from(s.section("schedule"));
  return c;
}

void TrainConfig::validate() const {
  using core::config_require;
  config_require(steps >= 1, "steps", std::to_string(steps), "an integer >= 1");
  config_require(accumulation >= 1, "accumulation", std::to_string(accumulation),
                 "an integer >= 1");
  config_require(grad_clip >= 0, "grad_clip", std::to_string(grad_clip), "a number >= 0 (0 = off)");
  config_require(precision == "fp32" || precision == "bf16" || precision == "fp16", "precision",
                 precision, "one of fp32, bf16, fp16");
  config_require(device == "auto" || device == "cpu" || device.rfind("cuda", 0) == 0, "device",
                 device, "auto, cpu or cuda[:n]");
  config_require(log_every >= 1, "log_every", std::to_string(log_every), "an integer >= 1");
  int64_t last = -1;
  for (const auto& p : freeze_schedule) {
    config_require(p[0] > last, "freeze_schedule", std::to_string(p[0]),
                   "steps in increasing order, each >= 0");
    last = p[0];
  }
  config_require(!auto_batch || global_batch >= 1, "global_batch", std::to_string(global_batch),
                 "an integer >= 1 when auto_batch = true");
  config_require(memory_budget_mb >= 0, "memory_budget_mb", std::to_string(memory_budget_mb),
                 "an integer >= 0");
  try {
    schedule.validate();
  } catch (const core::ConfigError& e) {
    throw core::ConfigError("", "schedule." + e.key(), e.value(), e.expected());
  }
}

int64_t TrainConfig::trainable_blocks(int64_t step, int64_t n_layer) const {
  int64_t k = n_layer;
  for (const auto& p : freeze_schedule)
    if (step >= p[0]) k = (p[1] < 0 || p[1] > n_layer) ? n_layer : p[1];
  return k;
}

ValidationConfig ValidationConfig::from(const core::ConfigSection& s) {
  ValidationConfig c;
  c.every = s.get("every", c.every);
  c.batches = s.get("batches", c.batches);
  c.split = s.get("split", c.split);
  c.early_stopping = EarlyStoppingConfig::from(s.section("early_stopping"));
  return c;
}

void ValidationConfig::validate() const {
  core::config_require(every >= 0, "every", std::to_string(every), "an integer >= 0");
  core::config_require(batches >= 1, "batches", std::to_string(batches), "an integer >= 1");
  core::config_require(split == "val" || split == "test" || split == "train", "split", split,
                       "one of val, test, train");
  try {
    early_stopping.validate();
  } catch (const core::ConfigError& e) {
    throw core::ConfigError("", "early_stopping." + e.key(), e.value(), e.expected());
  }
}

}  // namespace shardlm::runtime
