/// @file
/// Where this process runs: rank, world, local rank, device and CPU threads.
/// Built once in main (after MpiSession) and passed down; nothing below reads
/// MPI or the launcher's variables again.
#pragma once

#include <string>

namespace shardlm::core {

/// MPI_Init_thread / MPI_Finalize as RAII. Requests MPI_THREAD_MULTIPLE (the
/// process group's watchdog uses a side channel from its own thread).
class MpiSession {
 public:
  /// Initialises MPI (unless something already did; then it is not finalised here).
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  /// The thread level MPI provided (MPI_THREAD_MULTIPLE asked).
  int thread_level() const { return provided_; }
  /// Whether MPI is initialised and not yet finalised in this process.
  static bool active();
  /// MPI_Abort on the world communicator, for when other ranks would hang.
  [[noreturn]] static void abort(int code);

 private:
  int provided_ = 0;
  bool owner_ = false;
};

/// This process's place in the job and what it computes on.
struct Env {
  int rank = 0;                   ///< in the world
  int world_size = 1;             ///< ranks in the world
  int local_rank = 0;             ///< among the ranks of this host
  int local_size = 1;             ///< ranks on this host
  std::string device = "cpu";     ///< "cpu" or "cuda:<n>"
  int cpu_threads = 1;            ///< intra-op threads for this rank
  std::string hostname;           ///< this host
  std::string source = "single";  ///< where rank/world came from: mpi, ompi, pmix, slurm, single

  /// Rank 0: writes manifests, talks to the monitor.
  bool is_root() const { return rank == 0; }
  /// Whether `device` is a CUDA device.
  bool is_cuda() const { return device.rfind("cuda", 0) == 0; }

  /// Rank and world from MPI when it is initialised; else from OMPI_COMM_WORLD_*,
  /// PMIX_* or SLURM_* variables; else a world of one. Local rank from
  /// MPI_COMM_TYPE_SHARED (or the variables). Device cuda:<local_rank % n> when
  /// CUDA is usable, else cpu. Threads: $OMP_NUM_THREADS when set, else the
  /// cores divided among the local ranks (at least one).
  static Env detect();
  /// Sets LibTorch's intra-op thread count to cpu_threads.
  void apply_threads() const;
};

/// Debian's LibTorch runs element-wise operators on libgomp's threads and matrix
/// products on OpenBLAS's own pthreads. With libgomp's default (active) wait,
/// its idle threads spin through every matrix product and fight OpenBLAS for
/// the same cores: a CPU training step of the benchmark model took 0.65 s
/// instead of 0.22-0.28 s on the 2-core development machine. libgomp reads
/// OMP_WAIT_POLICY once, when it is loaded, so this sets it to PASSIVE and
/// executes the program again (once; argv unchanged). A user's own
/// OMP_WAIT_POLICY is left alone. Call it first thing in main(); it returns
/// when no new execution was needed or possible.
void prefer_passive_omp_wait(char** argv);

}  // namespace shardlm::core
