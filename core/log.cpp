// The rank-aware logger. Lines are written whole under a mutex, so that lines
// of threads of one rank never interleave; ranks interleave line by line.
#include "log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "error.h"

namespace shardlm::core::log {

namespace {
std::atomic<int> g_rank{0}, g_world{1};
std::atomic<Level> g_level{Level::kInfo};
std::mutex g_mu;
}  // namespace

void set_rank(int rank, int world_size) {
  g_rank = rank;
  g_world = world_size;
}
void set_level(Level l) {
  g_level = l;
}
Level level() {
  return g_level.load(std::memory_order_relaxed);
}
int rank() {
  return g_rank.load(std::memory_order_relaxed);
}

Level parse_level(const std::string& name) {
  if (name == "trace") return Level::kTrace;
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn") return Level::kWarn;
  if (name == "error") return Level::kError;
  if (name == "off") return Level::kOff;
  throw ConfigError("", "log.level", "\"" + name + "\"",
                    "one of trace, debug, info, warn, error, off");
}

void write(Level l, const std::string& msg) {
  static const char kTag[] = {'T', 'D', 'I', 'W', 'E', '-'};
  auto now = std::chrono::system_clock::now();
  auto t = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  std::string line =
      fmt::format("[{:02}:{:02}:{:02}.{:03} r{}/{} {}] {}\n", tm.tm_hour, tm.tm_min, tm.tm_sec, ms,
                  g_rank.load(), g_world.load(), kTag[static_cast<int>(l)], msg);
  std::lock_guard<std::mutex> lock(g_mu);
  FILE* out = l >= Level::kWarn ? stderr : stdout;
  std::fwrite(line.data(), 1, line.size(), out);
  std::fflush(out);
}

}  // namespace shardlm::core::log
