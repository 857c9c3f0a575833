// Durable files (see fs.h).
#include "core/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/error.h"

namespace shardlm::core {

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  SHARDLM_CHECK(fd >= 0, CheckpointError, "{}: cannot open to sync", path);
  int rc = ::fsync(fd);
  ::close(fd);
  SHARDLM_CHECK(rc == 0, CheckpointError, "{}: fsync failed (disk full or I/O error?)", path);
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    SHARDLM_CHECK(out, Error, "cannot write '{}': {}", tmp, std::strerror(errno));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      SHARDLM_FAIL(Error, "cannot write '{}' (disk full?)", tmp);
    }
  }
  try {
    fsync_path(tmp, false);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    SHARDLM_FAIL(Error, "cannot rename '{}' to '{}': {}", tmp, path, std::strerror(err));
  }
}

}  // namespace shardlm::core
