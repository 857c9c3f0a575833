// Fuzz target config: a run configuration, TOML text then (after
// fuzz::kFileSeparator) one `--section.key=value` override per line, through
// RunConfig::parse, every component's Config::from + validate() (the ones a
// `train`, `prepare`, `serve` and `eval` run read) and check_unknown_keys();
// then the same text as an evaluation suite file (SuiteConfig::load).
// Oracles: only ConfigError (or another core::Error) escapes, and the
// effective configuration a run writes to RUN_DIR/config.toml parses back to
// the same text.
#include <string>
#include <vector>

#include "ckpt/config.h"
#include "core/config.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "eval/suite.h"
#include "fuzz/fuzz_target.h"
#include "model/config.h"
#include "model/generation_config.h"
#include "monitor/config.h"
#include "parallel/loss_scaler.h"
#include "parallel/optimizer.h"
#include "parallel/sharded_model.h"
#include "runtime/train_config.h"
#include "serve/config.h"

using namespace shardlm;

namespace {

void read_components(const core::RunConfig& rc) {
  auto each = [](auto&& f) { fuzz::expect_errors(f); };
  each([&] { rc.get<runtime::TrainConfig>("train"); });
  each([&] { rc.get<runtime::ValidationConfig>("validation"); });
  each([&] { rc.get<model::ModelConfig>("model"); });
  each([&] { rc.get<data::LoaderConfig>("data"); });
  each([&] { rc.get<parallel::OptimizerConfig>("optimizer"); });
  each([&] { rc.get<parallel::ShardedConfig>("parallel"); });
  each([&] { rc.get<parallel::LossScalerConfig>("loss_scaler"); });
  each([&] { rc.get<monitor::MonitorConfig>("monitor"); });
  each([&] { rc.get<ckpt::CheckpointConfig>("ckpt"); });
  each([&] { rc.get<data::PrepareConfig>("prepare"); });
  each([&] { rc.get<serve::ServeConfig>("serve"); });
  each([&] { rc.get<model::GenerationConfig>("generate"); });
  each([&] { rc.check_unknown_keys(); });
}

std::vector<std::string> lines(std::string_view text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size() && out.size() < 64) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    if (end > pos) out.emplace_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

}  // namespace

SHARDLM_FUZZ_TARGET(config) {
  static const bool init = [] {
    fuzz::quiet_logs();
    return true;
  }();
  (void)init;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto parts = fuzz::split_files(input, 2);
  const std::string text(parts[0]);
  const std::vector<std::string> overrides =
      parts.size() > 1 ? lines(parts[1]) : std::vector<std::string>{};

  core::RunConfig rc;
  if (fuzz::expect_errors([&] { rc = core::RunConfig::parse(text, "fuzz.toml", overrides); })) {
    read_components(rc);
    const std::string toml = rc.to_toml();
    (void)rc.to_json();
    core::RunConfig again;
    const bool reparsed =
        fuzz::expect_errors([&] { again = core::RunConfig::parse(toml, "config.toml"); });
    SHARDLM_FUZZ_CHECK(reparsed, "the effective configuration does not parse:\n" + toml);
    SHARDLM_FUZZ_CHECK(again.to_toml() == toml, "to_toml is not stable:\n" + toml);
  }
  // An evaluation suite is the same TOML read by another reader.
  const std::string suite = fuzz::scratch_file("suite.toml", parts[0]);
  fuzz::expect_errors([&] { eval::SuiteConfig::load(suite, overrides); });
  return 0;
}
