// Typed failures for every layer of shardlm. A check macro records the failed
// expression, the file and line, and the library's own error string, then throws;
// only launcher/ turns an exception into a message and an exit code.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace shardlm::core {

// Base of every shardlm failure. what() is the whole message a user sees.
class Error : public std::runtime_error {
 public:
  Error(const std::string& msg, const char* file = nullptr, int line = 0);
  const std::string& message() const { return msg_; }  // without the location
  const char* file() const { return file_; }
  int line() const { return line_; }

 private:
  std::string msg_;
  const char* file_;
  int line_;
};

#define SHARDLM_DECLARE_ERROR(Name) \
  class Name : public Error {       \
   public:                          \
    using Error::Error;             \
  }
SHARDLM_DECLARE_ERROR(MpiError);
SHARDLM_DECLARE_ERROR(CudaError);
SHARDLM_DECLARE_ERROR(NcclError);
SHARDLM_DECLARE_ERROR(H5Error);
SHARDLM_DECLARE_ERROR(DataError);
SHARDLM_DECLARE_ERROR(CheckpointError);
SHARDLM_DECLARE_ERROR(ModelError);
SHARDLM_DECLARE_ERROR(TimeoutError);
// A backend that this build does not contain (e.g. NCCL without CUDA).
SHARDLM_DECLARE_ERROR(NotCompiled);
#undef SHARDLM_DECLARE_ERROR

// A configuration value is missing, of the wrong type or out of range. The
// message names the file, the dotted key, the value and what was expected.
class ConfigError : public Error {
 public:
  ConfigError(std::string file, std::string key, std::string value, std::string expected);
  explicit ConfigError(const std::string& msg, const char* file = nullptr, int line = 0)
      : Error(msg, file, line) {}
  const std::string& config_file() const { return file_; }
  const std::string& key() const { return key_; }
  const std::string& value() const { return value_; }
  const std::string& expected() const { return expected_; }

 private:
  std::string file_, key_, value_, expected_;
};

}  // namespace shardlm::core

// SHARDLM_CHECK(cond, ErrorType, "fmt {}", args...): throw ErrorType when cond is false.
#define SHARDLM_CHECK(cond, ErrorType, ...)                                     \
  do {                                                                          \
    if (!(cond)) throw ErrorType(fmt::format(__VA_ARGS__), __FILE__, __LINE__); \
  } while (0)

// SHARDLM_FAIL(ErrorType, "fmt {}", args...): throw unconditionally.
#define SHARDLM_FAIL(ErrorType, ...) throw ErrorType(fmt::format(__VA_ARGS__), __FILE__, __LINE__)
