// `shardlm train --config run.toml [--section.key=value ...]`: one training run.
#include "core/config.h"
#include "launcher/app.h"
#include "runtime/trainer.h"

namespace shardlm::launcher {

void register_train(CLI::App& app, Context& ctx, Command& run) {
  auto* cmd = app.add_subcommand("train", "Train a model (run under mpirun for several ranks)");
  auto config = std::make_shared<std::string>();
  auto overrides = std::make_shared<std::vector<std::string>>();
  cmd->add_option("-c,--config", *config, "Run configuration (TOML)")->required();
  auto resume = std::make_shared<std::string>();
  auto init_from = std::make_shared<std::string>();
  cmd->add_option("--resume", *resume,
                  "Continue from a checkpoint: 'latest' (of train.run_dir) or a step directory");
  cmd->add_option("--init-from", *init_from, "Start from a model.safetensors (fine-tuning)");
  cmd->allow_extras();  // --section.key=value overrides
  cmd->footer("Any --section.key=value overrides the configuration file, e.g. --train.steps=50");
  cmd->callback([&ctx, &run, cmd, config, overrides, resume, init_from] {
    for (const auto& extra : cmd->remaining()) overrides->push_back(extra);
    if (!resume->empty()) overrides->push_back("ckpt.resume=\"" + *resume + "\"");
    if (!init_from->empty()) overrides->push_back("train.init_from=\"" + *init_from + "\"");
    run = [&ctx, config, overrides] {
      const core::Env& env = ctx.env_with_mpi();
      auto cfg = core::RunConfig::load(*config, *overrides);
      runtime::Trainer trainer(cfg, env);
      return trainer.run();
    };
  });
}

}  // namespace shardlm::launcher
