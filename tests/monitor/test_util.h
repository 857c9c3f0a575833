// Helpers shared by the monitor tests.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

namespace shardlm::monitor::testing {

// A fresh, empty directory under the system's temp dir, unique to this process.
inline std::filesystem::path temp_dir(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path p =
      fs::temp_directory_path() / ("shardlm_monitor_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

}  // namespace shardlm::monitor::testing
