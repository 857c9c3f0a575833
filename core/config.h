/// @file
/// Run configuration: one TOML file plus `--section.key=value` overrides.
///
/// Each component owns a small Config struct with defaults, a
///   static Foo from(const core::ConfigSection&)   (reads its keys, with defaults)
/// and a
///   void validate() const                         (throws ConfigError naming the key)
/// and is read with RunConfig::get<Foo>("section"). Every key read is recorded,
/// so that check_unknown_keys() can reject typos ("train.lerning_rate") with a
/// suggestion instead of silently ignoring them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "error.h"

namespace shardlm::core {

struct ConfigState;  // the parsed tree and the record of keys read (config.cpp)

/// A view of one table of the configuration ("train", "model.rope"). Cheap to copy.
class ConfigSection {
 public:
  /// The table at dotted `path` of `state` (RunConfig::section makes these).
  ConfigSection(std::shared_ptr<ConfigState> state, std::string path);

  /// The value at `key`, or `def` when absent. Throws ConfigError (file, key,
  /// value, expected type) when present with the wrong type.
  template <class T>
  T get(const std::string& key, const T& def) const;
  /// The value at `key`; throws ConfigError when absent.
  template <class T>
  T require(const std::string& key) const;
  /// Whether `key` is present (reading it counts as known for check_unknown_keys).
  bool has(const std::string& key) const;
  /// A sub-table; an absent one reads as empty (every get returns its default).
  ConfigSection section(const std::string& name) const;
  /// Dotted path of a key in this section ("train.lr").
  std::string key_path(const std::string& key) const;
  /// This section's dotted path ("" for the root).
  const std::string& path() const { return path_; }
  /// The configuration file's name, for messages.
  const std::string& file() const;
  /// Throws ConfigError for `key` of this section, naming the file and line.
  [[noreturn]] void fail(const std::string& key, const std::string& value,
                         const std::string& expected) const;

 private:
  std::shared_ptr<ConfigState> state_;
  std::string path_;
};

/// The whole run configuration.
class RunConfig {
 public:
  /// Empty: every component gets its defaults.
  RunConfig();
  /// Parses `path`; throws ConfigError naming the file, line and column when the
  /// TOML is malformed or the file cannot be read.
  static RunConfig load(const std::string& path, const std::vector<std::string>& overrides = {});
  /// Parses TOML text; `name` stands for the file in messages.
  static RunConfig parse(const std::string& text, const std::string& name = "<string>",
                         const std::vector<std::string>& overrides = {});

  /// Applies `--a.b.c=value` (or `a.b.c=value`). The value is read as TOML
  /// (1e-3, true, [1, 2], "text") and as a plain string when it is not TOML.
  void apply_override(const std::string& assignment);

  /// The table `name` ("train", "model.rope"); an absent one reads as empty.
  ConfigSection section(const std::string& name) const;
  /// The top-level table.
  ConfigSection root() const;

  /// Reads and validates a component's Config; a ConfigError from validate()
  /// gains the file, the section prefix and the line of the key.
  template <class C>
  C get(const std::string& section_name) const {
    ConfigSection s = section(section_name);
    C c = C::from(s);
    try {
      c.validate();
    } catch (const ConfigError& e) {
      rethrow_in_section(e, s);
    }
    return c;
  }

  /// Throws ConfigError for the first key present in the file or overrides that
  /// no component read, with the closest known key as a suggestion.
  void check_unknown_keys() const;
  /// The effective configuration (file + overrides) as TOML text and as JSON.
  std::string to_toml() const;
  /// The same as JSON (for run_info and checkpoints).
  std::string to_json() const;
  /// The file name given to load()/parse().
  const std::string& file() const;

 private:
  [[noreturn]] void rethrow_in_section(const ConfigError& e, const ConfigSection& s) const;
  std::shared_ptr<ConfigState> state_;
};

/// Throws ConfigError(key, value, expected) unless `ok`; for validate().
inline void config_require(bool ok, const std::string& key, const std::string& value,
                           const std::string& expected) {
  if (!ok) throw ConfigError("", key, value, expected);
}

/// The value types a section reads (explicit instantiations live in config.cpp).
// clang-format 14 does not settle on one layout of this list.
// clang-format off
#define SHARDLM_CONFIG_TYPES(X) \
  X(bool) X(int) X(int64_t) X(double) X(std::string) X(std::vector<std::string>) \
  X(std::vector<int64_t>) X(std::vector<double>)
// clang-format on
/// Declares the instantiations of get/require for one type.
#define SHARDLM_DECLARE_GET(T)                                                 \
  extern template T ConfigSection::get<T>(const std::string&, const T&) const; \
  extern template T ConfigSection::require<T>(const std::string&) const;
SHARDLM_CONFIG_TYPES(SHARDLM_DECLARE_GET)
#undef SHARDLM_DECLARE_GET

}  // namespace shardlm::core
