// The configuration surface of a subcommand whose settings are a TOML section
// ([generate], [serve], [eval]): `--config FILE` and `--section.key=value`
// overrides, as `shardlm train` takes them, with the subcommand's flags kept
// as aliases of keys. Precedence: the file, then the overrides, then the flags
// given on the command line.
//
//   SectionFlags f(cmd, "generate");
//   f.alias<int64_t>("--max-new-tokens", "max_new_tokens", "Tokens to generate at most");
//   f.alias_flag("--no-cache", "use_cache", false, "Recompute every step");
//   ... in the callback:  core::RunConfig rc = f.load();
//       auto cfg = rc.get<model::GenerationConfig>("generate");
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"

namespace shardlm::launcher {

class SectionFlags {
 public:
  // Adds --config to `cmd` and lets it take --section.key=value extras.
  SectionFlags(CLI::App* cmd, std::string section);

  // A flag taking a value for `key`: T is std::string, int64_t, double or
  // std::vector<std::string> (a TOML array of strings; the flag repeats).
  template <class T>
  CLI::Option* alias(const std::string& flags, const std::string& key, const std::string& help);
  // A switch that sets `key` to `value` when given.
  CLI::Option* alias_flag(const std::string& flags, const std::string& key, bool value,
                          const std::string& help);

  // The configuration (call in the subcommand's body). Unknown keys of the
  // section are refused by the caller's rc.check_unknown_keys().
  core::RunConfig load() const;
  const std::string& section() const { return section_; }

 private:
  struct Alias {
    CLI::Option* option;
    std::string key;
    enum Kind { kString, kNumber, kStrings, kSwitch } kind;
    std::shared_ptr<std::vector<std::string>> values;
    bool switch_value = true;
  };
  CLI::Option* add(const std::string& flags, const std::string& key, Alias::Kind kind,
                   const std::string& help);

  CLI::App* cmd_;
  std::string section_;
  std::shared_ptr<std::string> file_;
  std::vector<Alias> aliases_;
};

// A TOML basic string holding `s` (quotes, backslashes and controls escaped).
std::string toml_string(const std::string& s);

}  // namespace shardlm::launcher
