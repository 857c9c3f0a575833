// Test helper: runs a shell command line and captures what it printed and its
// exit code (for the end-to-end tests that drive the `shardlm` binary).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

namespace shardlm::test_cli {

// Runs `cmd` with stderr redirected to `err_file` (read into *err when given,
// then removed); returns stdout and sets *rc to the exit code (-1: killed).
inline std::string run_command(const std::string& cmd, const std::string& err_file, int* rc,
                               std::string* err = nullptr) {
  FILE* f = ::popen((cmd + " 2>" + err_file).c_str(), "r");
  std::string out;
  if (f == nullptr) {
    *rc = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const int status = ::pclose(f);
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (err) {
    std::ifstream in(err_file);
    err->assign(std::istreambuf_iterator<char>(in), {});
  }
  std::remove(err_file.c_str());
  return out;
}

}  // namespace shardlm::test_cli
