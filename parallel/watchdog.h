// Watchdog: when a collective does not complete within its timeout, find out
// which ranks have not arrived and stop the whole job with a message that says
// so on every rank. NCCL or MPI alone only tell you that *this* rank waits.
//
// Side channel: each group duplicates its communicator once more for the
// watchdog, and a listener thread per rank polls it (MPI_Iprobe every few ms,
// never a spinning blocking receive) for two kinds of message:
//   query  -> reply with this rank's progress counters (last collective called,
//             started on the communication thread, completed);
//   notice -> print the report it carries, acknowledge, and wait to be aborted.
// The same thread keeps the deadline of the collective in flight (arm/disarm):
// when it passes, it asks every rank for its progress, and either aborts the
// job (after every rank printed the report) or hands the report to a callback.
// The normal path costs nothing: counters are atomics, messages flow only when
// a timeout fires. The listener runs even while the rank's main thread is
// stuck in compute or sleep, so a stalled rank still answers and still prints.
// Needs MPI_THREAD_MULTIPLE (core::MpiSession asks for it).
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace shardlm::parallel {

// Exit code of a job stopped by the watchdog (as timeout(1) uses).
inline constexpr int kWatchdogExitCode = 124;

struct RankProgress {
  int rank = -1;
  bool answered = false;  // false: did not answer within the grace period
  int64_t called = 0;     // highest sequence number its caller issued
  int64_t started = 0;    // highest started on its communication thread
  int64_t completed = 0;  // highest completed
};

struct WatchdogReport {
  std::string group;       // process group name
  std::string collective;  // e.g. "all_reduce(sum, float32, 1024 elements, tag 0)"
  int64_t seq = 0;         // sequence number of the collective in its group (from 1)
  int reporter = 0;        // rank that timed out
  int64_t waited_ms = 0;
  std::vector<RankProgress> ranks;

  // Ranks that have not called collective `seq` (or did not answer).
  std::vector<int> not_arrived() const;
  // The one-paragraph message printed on every rank.
  std::string text() const;
};

class Watchdog {
 public:
  // Duplicates `comm` (collective over it) and starts the listener thread.
  Watchdog(MPI_Comm comm, std::string group_name);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Progress of this rank, in sequence numbers (the first collective is 1).
  void on_called(int64_t seq) { called_.store(seq); }
  void on_started(int64_t seq) { started_.store(seq); }
  void on_completed(int64_t seq) { completed_.store(seq); }

  // Watches collective `seq` (described by `what`) until disarm(): when
  // `timeout` passes first, the listener investigates and calls `on_timeout`
  // with the report (once, from the listener thread). Only one collective is
  // armed at a time (the group's communication thread runs one at a time).
  using TimeoutHandler = std::function<void(const WatchdogReport&)>;
  void arm(int64_t seq, std::string what, std::chrono::milliseconds timeout,
           TimeoutHandler on_timeout);
  void disarm();

  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  // Asks every other rank for its progress (waits up to `grace` for answers)
  // and returns the report for collective `seq` described by `what`.
  WatchdogReport investigate(const std::string& what, int64_t seq, std::chrono::milliseconds waited,
                             std::chrono::milliseconds grace = std::chrono::milliseconds(1500));
  // Prints the report on this rank, sends it to every other rank (each prints it
  // and acknowledges), waits up to `grace` for the acknowledgements of the
  // ranks that answered the investigation, then MPI_Abort(MPI_COMM_WORLD,
  // kWatchdogExitCode).
  [[noreturn]] void abort_job(const WatchdogReport& report,
                              std::chrono::milliseconds grace = std::chrono::milliseconds(1500));
  void listen();
  void check_deadline();
  // Answers one pending query or notice, if any; returns whether it did.
  bool serve_once();
  void answer_query(int source);
  void answer_notice(int source);

  MPI_Comm side_ = MPI_COMM_NULL;
  std::string group_;
  int rank_ = 0;
  int size_ = 1;
  std::atomic<int64_t> called_{0}, started_{0}, completed_{0};
  std::atomic<int64_t> nonce_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> aborting_{false};
  std::chrono::steady_clock::time_point notice_deadline_ =
      std::chrono::steady_clock::time_point::max();

  struct Armed {
    int64_t seq = 0;
    std::string what;
    std::chrono::milliseconds timeout{0};
    std::chrono::steady_clock::time_point deadline;
    TimeoutHandler on_timeout;
  };
  std::mutex armed_mu_;
  Armed armed_;  // seq 0: nothing armed
  std::thread listener_;
};

}  // namespace shardlm::parallel
