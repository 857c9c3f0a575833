// SectionFlags (see section_flags.h).
#include "launcher/section_flags.h"

#include <cstdint>

#include <fmt/format.h>

namespace shardlm::launcher {

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f)
          out += fmt::format("\\u{:04X}", c);
        else
          out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

SectionFlags::SectionFlags(CLI::App* cmd, std::string section)
    : cmd_(cmd), section_(std::move(section)), file_(std::make_shared<std::string>()) {
  cmd_->add_option("-c,--config", *file_,
                   fmt::format("TOML file with a [{}] section (flags and --{}.KEY=VALUE win)",
                               section_, section_));
  cmd_->allow_extras();
  cmd_->footer(fmt::format(
      "Every setting is a key of the [{0}] section: --config FILE, --{0}.KEY=VALUE, or its flag.",
      section_));
}

CLI::Option* SectionFlags::add(const std::string& flags, const std::string& key, Alias::Kind kind,
                               const std::string& help) {
  Alias a{nullptr, key, kind, std::make_shared<std::vector<std::string>>()};
  if (kind == Alias::kSwitch)
    a.option = cmd_->add_flag(flags, help);
  else
    a.option = cmd_->add_option(flags, *a.values, help + fmt::format(" ({}.{})", section_, key));
  if (kind == Alias::kNumber) a.option->check(CLI::Number);
  if (kind != Alias::kStrings && kind != Alias::kSwitch) a.option->expected(1);
  aliases_.push_back(a);
  return a.option;
}

template <>
CLI::Option* SectionFlags::alias<std::string>(const std::string& flags, const std::string& key,
                                              const std::string& help) {
  return add(flags, key, Alias::kString, help);
}
template <>
CLI::Option* SectionFlags::alias<int64_t>(const std::string& flags, const std::string& key,
                                          const std::string& help) {
  return add(flags, key, Alias::kNumber, help);
}
template <>
CLI::Option* SectionFlags::alias<double>(const std::string& flags, const std::string& key,
                                         const std::string& help) {
  return add(flags, key, Alias::kNumber, help);
}
template <>
CLI::Option* SectionFlags::alias<std::vector<std::string>>(const std::string& flags,
                                                           const std::string& key,
                                                           const std::string& help) {
  return add(flags, key, Alias::kStrings, help);
}

CLI::Option* SectionFlags::alias_flag(const std::string& flags, const std::string& key, bool value,
                                      const std::string& help) {
  CLI::Option* o = add(flags, key, Alias::kSwitch, help);
  aliases_.back().switch_value = value;
  return o;
}

core::RunConfig SectionFlags::load() const {
  std::vector<std::string> overrides = cmd_->remaining();
  for (const Alias& a : aliases_) {
    if (a.option->count() == 0) continue;
    std::string value;
    switch (a.kind) {
      case Alias::kString:
        value = toml_string(a.values->back());
        break;
      case Alias::kNumber:
        value = a.values->back();
        break;
      case Alias::kSwitch:
        value = a.switch_value ? "true" : "false";
        break;
      case Alias::kStrings: {
        value = "[";
        for (size_t i = 0; i < a.values->size(); ++i)
          value += (i ? ", " : "") + toml_string((*a.values)[i]);
        value += "]";
        break;
      }
    }
    overrides.push_back(section_ + "." + a.key + "=" + value);
  }
  if (file_->empty())
    return core::RunConfig::parse("", fmt::format("the {} command line", section_), overrides);
  return core::RunConfig::load(*file_, overrides);
}

}  // namespace shardlm::launcher
