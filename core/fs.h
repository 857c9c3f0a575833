// Durable files: fsync of a file or a directory, for the write-to-temporary,
// fsync, rename pattern every saved artefact uses (checkpoints, safetensors),
// so that a crash or a full disk never replaces a saved file with a partial one.
#pragma once

#include <string>

namespace shardlm::core {

// fsync(2) of `path` (a directory: O_DIRECTORY, to make a rename in it durable).
// Throws CheckpointError naming the path when it cannot be opened or synced.
void fsync_path(const std::string& path, bool directory = false);

// Writes `text` to `path` through `path`.tmp.PID, fsync and rename: `path`
// holds either its old content or the new one, never a partial file. Throws
// Error naming the file and saying the disk may be full when a write fails
// (the temporary file is removed then).
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace shardlm::core
