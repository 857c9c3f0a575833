// Durable files (see fs.h).
#include "core/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace shardlm::core {

namespace fs = std::filesystem;

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  SHARDLM_CHECK(fd >= 0, CheckpointError, "{}: cannot open to sync", path);
  int rc = ::fsync(fd);
  ::close(fd);
  SHARDLM_CHECK(rc == 0, CheckpointError, "{}: fsync failed (disk full or I/O error?)", path);
}

std::string try_write_file_atomic(const std::string& path, const WriteFn& write) {
  const std::string tmp = path + ".tmp";
  std::error_code ec;
  auto fail = [&](std::string why) {
    fs::remove(tmp, ec);
    return why;
  };
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out.good())
      return fail(fmt::format("{}: cannot open for writing: {}", tmp, std::strerror(errno)));
    try {
      write(out);
    } catch (...) {
      out.close();
      fs::remove(tmp, ec);
      throw;
    }
    out.flush();
    if (!out.good()) return fail(fmt::format("{}: write failed (disk full?)", tmp));
    out.close();
    if (out.fail()) return fail(fmt::format("{}: write failed (disk full?)", tmp));
  }
  return try_commit_file(tmp, path);
}

std::string try_commit_file(const std::string& tmp, const std::string& path) {
  std::error_code ec;
  auto fail = [&](std::string why) {
    fs::remove(tmp, ec);
    return why;
  };
  try {
    fsync_path(tmp);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  fs::rename(tmp, path, ec);
  if (ec) return fail(fmt::format("{}: cannot rename into place: {}", path, ec.message()));
  fs::path dir = fs::path(path).parent_path();
  try {
    fsync_path(dir.empty() ? "." : dir.string(), /*directory=*/true);
  } catch (const std::exception& e) {
    return e.what();  // the file is in place; its folder entry may not be durable
  }
  return {};
}

}  // namespace shardlm::core
