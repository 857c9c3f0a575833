// The command line that `shardlm launch` runs: mpirun on workstations and
// hand-listed hosts, srun --mpi=pmix inside a SLURM allocation. Pure functions
// of the options and of a LaunchSite (the facts about this machine), so the
// tests can build lines for machines they do not run on. Torch-free.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace shardlm::launcher {

// One entry of --hosts h1:2,h2:2 (a host without ":n" has one slot).
struct HostSlots {
  std::string host;
  int slots = 1;
};

// Parses "h1:2,h2:2"; throws ConfigError naming the bad entry.
std::vector<HostSlots> parse_hosts(const std::string& text);

struct LaunchOptions {
  int ranks = 0;                  // -n; 0 = the sum of --hosts slots, or SLURM's task count
  std::vector<HostSlots> hosts;   // --hosts; empty = this machine only
  std::string launcher = "auto";  // auto (srun when SLURM_JOB_ID is set), mpirun, srun
  int threads = 0;                // CPU threads per rank; 0 = derived (see build_launch)
  std::string net;                // CIDR or interface for MPI's TCP traffic between hosts
  std::vector<std::string> mca;   // extra "key=value" OpenMPI MCA settings
  std::string program;            // what every rank runs (normally this shardlm binary)
  std::vector<std::string> args;  // the subcommand and its arguments (after --)

  void validate() const;
};

// The facts about the machine that launch runs on.
struct LaunchSite {
  int cores = 1;      // physical cores this process may use
  bool root = false;  // uid 0: mpirun refuses to start without --allow-run-as-root
  std::map<std::string, std::string> env;  // the variables launch looks at (see detect)

  // This machine: physical cores in the affinity mask, uid, and the SLURM_*,
  // OMP_NUM_THREADS, SHARDLM_*, NCCL_* and CUDA_VISIBLE_DEVICES variables.
  static LaunchSite detect();
  const std::string* get(const std::string& name) const;
};

struct LaunchLine {
  std::string kind;                        // "mpirun" or "srun"
  std::map<std::string, std::string> env;  // set in launch's own environment before exec (srun)
  std::vector<std::string> argv;           // argv[0] is looked up on PATH
  int threads = 1;                         // OMP_NUM_THREADS given to every rank

  // The line as a shell would take it: "VAR=v ... argv..." with quoting.
  std::string str() const;
};

// Builds the line. Threads per rank: --threads, else OMP_NUM_THREADS when the
// user set it, else SLURM's CPUs per task, else the cores divided among the
// ranks on one host (at least one). Under mpirun each rank is bound to its
// cores (--map-by slot:PE=t / ppr:k:node:PE=t with --bind-to core), or left
// unbound when there are more ranks than cores. Between hosts: ob1 over
// tcp,vader,self, limited to --net when given.
LaunchLine build_launch(const LaunchOptions& opt, const LaunchSite& site);

// Single-quotes a word for a POSIX shell when it needs it.
std::string shell_quote(const std::string& word);

}  // namespace shardlm::launcher
