// Helpers shared by the tokenizer tests: where the npm reference files are,
// reading files, random bytes.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace shardlm::data::test {

// .cache/reference/node_modules, installed by scripts/fetch_reference.sh (run
// by `./shardlm.sh setup`); SHARDLM_REFERENCE_DIR overrides it.
inline std::string reference_dir() {
  if (const char* env = std::getenv("SHARDLM_REFERENCE_DIR")) return env;
  return SHARDLM_DEFAULT_REFERENCE_DIR;
}

// Path of a reference file; the test fails (never skips) when it is missing.
inline std::string reference_file(const std::string& rel) {
  const std::string p = reference_dir() + "/" + rel;
  if (!std::filesystem::exists(p))
    ADD_FAILURE() << "reference file " << p
                  << " is missing: run scripts/fetch_reference.sh (./shardlm.sh setup does)";
  return p;
}

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_all(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A fresh empty directory under the system temp dir.
inline std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("shardlm_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// Random bytes, biased towards text-like content and invalid UTF-8 alike.
inline std::string random_bytes(std::mt19937& rng, size_t n) {
  static const char* pieces[] = {
      " ",   "  ",   "\n",       "\t",           "the",           "'s",   "é", "世界", "🌍",
      "123", "\xff", "\xe2\x82", "\xed\xa0\x80", "<|endoftext|>", "\r\n", "!!"};
  std::string s;
  std::uniform_int_distribution<int> kind(0, 3), byte(0, 255), pick(0, 15);
  while (s.size() < n) {
    if (kind(rng) == 0)
      s += static_cast<char>(byte(rng));
    else
      s += pieces[pick(rng)];
  }
  return s;
}

}  // namespace shardlm::data::test
