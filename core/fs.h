// Durable files: fsync of a file or a directory, for the write-to-temporary,
// fsync, rename pattern every saved artefact uses (checkpoints, safetensors),
// so that a crash or a full disk never replaces a saved file with a partial one.
#pragma once

#include <string>

namespace shardlm::core {

// fsync(2) of `path` (a directory: O_DIRECTORY, to make a rename in it durable).
// Throws CheckpointError naming the path when it cannot be opened or synced.
void fsync_path(const std::string& path, bool directory = false);

}  // namespace shardlm::core
