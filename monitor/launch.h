// What the aggregator does on its own behalf: start a training run by
// spawning its configured command line (normally `mpirun ... shardlm train`),
// watch that process, and list the checkpoints of a run directory.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shardlm::monitor {

// The environment variable through which a spawned run gets the monitor's token
// (its ranks need it to be accepted as producers; see resolve_producer_token()).
inline constexpr const char* kMonitorTokenEnv = "SHARDLM_MONITOR_TOKEN";

// Spawns one run at a time. The command template is split on whitespace (no
// shell, so a path from a viewer cannot inject anything) and each word may
// contain the placeholders {config}, {run_dir}, {shardlm} (this executable);
// the word {resume_args} becomes `--resume PATH` or nothing.
class RunLauncher {
 public:
  RunLauncher(std::string command_template, std::string run_dir);
  ~RunLauncher();  // leaves a running child alone (it is a training run)

  bool configured() const { return !template_.empty(); }
  // Sets NAME=VALUE in the environment of every run started from now on (it
  // replaces an inherited NAME).
  void set_env(const std::string& name, const std::string& value);
  bool running() const { return pid_ > 0; }
  // Starts the run; stdout and stderr go to RUN_DIR/launch-N.log. Throws
  // core::ConfigError when no command is configured, core::Error when a run is
  // already active or the spawn fails (naming the program).
  pid_t start(const std::string& config_path, const std::string& resume_path = "");
  // Reaps the child if it exited: its exit code (128+signal when killed).
  std::optional<int> poll();
  // The argv start() would run (for tests and for the log).
  std::vector<std::string> argv(const std::string& config_path,
                                const std::string& resume_path) const;
  const std::string& log_path() const { return log_path_; }
  pid_t pid() const { return pid_; }

 private:
  std::string template_, run_dir_, log_path_;
  std::vector<std::pair<std::string, std::string>> env_;
  pid_t pid_ = -1;
  int launches_ = 0;
};

// RUN_DIR/checkpoints/step-* directories, sorted by step: name, path, step
// (null when the name has no number), mtime and the parsed manifest.json (null
// when absent or unreadable). The `items` of the `checkpoints` message.
nlohmann::json list_checkpoints(const std::string& run_dir);

// Resolves a checkpoint named by a viewer ("step-300" or a path) to a directory
// inside RUN_DIR/checkpoints; throws core::CheckpointError when there is none.
std::string find_checkpoint(const std::string& run_dir, const std::string& name);

}  // namespace shardlm::monitor
