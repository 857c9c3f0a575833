// Logging with the rank in every line: "[09:41:02.137 r1/4 I] message".
// info0()/warn0() print on rank 0 only, for messages every rank would repeat.
#pragma once

#include <string>

#include <fmt/format.h>

namespace shardlm::core::log {

enum class Level { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

// Called once from main after Env is known.
void set_rank(int rank, int world_size);
void set_level(Level level);
// Parses "trace|debug|info|warn|error|off"; throws ConfigError otherwise.
Level parse_level(const std::string& name);
Level level();
int rank();
void write(Level level, const std::string& msg);

template <class... A>
void trace(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::kTrace) write(Level::kTrace, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void debug(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::kDebug) write(Level::kDebug, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void info(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::kInfo) write(Level::kInfo, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void warn(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::kWarn) write(Level::kWarn, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void error(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::kError) write(Level::kError, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void info0(fmt::format_string<A...> f, A&&... a) {
  if (rank() == 0) info(f, std::forward<A>(a)...);
}
template <class... A>
void warn0(fmt::format_string<A...> f, A&&... a) {
  if (rank() == 0) warn(f, std::forward<A>(a)...);
}

}  // namespace shardlm::core::log
