// Watchdog: a rank that stalls before a collective is named, on every rank.
//  - Watchdog.* runs under mpiexec -n 2/4 in TimeoutAction::kThrow mode: the
//    ranks that arrived get core::TimeoutError naming the late rank.
//  - WatchdogAbort.* (one process) launches `mpiexec -n 2` and `-n 4` of this
//    executable running WatchdogChild.DISABLED_Stall, where the last rank sleeps
//    long before an all_reduce, and checks that the whole job ends within the
//    timeout plus a margin, fails, and that every rank printed the report.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <thread>

#include "core/error.h"
#include "parallel/mpi_group.h"

extern char** environ;

namespace shardlm::parallel {
namespace {

using namespace std::chrono_literals;

TEST(Watchdog, LateRankIsNamedByTheRanksThatWaited) {
  ProcessGroupOptions o;
  o.timeout = 400ms;
  o.on_timeout = TimeoutAction::kThrow;
  o.name = "wd-test";
  MpiGroup g(MPI_COMM_WORLD, o);
  if (g.size() < 2) GTEST_SKIP() << "needs 2 or more ranks";
  const int late = g.size() - 1;
  CollectiveOptions long_wait;
  long_wait.timeout = 60s;
  g.barrier(long_wait);  // #1
  auto t = torch::ones({1000});
  if (g.rank() == late) {
    std::this_thread::sleep_for(2500ms);
    g.all_reduce(t);  // #2, arrives late and completes normally
  } else {
    auto t0 = std::chrono::steady_clock::now();
    try {
      g.all_reduce(t);
      ADD_FAILURE() << "expected a TimeoutError";
    } catch (const core::TimeoutError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("collective #2 all_reduce(sum"), std::string::npos) << msg;
      EXPECT_NE(msg.find("group 'wd-test'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("ranks not arrived: " + std::to_string(late)), std::string::npos) << msg;
      EXPECT_NE(msg.find(fmt::format("r{} called #1", late)), std::string::npos) << msg;
    }
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GE(waited, 0.35);
    EXPECT_LT(waited, 2.4);  // reported before the late rank arrived
  }
  g.barrier(long_wait);  // #3: the group still works once the late rank came
  EXPECT_EQ(g.issued(), 3);
}

// ---- whole-job abort, checked from outside -----------------------------------------

// The environment before MPI_Init: a child mpiexec must not inherit the
// singleton's MPI variables.
std::vector<std::string>& clean_environment() {
  static std::vector<std::string> env;
  return env;
}
const bool kEnvCaptured = [] {
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    bool mpi_internal = kv.rfind("PMIX_", 0) == 0 || kv.rfind("OMPI_COMM_", 0) == 0 ||
                        kv.rfind("OMPI_MCA_ess", 0) == 0 || kv.rfind("OMPI_MCA_orte", 0) == 0 ||
                        kv.rfind("OMPI_MCA_pmix", 0) == 0 || kv.rfind("OMPI_FILE_", 0) == 0;
    if (!mpi_internal) clean_environment().push_back(kv);
  }
  return true;
}();

struct ChildResult {
  int exit_code = -1;
  double seconds = 0;
  std::string output;
};

ChildResult run_child(const std::vector<std::string>& args, const std::vector<std::string>& env,
                      double kill_after_s) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  ChildResult res;
  if (rc != 0) {
    close(fds[0]);
    res.output = std::string("spawn failed: ") + std::strerror(rc);
    return res;
  }
  char buf[4096];
  bool killed = false;
  for (;;) {
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!killed && el > kill_after_s) {
      kill(pid, SIGTERM);
      killed = true;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    res.output.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return res;
}

constexpr int kChildTimeoutMs = 1500;
constexpr int kChildStallS = 60;

void check_job_abort(int np) {
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world != 1) GTEST_SKIP() << "launches its own mpiexec; run as one process";
  char self[4096] = {0};
  ASSERT_GT(readlink("/proc/self/exe", self, sizeof(self) - 1), 0);
  std::vector<std::string> env = clean_environment();
  env.push_back("SHARDLM_WATCHDOG_CHILD=1");
  std::vector<std::string> args = {SHARDLM_MPIEXEC,
                                   "-n",
                                   std::to_string(np),
                                   self,
                                   "--gtest_filter=WatchdogChild.*",
                                   "--gtest_also_run_disabled_tests"};
  ChildResult r = run_child(args, env, 40.0);
  SCOPED_TRACE(r.output);
  EXPECT_NE(r.exit_code, 0);
  // The timeout, the investigation and the acknowledgements, plus MPI's start
  // and teardown; far below the stall of the late rank.
  EXPECT_LT(r.seconds, kChildTimeoutMs / 1000.0 + 15.0);
  EXPECT_LT(r.seconds, kChildStallS / 2.0);
  const int late = np - 1;
  for (int rank = 0; rank < np; ++rank) {
    std::regex line("\\[shardlm watchdog\\] rank " + std::to_string(rank) +
                    "[^\\n]*collective #2 all_reduce\\(sum, Float, 64 elements\\)[^\\n]*"
                    "ranks not arrived: " +
                    std::to_string(late));
    EXPECT_TRUE(std::regex_search(r.output, line)) << "rank " << rank << " printed no report";
  }
}

TEST(WatchdogAbort, StalledRankEndsTheJobOnTwoRanks) {
  check_job_abort(2);
}
TEST(WatchdogAbort, StalledRankEndsTheJobOnFourRanks) {
  check_job_abort(4);
}

// Run only by WatchdogAbort, under mpiexec.
TEST(WatchdogChild, DISABLED_Stall) {
  if (!std::getenv("SHARDLM_WATCHDOG_CHILD")) GTEST_SKIP() << "child of WatchdogAbort";
  ProcessGroupOptions o;
  o.timeout = std::chrono::milliseconds(kChildTimeoutMs);
  o.name = "child";
  MpiGroup g(MPI_COMM_WORLD, o);
  g.barrier();
  if (g.rank() == g.size() - 1) std::this_thread::sleep_for(std::chrono::seconds(kChildStallS));
  auto t = torch::ones({64});
  g.all_reduce(t);
  ADD_FAILURE() << "the watchdog should have ended the job";
}

}  // namespace
}  // namespace shardlm::parallel
