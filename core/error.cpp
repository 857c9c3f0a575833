// Formatting of shardlm's typed errors.
#include "error.h"

namespace shardlm::core {

namespace {
std::string with_location(const std::string& msg, const char* file, int line) {
  if (!file) return msg;
  return fmt::format("{} [{}:{}]", msg, file, line);
}
}  // namespace

Error::Error(const std::string& msg, const char* file, int line)
    : std::runtime_error(with_location(msg, file, line)), msg_(msg), file_(file), line_(line) {}

static std::string config_message(const std::string& file, const std::string& key,
                                  const std::string& value, const std::string& expected) {
  std::string where = file.empty() ? std::string("config") : file;
  if (value.empty()) return fmt::format("{}: key '{}': expected {}", where, key, expected);
  return fmt::format("{}: key '{}' = {}: expected {}", where, key, value, expected);
}

ConfigError::ConfigError(std::string file, std::string key, std::string value, std::string expected)
    : Error(config_message(file, key, value, expected)),
      file_(std::move(file)),
      key_(std::move(key)),
      value_(std::move(value)),
      expected_(std::move(expected)) {}

}  // namespace shardlm::core
