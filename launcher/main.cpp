// The `shardlm` binary: one SPMD program for every rank. Subcommands live in
// cmd_*.cpp; this file only parses, dispatches and turns exceptions into one
// clear message and a non-zero exit (MPI_Abort when other ranks would hang).
#include <cstdio>

#include "core/env.h"
#include "core/error.h"
#include "core/log.h"
#include "launcher/app.h"

using namespace shardlm;

int main(int argc, char** argv) {
  core::prefer_passive_omp_wait(argv);
  launcher::Context ctx(&argc, &argv);
  CLI::App app{"shardlm: train, evaluate, compress and serve GPT-style language models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", SHARDLM_VERSION);
  launcher::Command run;
  launcher::register_info(app, ctx, run);
  launcher::register_tokenizer(app, ctx, run);
  launcher::register_prepare(app, ctx, run);
  launcher::register_data(app, ctx, run);
  launcher::register_train(app, ctx, run);
  launcher::register_ckpt(app, ctx, run);
  launcher::register_export(app, ctx, run);
  launcher::register_monitor(app, ctx, run);
  launcher::register_generate(app, ctx, run);
  launcher::register_serve(app, ctx, run);
  launcher::register_launch(app, ctx, run);
  launcher::register_compress(app, ctx, run);
  launcher::register_eval(app, ctx, run);
  launcher::register_plan(app, ctx, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return run ? run() : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shardlm: error (rank %d): %s\n", core::log::rank(), e.what());
    std::fflush(stderr);
    if (ctx.mpi_started() && ctx.env().world_size > 1) core::MpiSession::abort(1);
    return 1;
  }
}
