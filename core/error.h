/// @file
/// Typed failures for every layer of shardlm. A check macro records the failed
/// expression, the file and line, and the library's own error string, then throws;
/// only launcher/ turns an exception into a message and an exit code.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace shardlm::core {

/// Base of every shardlm failure. what() is the whole message a user sees.
class Error : public std::runtime_error {
 public:
  /// `msg` is what went wrong and what to do; `file`/`line` where it was detected.
  Error(const std::string& msg, const char* file = nullptr, int line = 0);
  /// The message without the location.
  const std::string& message() const { return msg_; }
  /// The source file that threw (may be null).
  const char* file() const { return file_; }
  /// The line in file() (0 when unknown).
  int line() const { return line_; }

 private:
  std::string msg_;
  const char* file_;
  int line_;
};

/// Declares an Error subclass with Error's constructors.
#define SHARDLM_DECLARE_ERROR(Name) \
  class Name : public Error {       \
   public:                          \
    using Error::Error;             \
  }
/// An MPI call failed, or ranks disagree (a collective's shapes).
SHARDLM_DECLARE_ERROR(MpiError);
/// A CUDA call failed.
SHARDLM_DECLARE_ERROR(CudaError);
/// An NCCL call failed, or NCCL was handed a tensor it cannot take.
SHARDLM_DECLARE_ERROR(NcclError);
/// An HDF5 call failed (a shard or checkpoint file).
SHARDLM_DECLARE_ERROR(H5Error);
/// Input data is malformed or cannot be read or written (text, tokenizers, shards).
SHARDLM_DECLARE_ERROR(DataError);
/// A checkpoint or model file is missing, corrupt, of another model, or cannot be written.
SHARDLM_DECLARE_ERROR(CheckpointError);
/// The model cannot go on (a non-finite loss, an impossible shape).
SHARDLM_DECLARE_ERROR(ModelError);
/// A collective or a peer did not answer in time.
SHARDLM_DECLARE_ERROR(TimeoutError);
/// A backend that this build does not contain (e.g. NCCL without CUDA).
SHARDLM_DECLARE_ERROR(NotCompiled);
#undef SHARDLM_DECLARE_ERROR

/// A configuration value is missing, of the wrong type or out of range. The
/// message names the file, the dotted key, the value and what was expected.
class ConfigError : public Error {
 public:
  /// "FILE: KEY = VALUE: expected EXPECTED" (FILE may be empty: a command line).
  ConfigError(std::string file, std::string key, std::string value, std::string expected);
  /// A message of its own, for settings that do not fit together.
  explicit ConfigError(const std::string& msg, const char* file = nullptr, int line = 0)
      : Error(msg, file, line) {}
  /// The configuration file (or "" when the message has none).
  const std::string& config_file() const { return file_; }
  /// The dotted key ("train.lr").
  const std::string& key() const { return key_; }
  /// The value found, as written.
  const std::string& value() const { return value_; }
  /// What was expected instead.
  const std::string& expected() const { return expected_; }

 private:
  std::string file_, key_, value_, expected_;
};

}  // namespace shardlm::core

/// SHARDLM_CHECK(cond, ErrorType, "fmt {}", args...): throw ErrorType when cond is false.
#define SHARDLM_CHECK(cond, ErrorType, ...)                                     \
  do {                                                                          \
    if (!(cond)) throw ErrorType(fmt::format(__VA_ARGS__), __FILE__, __LINE__); \
  } while (0)

/// SHARDLM_FAIL(ErrorType, "fmt {}", args...): throw unconditionally.
#define SHARDLM_FAIL(ErrorType, ...) throw ErrorType(fmt::format(__VA_ARGS__), __FILE__, __LINE__)
