// ProcessGroup: a small, honest communicator in the style of gloo. rank() and
// size() are const; every collective takes an options struct (timeout, tag)
// and has an async form returning a Work handle. Collectives run in the order
// they were issued, on one communication thread per group, so the caller can
// compute while a collective is in flight. A collective that does not finish
// within its timeout triggers the group's watchdog (see watchdog.h).
//
// Uneven sizes: reduce_scatter and all_gather split a flat tensor of N
// elements into size() consecutive pieces with split_sizes(N, size()); rank r
// owns piece r. With N a multiple of size() the pieces are equal (FlatParams
// pads to that), otherwise the first N % size() pieces hold one more element.
//
// A ProcessGroup is also the run's core::Comm: strings and scalars (a chosen
// checkpoint, control commands, token counts, flags) travel as small tensors
// on device() through the same queue of collectives, so a training run has
// one channel between its ranks (see core/comm.h and collectives.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/comm.h"
#include "parallel/comm_stats.h"

namespace shardlm::parallel {

enum class ReduceOp { kSum, kAvg, kMax, kMin };
const char* reduce_op_name(ReduceOp op);

// Per-call options. A zero timeout means the group's default.
struct CollectiveOptions {
  std::chrono::milliseconds timeout{0};
  uint32_t tag = 0;  // free for the caller; shown in watchdog messages
};

// What a timed-out collective does.
enum class TimeoutAction {
  kAbort,  // report on every rank, then MPI_Abort the job (production)
  kThrow,  // the Work throws core::TimeoutError; the collective stays pending (tests, tools)
};

struct ProcessGroupOptions {
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  TimeoutAction on_timeout = TimeoutAction::kAbort;
  std::string name = "world";  // shown in log and watchdog messages
};

// Handle of an issued collective. wait() blocks until it completed and
// rethrows what it failed with; tensors handed to it must stay untouched until then.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
  virtual bool completed() const = 0;
};
using WorkPtr = std::shared_ptr<Work>;

class ProcessGroup : public core::Comm {
 public:
  // `device`: where the group's collectives take tensors, and where the
  // core::Comm values below travel.
  ProcessGroup(int rank, int size, ProcessGroupOptions options, torch::Device device = torch::kCPU);
  ~ProcessGroup() override = default;
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  torch::Device device() const { return device_; }
  const ProcessGroupOptions& options() const { return options_; }
  virtual std::string backend() const = 0;

  // ---- core::Comm: strings and scalars as tensors on device() -----------------------
  void broadcast_bytes(std::string& bytes, int root) override;
  void all_reduce_i64(std::vector<int64_t>& values, core::Reduce op) override;
  void all_reduce_f64(std::vector<double>& values, core::Reduce op) override;
  std::vector<std::string> gather_bytes(const std::string& mine, int root) override;

  // ---- async collectives (each returns at once) ----------------------------------
  // In place on `tensor` (contiguous).
  virtual WorkPtr all_reduce_async(torch::Tensor tensor, ReduceOp op = ReduceOp::kSum,
                                   const CollectiveOptions& opts = {}) = 0;
  // `input` (N,) flat; `output` (split_sizes(N, size())[rank],) gets this rank's
  // piece reduced over all ranks.
  virtual WorkPtr reduce_scatter_async(torch::Tensor output, torch::Tensor input,
                                       ReduceOp op = ReduceOp::kSum,
                                       const CollectiveOptions& opts = {}) = 0;
  // `output` (N,) flat gets every rank's `input` (split_sizes(N, size())[r],) in rank order.
  // `input` may be this rank's own piece of `output` (an in-place gather).
  virtual WorkPtr all_gather_async(torch::Tensor output, torch::Tensor input,
                                   const CollectiveOptions& opts = {}) = 0;
  // `tensor` of `root` is copied into `tensor` of every rank.
  virtual WorkPtr broadcast_async(torch::Tensor tensor, int root,
                                  const CollectiveOptions& opts = {}) = 0;
  virtual WorkPtr barrier_async(const CollectiveOptions& opts = {}) = 0;

  // ---- blocking forms ---------------------------------------------------------------
  void all_reduce(torch::Tensor tensor, ReduceOp op = ReduceOp::kSum,
                  const CollectiveOptions& opts = {}) {
    all_reduce_async(std::move(tensor), op, opts)->wait();
  }
  void reduce_scatter(torch::Tensor output, torch::Tensor input, ReduceOp op = ReduceOp::kSum,
                      const CollectiveOptions& opts = {}) {
    reduce_scatter_async(std::move(output), std::move(input), op, opts)->wait();
  }
  void all_gather(torch::Tensor output, torch::Tensor input, const CollectiveOptions& opts = {}) {
    all_gather_async(std::move(output), std::move(input), opts)->wait();
  }
  void broadcast(torch::Tensor tensor, int root, const CollectiveOptions& opts = {}) {
    broadcast_async(std::move(tensor), root, opts)->wait();
  }
  void barrier(const CollectiveOptions& opts = {}) { barrier_async(opts)->wait(); }

  // Bytes and calls per collective type (thread-safe).
  CommStats& stats() { return stats_; }
  const CommStats& stats() const { return stats_; }

 protected:
  // The timeout a call runs under.
  std::chrono::milliseconds timeout_for(const CollectiveOptions& opts) const {
    return opts.timeout.count() > 0 ? opts.timeout : options_.timeout;
  }
  // Checks the shapes of a reduce_scatter/all_gather call (throws core::MpiError);
  // returns the piece sizes.
  std::vector<int64_t> check_split(const char* what, const torch::Tensor& whole,
                                   const torch::Tensor& piece) const;

  const int rank_;
  const int size_;
  const ProcessGroupOptions options_;
  const torch::Device device_;
  CommStats stats_;
};

// N elements split into `parts` consecutive pieces; the first N % parts get one more.
std::vector<int64_t> split_sizes(int64_t n, int parts);
// Start offsets of those pieces (parts + 1 entries, the last one n).
std::vector<int64_t> split_offsets(int64_t n, int parts);

}  // namespace shardlm::parallel
