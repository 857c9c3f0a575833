// Spawning a run and listing checkpoints (launch.h).
#include "monitor/launch.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

extern char** environ;

namespace shardlm::monitor {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
std::string self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("shardlm") : p.string();
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
}
}  // namespace

RunLauncher::RunLauncher(std::string command_template, std::string run_dir)
    : template_(std::move(command_template)), run_dir_(std::move(run_dir)) {}

RunLauncher::~RunLauncher() = default;

void RunLauncher::set_env(const std::string& name, const std::string& value) {
  for (auto& [n, v] : env_)
    if (n == name) {
      v = value;
      return;
    }
  env_.emplace_back(name, value);
}

std::vector<std::string> RunLauncher::argv(const std::string& config_path,
                                           const std::string& resume_path) const {
  std::vector<std::string> out;
  std::istringstream words(template_);
  std::string w;
  while (words >> w) {
    if (w == "{resume_args}") {
      if (!resume_path.empty()) {
        out.push_back("--resume");
        out.push_back(resume_path);
      }
      continue;
    }
    replace_all(w, "{config}", config_path);
    replace_all(w, "{run_dir}", run_dir_);
    replace_all(w, "{shardlm}", self_exe());
    out.push_back(w);
  }
  return out;
}

pid_t RunLauncher::start(const std::string& config_path, const std::string& resume_path) {
  if (!configured())
    throw core::ConfigError("", "monitor.launch_command", "",
                            "a command line to start a run (e.g. \"mpirun -n 2 {shardlm} train "
                            "--config {config} {resume_args}\")");
  poll();
  SHARDLM_CHECK(!running(), core::Error, "a run started by the monitor is still active (pid {})",
                pid_);
  std::vector<std::string> args = argv(config_path, resume_path);
  if (args.empty())
    throw core::ConfigError("", "monitor.launch_command", "", "a non-empty command line");
  std::error_code ec;
  fs::create_directories(run_dir_, ec);
  log_path_ = (fs::path(run_dir_) / ("launch-" + std::to_string(++launches_) + ".log")).string();

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  // The run must not inherit the aggregator's sockets (Asio does not mark them
  // close-on-exec): a child holding the listening socket keeps the port busy
  // after the aggregator exits, and one holding a browser's keep-alive
  // connection keeps it open after the aggregator closed it, so the browser's
  // next request on it never gets an answer.
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);  // its own group: Ctrl-C on us spares it
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  // Our environment, with env_ replacing what it names.
  std::vector<std::string> own;
  for (auto& [n, v] : env_) own.push_back(n + "=" + v);
  std::vector<char*> cenv;
  for (char** e = environ; e && *e; ++e) {
    bool replaced = false;
    for (auto& [n, v] : env_)
      replaced = replaced || (std::strncmp(*e, n.c_str(), n.size()) == 0 && (*e)[n.size()] == '=');
    if (!replaced) cenv.push_back(*e);
  }
  for (auto& o : own) cenv.push_back(o.data());
  cenv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, cargv[0], &fa, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  SHARDLM_CHECK(rc == 0, core::Error, "cannot start '{}': {}", args[0], std::strerror(rc));
  pid_ = pid;
  return pid;
}

std::optional<int> RunLauncher::poll() {
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return std::nullopt;
  pid_ = -1;
  if (r < 0) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// ---- checkpoints -------------------------------------------------------------------------

namespace {
std::optional<int64_t> step_of(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() == 5) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || v > (int64_t{1} << 55)) return std::nullopt;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}
}  // namespace

json list_checkpoints(const std::string& run_dir) {
  json items = json::array();
  fs::path dir = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return items;
  std::vector<std::pair<int64_t, json>> found;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // step-N.tmp/ (being written) and step-N.deleting/ (being pruned) are not checkpoints.
    if (name.rfind("step-", 0) != 0 || name.find('.') != std::string::npos || !it->is_directory(ec))
      continue;
    json item;
    item["name"] = name;
    item["path"] = it->path().string();
    auto step = step_of(name);
    item["step"] = step ? json(*step) : json(nullptr);
    auto mt = fs::last_write_time(it->path(), ec);
    double mtime = 0;
    if (!ec) {
      auto sys = std::chrono::time_point_cast<std::chrono::milliseconds>(
          mt - fs::file_time_type::clock::now() + std::chrono::system_clock::now());
      mtime = sys.time_since_epoch().count() / 1000.0;
    }
    item["mtime"] = mtime < 0 ? 0.0 : mtime;
    item["manifest"] = nullptr;
    fs::path mf = it->path() / "manifest.json";
    if (fs::is_regular_file(mf, ec) && fs::file_size(mf, ec) < (size_t{4} << 20)) {
      std::ifstream in(mf);
      json m = json::parse(in, nullptr, false);
      if (!m.is_discarded() && m.is_object()) item["manifest"] = std::move(m);
    }
    found.emplace_back(step.value_or(-1), std::move(item));
  }
  std::sort(found.begin(), found.end(), [](auto& a, auto& b) {
    return a.first != b.first ? a.first < b.first : a.second["name"] < b.second["name"];
  });
  for (auto& f : found) items.push_back(std::move(f.second));
  return items;
}

std::string find_checkpoint(const std::string& run_dir, const std::string& name) {
  std::error_code ec;
  fs::path root = fs::weakly_canonical(fs::path(run_dir) / "checkpoints", ec);
  fs::path p = name.find('/') == std::string::npos ? root / name : fs::path(name);
  fs::path canon = fs::weakly_canonical(p, ec);
  auto rel = canon.lexically_relative(root);
  bool inside = !ec && !rel.empty() && *rel.begin() != "..";
  SHARDLM_CHECK(inside && fs::is_directory(canon, ec), core::CheckpointError,
                "checkpoint '{}': expected a directory under {}", name, root.string());
  return canon.string();
}

}  // namespace shardlm::monitor
