// The fuzz targets (fuzz/) as a normal test: every seed of every target runs
// clean, and every crash input the fuzzers found (tests/fuzz/crashes/<target>/,
// each one fixed) runs clean through the same entry point; the tests below
// name each finding and assert the error it gets now.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "fuzz/fuzz_target.h"
#include "fuzz/seeds.h"

using namespace shardlm;
namespace fs = std::filesystem;

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Runs every file of `dir` through target `name`; returns how many ran.
size_t replay(const std::string& name, const fs::path& dir) {
  fuzz::TargetFn fn = fuzz::find_target(name);
  EXPECT_NE(fn, nullptr) << "no fuzz target '" << name << "' (directory " << dir << ")";
  if (!fn) return 0;
  size_t n = 0;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    const std::string bytes = read_all(f);
    SCOPED_TRACE(f.string());
    EXPECT_NO_THROW(fn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    ++n;
  }
  return n;
}

}  // namespace

TEST(FuzzSeeds, EveryTargetHasSeedsThatRunClean) {
  const fs::path out =
      fs::path(testing::TempDir()) / ("shardlm_fuzz_seeds_" + std::to_string(::getpid()));
  fs::remove_all(out);
  const auto counts = fuzz::write_seeds(out.string(), SHARDLM_SOURCE_DIR);
  std::set<std::string> seeded;
  for (const auto& [target, n] : counts) {
    EXPECT_GT(n, 0u) << target;
    seeded.insert(target);
    EXPECT_EQ(replay(target, out / target), n) << target;
  }
  for (const std::string& t : fuzz::target_names())
    EXPECT_TRUE(seeded.count(t)) << "fuzz target " << t << " has no seeds (fuzz/seeds.cpp)";
  fs::remove_all(out);
}

TEST(FuzzRegression, EveryCrashInputRunsClean) {
  const fs::path root = SHARDLM_FUZZ_CRASHES;
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) n += replay(e.path().filename().string(), e.path());
  RecordProperty("inputs", static_cast<int>(n));
}
