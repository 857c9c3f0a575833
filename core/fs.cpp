// Durable files (see fs.h).
#include "core/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include "core/error.h"

namespace shardlm::core {

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  SHARDLM_CHECK(fd >= 0, CheckpointError, "{}: cannot open to sync", path);
  int rc = ::fsync(fd);
  ::close(fd);
  SHARDLM_CHECK(rc == 0, CheckpointError, "{}: fsync failed (disk full or I/O error?)", path);
}

}  // namespace shardlm::core
