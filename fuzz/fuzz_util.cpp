// The fuzz targets' registry (replay builds) and their file helpers.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>

#include <fmt/format.h>

#include "core/log.h"
#include "fuzz/fuzz_target.h"

namespace shardlm::fuzz {

namespace fs = std::filesystem;

namespace {
std::map<std::string, TargetFn>& registry() {
  static std::map<std::string, TargetFn> r;
  return r;
}
// Set when targets register (the replay build): a failed oracle then throws,
// so that the gtest reports it; under libFuzzer it aborts and the input is saved.
bool replaying = false;
}  // namespace

bool register_target(const char* name, TargetFn fn) {
  registry()[name] = fn;
  replaying = true;
  return true;
}

TargetFn find_target(const std::string& name) {
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : it->second;
}

std::vector<std::string> target_names() {
  std::vector<std::string> out;
  for (const auto& [name, fn] : registry()) out.push_back(name);
  return out;
}

const std::string& scratch_dir() {
  static const std::string dir = [] {
    std::string templ = (fs::temp_directory_path() / "shardlm-fuzz.XXXXXX").string();
    if (!::mkdtemp(templ.data())) {
      std::perror("shardlm fuzz: mkdtemp");
      std::abort();
    }
    static const std::string keep = templ;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(keep, ec);
    });
    return templ;
  }();
  return dir;
}

std::string scratch_file(const std::string& name, std::string_view bytes) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "shardlm fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

std::string scratch_subdir(const std::string& name) {
  const fs::path dir = fs::path(scratch_dir()) / name;
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  return dir.string();
}

std::vector<std::string_view> split_files(std::string_view input, size_t max_parts) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = input.find(kFileSeparator);
    if (at == std::string_view::npos) break;
    parts.push_back(input.substr(0, at));
    input.remove_prefix(at + kFileSeparator.size());
  }
  parts.push_back(input);
  return parts;
}

void quiet_logs() {
  core::log::set_level(core::log::Level::kOff);
}

void oracle_failed(const char* expr, const char* file, int line, const std::string& detail) {
  if (replaying)
    throw std::logic_error(
        fmt::format("fuzz oracle failed at {}:{}: {}: {}", file, line, expr, detail));
  std::fprintf(stderr, "shardlm fuzz oracle failed at %s:%d: %s\n  %s\n", file, line, expr,
               detail.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace shardlm::fuzz
