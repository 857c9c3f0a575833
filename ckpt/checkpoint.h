// Sharded HDF5 checkpoints: one file per rank plus a manifest, committed
// atomically, written in the background, and readable by any world size.
//
//   RUN_DIR/checkpoints/
//     step-000120/
//       rank-00000-of-00002.h5   this rank's pieces of every unit + its RNG state
//       rank-00001-of-00002.h5
//       manifest.json            written last by rank 0: layout, ranges, state, checksums
//     latest                     a text file naming the newest committed step directory
//
// A unit (a transformer block, or the root: embeddings, final norm, head) is
// saved as its flat fp32 vector of parameters (and Adam moments), cut into
// one contiguous range per rank. Any world size can read any range back,
// whatever world wrote it: resharding is reading other ranges.
//
// Commit: every rank writes into step-N.tmp/ and fsyncs its file; rank 0
// gathers the checksums, writes and fsyncs manifest.json, renames the
// directory to step-N/, and replaces `latest` by rename. A crash at any moment
// leaves the previous checkpoint complete.
#pragma once

#include "core/comm.h"

#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include "ckpt/config.h"

namespace shardlm::ckpt {

inline constexpr int kFormatVersion = 1;

// One unit's piece held by this rank: elements [begin, end) of the unit's
// unpadded flat layout.
struct UnitPiece {
  std::string name;                          // "unit0", ..., "root"
  int64_t numel = 0;                         // elements of the whole unit (unpadded)
  int64_t begin = 0, end = 0;                // this rank's range
  torch::Tensor params;                      // (end - begin,) fp32, on the CPU
  torch::Tensor exp_avg, exp_avg_sq;         // same shape; undefined when never stepped
  std::map<std::string, torch::Tensor> raw;  // the optimizer's own state (8-bit), exact layout
  nlohmann::json layout;                     // [{name, shape, offset}] of the unit's parameters
};

// What one rank hands to save(): host copies only, so training can go on.
struct Snapshot {
  int64_t step = 0;
  std::vector<UnitPiece> units;
  std::map<std::string, torch::Tensor> rank_tensors;  // per-rank extras (RNG states)
  nlohmann::json state = nlohmann::json::object();    // global state (rank 0's is kept)
  std::optional<double> val_loss;                     // for keep_best
};

// "step-000123"
std::string step_dir_name(int64_t step);
// "rank-00001-of-00004.h5"
std::string rank_file_name(int rank, int world);
// "xxh3-64:<16 hex>" of a file's bytes; throws CheckpointError naming it.
std::string file_checksum(const std::string& path);

class Checkpointer {
 public:
  // Collective over `comm`. An async save talks between ranks from a thread of
  // its own, so `comm` must be a channel of its own, not the training loop's
  // (core::MpiComm::duplicate, or a process group of its own; like torch DCP's
  // side group for its coordination).
  Checkpointer(CheckpointConfig cfg, std::string run_dir, std::shared_ptr<core::Comm> comm);
  ~Checkpointer();  // waits for a save in flight (errors are logged)
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Collective: every rank calls it at the same step. Waits for the previous
  // save, then writes `snap` (in a background thread when async) and commits.
  // Throws CheckpointError naming the file when writing fails; the previous
  // checkpoint stays intact.
  void save(Snapshot snap, bool async);
  // Waits for the save in flight; rethrows its error.
  void wait();
  // Seconds the last save() kept the caller waiting.
  double last_stall_seconds() const { return stall_s_; }
  // Seconds the last completed write took (in the background when async).
  double last_write_seconds() const { return write_s_; }
  std::string checkpoints_dir() const;
  const CheckpointConfig& config() const { return cfg_; }

 private:
  void write_and_commit(const Snapshot& snap);
  CheckpointConfig cfg_;
  std::string run_dir_;
  std::shared_ptr<core::Comm> comm_;
  int rank_ = 0, world_ = 1;
  std::thread worker_;
  std::exception_ptr error_;
  double stall_s_ = 0, write_s_ = 0;
};

// Reads a committed checkpoint (any world size wrote it).
class CheckpointReader {
 public:
  // Reads and checks manifest.json; throws CheckpointError naming what is wrong.
  explicit CheckpointReader(std::string dir);
  ~CheckpointReader();
  const std::string& dir() const { return dir_; }
  const nlohmann::json& manifest() const { return manifest_; }
  int world_size() const { return world_; }
  int64_t step() const;
  // Every rank file present with the manifest's size and checksum; throws
  // CheckpointError naming the first bad file.
  void verify() const;
  // Elements [begin, end) of a unit's "params", "exp_avg" or "exp_avg_sq"
  // (fp32, (end - begin,)), gathered from the files that hold them.
  torch::Tensor read_range(const std::string& unit, const std::string& what, int64_t begin,
                           int64_t end) const;
  int64_t unit_numel(const std::string& unit) const;
  bool has_optimizer_state(const std::string& unit) const;
  // The per-rank extras and a unit's raw optimizer state, as `rank` saved them.
  std::map<std::string, torch::Tensor> rank_tensors(int rank) const;
  std::map<std::string, torch::Tensor> unit_raw(int rank, const std::string& unit) const;

 private:
  struct Files;
  std::string dir_;
  nlohmann::json manifest_;
  int world_ = 0;
  std::unique_ptr<Files> files_;
};

// Every parameter of the model, whole, by name (from the units' layouts).
std::map<std::string, torch::Tensor> read_parameters(const CheckpointReader& reader);

// Committed checkpoint directories of a run, oldest first.
std::vector<std::string> list_checkpoints(const std::string& run_dir);
// The checkpoint to resume from: spec "latest" (the one `latest` names, or,
// when that is missing or damaged, the newest one that verifies: a warning
// says so) or a directory (verified). nullopt when "latest" finds none.
// Throws CheckpointError when a given directory does not verify.
std::optional<std::string> resolve_checkpoint(const std::string& run_dir, const std::string& spec);
// Applies the retention rules of `cfg` to the run's checkpoints; returns the
// directories removed. (Rank 0 calls it after each commit.)
std::vector<std::string> prune_checkpoints(const std::string& run_dir, const CheckpointConfig& cfg);

}  // namespace shardlm::ckpt
