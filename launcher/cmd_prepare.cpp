// `shardlm prepare`: raw text -> cleaned, deduplicated, split, tokenised HDF5
// shards + manifest.json (data/prepare.h). Under mpirun the ranks divide the
// input files; running it again with nothing changed does nothing.
#include <cstdio>

#include "core/config.h"
#include "core/log.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "launcher/app.h"

namespace shardlm::launcher {

void register_prepare(CLI::App& app, Context& ctx, Command& run) {
  auto* cmd = app.add_subcommand(
      "prepare", "Clean, deduplicate, split and tokenise text files into HDF5 shards");
  struct Args {
    std::string config, output, tokenizer;
    std::vector<std::string> inputs, overrides;
    bool force = false, no_progress = false;
    int threads = -1;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--config,-c", a->config, "Run configuration (TOML); its [prepare] section");
  cmd->add_option("--input,-i", a->inputs, "Files, directories or globs (.txt, .jsonl, .gz)");
  cmd->add_option("--output,-o", a->output, "Dataset directory (prepare.output)");
  cmd->add_option("--tokenizer,-t", a->tokenizer, "Tokenizer file (prepare.tokenizer)");
  cmd->add_option("--threads", a->threads, "Tokenizer threads per rank (0 = cores / ranks)");
  cmd->add_flag("--force", a->force, "Ignore the manifest and caches: prepare everything again");
  cmd->add_flag("--no-progress", a->no_progress, "No progress bar");
  cmd->add_option("overrides", a->overrides, "Config overrides: prepare.val_fraction=0.02 ...");
  cmd->callback([a, &ctx, &run] {
    run = [a, &ctx] {
      // MPI only under a launcher (mpirun, srun): a singleton MPI start costs seconds.
      const core::Env& env = ctx.env().world_size > 1 ? ctx.env_with_mpi() : ctx.env();
      core::RunConfig rc = a->config.empty() ? core::RunConfig() : core::RunConfig::load(a->config);
      for (const auto& o : a->overrides) rc.apply_override(o);
      if (!a->inputs.empty()) {
        std::string list;
        for (const auto& in : a->inputs)
          list += (list.empty() ? "" : ", ") + nlohmann::json(in).dump();
        rc.apply_override("prepare.inputs=[" + list + "]");
      }
      if (!a->output.empty())
        rc.apply_override("prepare.output=" + nlohmann::json(a->output).dump());
      if (!a->tokenizer.empty())
        rc.apply_override("prepare.tokenizer=" + nlohmann::json(a->tokenizer).dump());
      if (a->threads >= 0) rc.apply_override("prepare.threads=" + std::to_string(a->threads));
      if (a->force) rc.apply_override("prepare.force=true");
      if (a->no_progress) rc.apply_override("prepare.progress=false");
      auto cfg = rc.get<data::PrepareConfig>("prepare");
      if (cfg.tokenizer.empty())
        throw core::ConfigError(rc.file(), "prepare.tokenizer", "",
                                "a tokenizer file (--tokenizer; "
                                "train one with `shardlm tokenizer train`)");
      auto tok = data::Tokenizer::load(cfg.tokenizer);
      auto res = data::prepare(cfg, data::encoder_for(tok));
      if (env.is_root()) {
        std::string text;
        if (res.up_to_date) {
          text = fmt::format("{}: up to date, nothing to do\n", cfg.output);
        } else {
          text = fmt::format("{}: {}\n", cfg.output, res.reason);
          text += fmt::format(
              "tokenised {} file(s), {:.2f} MB, in {:.2f} s ({:.2f} MB/s on {} rank(s)); re-used "
              "{} cached; assembled in {:.2f} s; {:.2f} s in all\n",
              res.files_tokenized, res.input_mb, res.tokenize_seconds,
              res.tokenize_seconds > 0 ? res.input_mb / res.tokenize_seconds : 0.0, env.world_size,
              res.files_cached, res.assemble_seconds, res.seconds);
        }
        for (const auto& [name, s] : res.manifest.splits)
          text += fmt::format("  {:<5} {:>12} tokens {:>9} documents {:>4} shard(s)\n", name,
                              s.tokens, s.docs, s.shards.size());
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      }
      return 0;
    };
  });
}

}  // namespace shardlm::launcher
