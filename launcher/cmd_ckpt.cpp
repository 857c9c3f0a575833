// `shardlm ckpt list|inspect|verify|prune` and `shardlm export`: checkpoints
// of a run, and a consolidated model file from one.
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "ckpt/checkpoint.h"
#include "compress/onnx_export.h"
#include "compress/quantize.h"
#include "core/error.h"
#include "launcher/app.h"
#include "load/model_bundle.h"
#include "model/config.h"
#include "model/generate.h"
#include "model/gpt.h"
#include "model/safetensors.h"

namespace shardlm::launcher {

namespace fs = std::filesystem;

namespace {

void add_list(CLI::App& parent, Command& run) {
  auto* cmd = parent.add_subcommand("list", "Checkpoints of a run, oldest first");
  auto dir = std::make_shared<std::string>();
  cmd->add_option("run_dir", *dir, "Run directory (train.run_dir)")->required();
  cmd->callback([&run, dir] {
    run = [dir] {
      std::string latest;
      std::ifstream(fs::path(*dir) / "checkpoints" / "latest") >> latest;
      for (const auto& d : ckpt::list_checkpoints(*dir)) {
        ckpt::CheckpointReader r(d);
        const auto& m = r.manifest();
        std::fprintf(stdout, "%s  step %lld  world %d  ZeRO-%lld  %s%s%s\n", d.c_str(),
                     static_cast<long long>(r.step()), r.world_size(),
                     static_cast<long long>(m["state"].value("zero_stage", int64_t{0})),
                     m.contains("val_loss")
                         ? fmt::format("val_loss {:.4f}", m["val_loss"].get<double>()).c_str()
                         : "",
                     fs::path(d).filename() == latest ? "  [latest]" : "", "");
      }
      return 0;
    };
  });
}

void add_inspect(CLI::App& parent, Command& run) {
  auto* cmd =
      parent.add_subcommand("inspect", "What a checkpoint holds (manifest without the config)");
  auto dir = std::make_shared<std::string>();
  cmd->add_option("checkpoint", *dir, "Step directory, or a run directory (newest)")->required();
  cmd->callback([&run, dir] {
    run = [dir] {
      ckpt::CheckpointReader r(load::checkpoint_dir(*dir));
      nlohmann::json m = r.manifest();
      m["state"].erase("config");
      if (m["state"].contains("counters")) m["state"]["counters"].erase("losses");
      for (auto& [name, u] : m["units"].items())
        u["layout"] = fmt::format("{} tensors", u["layout"].size());
      std::printf("%s\n", m.dump(2).c_str());
      return 0;
    };
  });
}

void add_verify(CLI::App& parent, Command& run) {
  auto* cmd = parent.add_subcommand("verify", "Check every rank file against the manifest");
  auto dir = std::make_shared<std::string>();
  cmd->add_option("checkpoint", *dir, "Step directory")->required();
  cmd->callback([&run, dir] {
    run = [dir] {
      ckpt::CheckpointReader r(*dir);
      r.verify();
      std::printf("%s: ok (step %lld, %d rank files)\n", dir->c_str(),
                  static_cast<long long>(r.step()), r.world_size());
      return 0;
    };
  });
}

void add_ckpt_prune(CLI::App& parent, Command& run) {
  auto* cmd = parent.add_subcommand("prune", "Apply retention rules to a run's checkpoints");
  auto dir = std::make_shared<std::string>();
  auto cfg = std::make_shared<ckpt::CheckpointConfig>();
  cmd->add_option("run_dir", *dir, "Run directory")->required();
  cmd->add_option("--keep-last", cfg->keep_last, "Newest n kept")->capture_default_str();
  cmd->add_option("--keep-best", cfg->keep_best, "Best m by validation loss kept")
      ->capture_default_str();
  cmd->add_option("--keep-every", cfg->keep_every, "Every P-th step kept (0: none)")
      ->capture_default_str();
  cmd->callback([&run, dir, cfg] {
    run = [dir, cfg] {
      cfg->validate();
      for (const auto& d : ckpt::prune_checkpoints(*dir, *cfg))
        std::printf("removed %s\n", d.c_str());
      return 0;
    };
  });
}

}  // namespace

void register_ckpt(CLI::App& app, Context&, Command& run) {
  auto* cmd = app.add_subcommand("ckpt", "List, inspect, verify and prune checkpoints");
  cmd->require_subcommand(1);
  add_list(*cmd, run);
  add_inspect(*cmd, run);
  add_verify(*cmd, run);
  add_ckpt_prune(*cmd, run);
}

void register_export(CLI::App& app, Context&, Command& run) {
  auto* cmd =
      app.add_subcommand("export",
                         "Write one consolidated model (safetensors directory or ONNX file) from a "
                         "checkpoint or a model");
  auto src = std::make_shared<std::string>();
  auto model_path = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto format = std::make_shared<std::string>("safetensors");
  auto tokenizer = std::make_shared<std::string>();
  auto* ckpt_opt = cmd->add_option("--ckpt", *src, "Step directory, or a run directory (newest)");
  auto* model_opt =
      cmd->add_option("--model,-m", *model_path,
                      "Anything `generate --model` accepts (directory, file, checkpoint)");
  ckpt_opt->excludes(model_opt);
  cmd->add_option("--out,-o", *out, "Output directory (safetensors) or file (onnx)")->required();
  cmd->add_option("--format", *format, "safetensors | onnx (forward graph, opset 17)")
      ->check(CLI::IsMember({"safetensors", "onnx"}));
  cmd->add_option("--tokenizer", *tokenizer, "Tokenizer file to copy beside the model");
  cmd->callback([&run, src, model_path, out, format, tokenizer] {
    run = [src, model_path, out, format, tokenizer] {
      SHARDLM_CHECK(!src->empty() || !model_path->empty(), core::ConfigError,
                    "export: pass --ckpt DIR or --model PATH");
      model::ModelConfig cfg;
      model::GPT gpt{nullptr};
      std::string from, step;  // step: "step N, " for a checkpoint
      if (!src->empty()) {
        from = load::checkpoint_dir(*src);
        gpt = load::load_checkpoint_model(from);
        cfg = gpt->config();
        step = fmt::format("step {}, ", ckpt::CheckpointReader(from).step());
      } else {
        load::ModelBundle b = load::load_dense(*model_path);  // a quantised one: fp32 again
        gpt = b.model;
        cfg = gpt->config();
        from = b.source;
      }
      if (*format == "onnx") {
        model::compress::export_onnx(gpt, *out);
        std::printf("exported %s (%s%lld parameters) as ONNX to %s (%.2f MB)\n", from.c_str(),
                    step.c_str(), static_cast<long long>(cfg.num_parameters()), out->c_str(),
                    static_cast<double>(fs::file_size(*out)) / 1e6);
        return 0;
      }
      fs::create_directories(*out);
      model::save_safetensors(gpt, cfg, *out);
      if (!tokenizer->empty())
        fs::copy_file(*tokenizer, fs::path(*out) / "tokenizer.json",
                      fs::copy_options::overwrite_existing);
      std::printf("exported %s (%s%lld parameters) to %s\n", from.c_str(), step.c_str(),
                  static_cast<long long>(cfg.num_parameters()), out->c_str());
      return 0;
    };
  });
}

}  // namespace shardlm::launcher
