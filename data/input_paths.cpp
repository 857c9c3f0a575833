// Expansion of input paths: files, directories, globs (see input_paths.h).
#include "data/input_paths.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/error.h"

namespace shardlm::data {

namespace fs = std::filesystem;

namespace {
void add_directory(const fs::path& dir, std::vector<std::string>& out) {
  std::vector<std::string> files;
  auto it = fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink);
  for (; it != fs::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) files.push_back(it->path().string());
  }
  std::sort(files.begin(), files.end());
  out.insert(out.end(), files.begin(), files.end());
}
}  // namespace

std::vector<std::string> expand_input_paths(const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  for (const std::string& in : inputs) {
    const size_t before = out.size();
    if (in.find_first_of("*?[") != std::string::npos && !fs::exists(in)) {
      glob_t g{};
      const int rc = ::glob(in.c_str(), GLOB_NOSORT, nullptr, &g);
      std::vector<std::string> matches(g.gl_pathv, g.gl_pathv + (rc == 0 ? g.gl_pathc : 0));
      globfree(&g);
      std::sort(matches.begin(), matches.end());
      for (const auto& p : matches) {
        if (fs::is_directory(p))
          add_directory(p, out);
        else if (fs::is_regular_file(p))
          out.push_back(p);
      }
      SHARDLM_CHECK(out.size() > before, core::DataError, "input pattern '{}' matches no file", in);
      continue;
    }
    SHARDLM_CHECK(fs::exists(in), core::DataError, "input '{}' does not exist", in);
    if (fs::is_directory(in)) {
      add_directory(in, out);
      SHARDLM_CHECK(out.size() > before, core::DataError, "input directory '{}' holds no file", in);
    } else {
      out.push_back(in);
    }
  }
  // Drop repeats (a file named twice), keeping the first position.
  std::set<std::string> seen;
  std::vector<std::string> unique;
  for (auto& p : out)
    if (seen.insert(fs::weakly_canonical(p).string()).second) unique.push_back(std::move(p));
  return unique;
}

}  // namespace shardlm::data
