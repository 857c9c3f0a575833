/// @file
/// Logging with the rank in every line: "[09:41:02.137 r1/4 I] message".
/// info0()/warn0() print on rank 0 only, for messages every rank would repeat.
#pragma once

#include <string>

#include <fmt/format.h>

namespace shardlm::core::log {

/// Message levels, lowest first; kOff prints nothing.
enum class Level { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

/// Called once from main after Env is known.
void set_rank(int rank, int world_size);
/// Messages below `level` are dropped.
void set_level(Level level);
/// Parses "trace|debug|info|warn|error|off"; throws ConfigError otherwise.
Level parse_level(const std::string& name);
/// The level in force.
Level level();
/// This process's rank as set_rank() recorded it.
int rank();
/// Prints `msg` with the time, the rank and the level (stderr; thread-safe).
void write(Level level, const std::string& msg);

/// A trace message, formatted like fmt::format.
template <class... A>
void trace(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::kTrace) write(Level::kTrace, fmt::format(f, std::forward<A>(a)...));
}
/// A debug message, formatted like fmt::format.
template <class... A>
void debug(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::kDebug) write(Level::kDebug, fmt::format(f, std::forward<A>(a)...));
}
/// A info message, formatted like fmt::format.
template <class... A>
void info(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::kInfo) write(Level::kInfo, fmt::format(f, std::forward<A>(a)...));
}
/// A warn message, formatted like fmt::format.
template <class... A>
void warn(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::kWarn) write(Level::kWarn, fmt::format(f, std::forward<A>(a)...));
}
/// A error message, formatted like fmt::format.
template <class... A>
void error(fmt::format_string<A...> f, A&&... a) {
  if (level() <= Level::kError) write(Level::kError, fmt::format(f, std::forward<A>(a)...));
}
/// As info(), on rank 0 only.
template <class... A>
void info0(fmt::format_string<A...> f, A&&... a) {
  if (rank() == 0) info(f, std::forward<A>(a)...);
}
/// As warn(), on rank 0 only.
template <class... A>
void warn0(fmt::format_string<A...> f, A&&... a) {
  if (rank() == 0) warn(f, std::forward<A>(a)...);
}

}  // namespace shardlm::core::log
