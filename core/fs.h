/// @file
/// Durable files: the one way shardlm saves a file. write_file_atomic writes a
/// temporary beside the target, fsyncs it, renames it over the target and
/// fsyncs the folder, so that a crash or a full disk never replaces a saved
/// file with a partial one (the temporary is removed on failure).
///
///   core::write_file_atomic<core::DataError>(path, json.dump(2));
///   core::write_file_atomic<core::CheckpointError>(path, [&](std::ostream& out) { ... });
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <string_view>

#include "core/error.h"

namespace shardlm::core {

/// fsync(2) of `path` (a directory: O_DIRECTORY, to make a rename in it durable).
/// Throws CheckpointError naming the path when it cannot be opened or synced.
void fsync_path(const std::string& path, bool directory = false);

/// Fills the temporary file; a stream left in a failed state means "write failed".
using WriteFn = std::function<void(std::ostream&)>;

/// Writes `path` through `path + ".tmp"`: write, flush, fsync, rename, fsync of
/// the folder. Returns an empty string on success, otherwise what failed (the
/// temporary is removed and `path` is untouched). Exceptions thrown by `write`
/// propagate after the temporary is removed.
std::string try_write_file_atomic(const std::string& path, const WriteFn& write);

/// For a file another library wrote (an HDF5 shard): fsync `tmp`, rename it to
/// `path`, fsync the folder. Returns an empty string or what failed (`tmp` is
/// then removed).
std::string try_commit_file(const std::string& tmp, const std::string& path);
/// As try_commit_file; throws E with the failure.
template <class E = DataError>
void commit_file(const std::string& tmp, const std::string& path) {
  std::string failure = try_commit_file(tmp, path);
  if (!failure.empty()) throw E(failure);
}

/// As try_write_file_atomic; throws E (a core::Error) with the failure, e.g. "m.safetensors.tmp:
/// write failed (disk full?)".
template <class E = DataError>
void write_file_atomic(const std::string& path, const WriteFn& write) {
  std::string failure = try_write_file_atomic(path, write);
  if (!failure.empty()) throw E(failure);
}
/// write_file_atomic of `bytes`.
template <class E = DataError>
void write_file_atomic(const std::string& path, std::string_view bytes) {
  write_file_atomic<E>(path, [bytes](std::ostream& out) { out.write(bytes.data(), bytes.size()); });
}

}  // namespace shardlm::core
