// `shardlm launch -n N [--hosts h1:2,h2:2] [--dry-run] -- train --config run.toml`:
// prints the mpirun (or, inside a SLURM allocation, srun --mpi=pmix) line that
// runs the subcommand on every rank, then replaces this process with it, so
// the exit code and signals are the launcher's own. MPI is never started here.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "launcher/app.h"
#include "launcher/launch_line.h"

namespace shardlm::launcher {

void register_launch(CLI::App& app, Context& /*ctx*/, Command& run) {
  auto* cmd = app.add_subcommand(
      "launch", "Run a subcommand on N ranks with the right mpirun / srun line (printed first)");
  auto opt = std::make_shared<LaunchOptions>();
  auto hosts = std::make_shared<std::string>();
  auto dry = std::make_shared<bool>(false);
  cmd->add_option("-n,--ranks", opt->ranks,
                  "Number of ranks (default: --hosts slots, SLURM tasks)");
  cmd->add_option("--hosts", *hosts, "Hosts and slots for mpirun, e.g. h1:2,h2:2");
  cmd->add_flag("--dry-run", *dry, "Print the command without running it");
  cmd->add_option("--launcher", opt->launcher, "auto (srun under SLURM), mpirun or srun")
      ->capture_default_str();
  cmd->add_option("--threads", opt->threads, "CPU threads per rank (default: cores / local ranks)");
  cmd->add_option("--net", opt->net, "CIDR or interface for MPI's TCP traffic between hosts");
  cmd->add_option("--mca", opt->mca, "Extra OpenMPI setting key=value (repeatable)")
      ->allow_extra_args(false);  // one value per --mca: a following `--` ends the options
  cmd->add_option("--program", opt->program,
                  "Run this executable on every rank instead of this shardlm binary");
  cmd->add_option("command", opt->args, "The subcommand and its arguments, after --");
  cmd->callback([opt, hosts, dry, &run] {
    run = [opt, hosts, dry] {
      if (!hosts->empty()) opt->hosts = parse_hosts(*hosts);
      if (opt->program.empty()) opt->program = std::filesystem::read_symlink("/proc/self/exe");
      LaunchLine line = build_launch(*opt, LaunchSite::detect());
      if (*dry) {
        std::printf("%s\n", line.str().c_str());
        return 0;
      }
      std::fprintf(stderr, "[shardlm launch] %s\n", line.str().c_str());
      std::fflush(stderr);
      for (const auto& [k, v] : line.env) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> argv;
      for (auto& a : line.argv) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      SHARDLM_FAIL(core::Error, "launch: cannot run {}: {} (is it on PATH?)", line.argv[0],
                   std::strerror(errno));
    };
  });
}

}  // namespace shardlm::launcher
