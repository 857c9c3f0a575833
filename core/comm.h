/// @file
/// Rank-to-rank traffic for strings and scalars: the one way every folder talks
/// between ranks when it has no tensors to move (a chosen checkpoint path, a
/// token, control commands, an error flag, a token count).
///
///   core::Comm& comm = ...;                       // parallel::ProcessGroup is one
///   std::string dir = core::broadcast_string(comm, mine);        // rank 0's
///   int64_t n = core::all_reduce(comm, local_tokens, core::Reduce::kSum);
///   if (core::any_rank(comm, failed)) ...
///
/// Two implementations: core::MpiComm (checked MPI on a communicator, for tools
/// that have no process group, such as `prepare`) and parallel::ProcessGroup,
/// which moves the same values as tensors on its own device through its own
/// collectives (NCCL on GPUs), so that a training run has one channel, one
/// order of collectives and one watchdog. Lower folders (data, ckpt, monitor)
/// take a core::Comm& and never see MPI_Comm.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace shardlm::core {

/// How all_reduce combines the ranks' values.
enum class Reduce { kSum, kMax, kMin };

/// The ranks of a run, for strings and scalars (see the file comment).
class Comm {
 public:
  virtual ~Comm() = default;
  /// This process's rank, 0 .. size() - 1.
  virtual int rank() const = 0;
  /// The number of ranks.
  virtual int size() const = 0;
  /// Rank `root`'s `bytes` on every rank (any length; every rank passes a string).
  virtual void broadcast_bytes(std::string& bytes, int root) = 0;
  /// Element-wise reduction of `values` over the ranks, in place; every rank
  /// passes the same number of values.
  virtual void all_reduce_i64(std::vector<int64_t>& values, Reduce op) = 0;
  /// The same for doubles.
  virtual void all_reduce_f64(std::vector<double>& values, Reduce op) = 0;
  /// Every rank's `mine` on `root`, in rank order (other ranks get an empty vector).
  virtual std::vector<std::string> gather_bytes(const std::string& mine, int root) = 0;
};

// ---- helpers ---------------------------------------------------------------------------
/// Rank `root`'s `s` on every rank.
std::string broadcast_string(Comm& comm, std::string s, int root = 0);
/// The reduction of one value over the ranks (exact for int64).
int64_t all_reduce(Comm& comm, int64_t value, Reduce op);
/// The reduction of one double over the ranks.
double all_reduce(Comm& comm, double value, Reduce op);
/// Whether `flag` is true on any rank (every rank gets the same answer).
bool any_rank(Comm& comm, bool flag);
/// Whether `flag` is true on every rank.
bool all_ranks(Comm& comm, bool flag);
/// Returns when every rank has called it.
void barrier(Comm& comm);

// ---- MPI -------------------------------------------------------------------------------
/// core::Comm over an MPI communicator (not owned); every call is checked and
/// throws core::MpiError. A communicator of one rank needs MPI only for rank().
class MpiComm final : public Comm {
 public:
  /// Over `comm` (not owned, not duplicated).
  explicit MpiComm(MPI_Comm comm = MPI_COMM_WORLD);
  /// A channel of its own over the ranks of `comm` (MPI_Comm_dup, freed with
  /// it): for traffic that runs beside another's, such as an async checkpoint's.
  static std::unique_ptr<MpiComm> duplicate(MPI_Comm comm);
  /// A world of one without MPI (MPI not initialised): tools run alone.
  static MpiComm single();
  /// Frees a duplicate().
  ~MpiComm() override;
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;
  /// Takes over `other` (and its duplicate, if it owns one).
  MpiComm(MpiComm&& other) noexcept;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void broadcast_bytes(std::string& bytes, int root) override;
  void all_reduce_i64(std::vector<int64_t>& values, Reduce op) override;
  void all_reduce_f64(std::vector<double>& values, Reduce op) override;
  std::vector<std::string> gather_bytes(const std::string& mine, int root) override;
  /// The MPI communicator (MPI_COMM_NULL for single()).
  MPI_Comm native() const { return comm_; }

 private:
  MpiComm(MPI_Comm comm, int rank, int size) : comm_(comm), rank_(rank), size_(size) {}
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  bool owned_ = false;
};

}  // namespace shardlm::core
