// What every subcommand of the `shardlm` binary gets: the parsed CLI app and
// lazily-initialised MPI. Each subcommand lives in its own cmd_*.cpp and
// registers itself through one function declared here.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "core/env.h"

namespace shardlm::launcher {

class Context {
 public:
  Context(int* argc, char*** argv) : argc_(argc), argv_(argv) {}
  // Initialises MPI (once) and returns this process's Env.
  const core::Env& env_with_mpi();
  // Env without initialising MPI (launcher variables or a world of one).
  const core::Env& env();
  bool mpi_started() const { return static_cast<bool>(mpi_); }

 private:
  int* argc_;
  char*** argv_;
  std::unique_ptr<core::MpiSession> mpi_;
  std::unique_ptr<core::Env> env_;
};

// Writes text to stdout at once (a subcommand's output, also when piped).
inline void write_out(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// A subcommand's body; returns the process exit code.
using Command = std::function<int()>;

// Adds a subcommand to `app`; its body is stored in `run` when it is chosen.
void register_info(CLI::App& app, Context& ctx, Command& run);
void register_tokenizer(CLI::App& app, Context& ctx, Command& run);
void register_prepare(CLI::App& app, Context& ctx, Command& run);
void register_data(CLI::App& app, Context& ctx, Command& run);
void register_train(CLI::App& app, Context& ctx, Command& run);
void register_ckpt(CLI::App& app, Context& ctx, Command& run);
void register_export(CLI::App& app, Context& ctx, Command& run);
void register_monitor(CLI::App& app, Context& ctx, Command& run);
void register_generate(CLI::App& app, Context& ctx, Command& run);
void register_serve(CLI::App& app, Context& ctx, Command& run);
void register_launch(CLI::App& app, Context& ctx, Command& run);
void register_compress(CLI::App& app, Context& ctx, Command& run);
void register_eval(CLI::App& app, Context& ctx, Command& run);
void register_plan(CLI::App& app, Context& ctx, Command& run);

}  // namespace shardlm::launcher
