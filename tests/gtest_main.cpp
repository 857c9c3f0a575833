// GoogleTest main shared by every test executable: starts MPI (a singleton world
// when not under mpiexec), so one binary serves single- and multi-rank cases.
// Under mpiexec only rank 0 prints GoogleTest's progress; a failure on any rank
// still fails the run (the exit codes are combined with MPI_Allreduce).
// Each run works in a private folder, testing::TempDir(): removed when every
// test passed, kept (and named) when one failed.
#include <gtest/gtest.h>
#include <mpi.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "core/env.h"
#include "core/log.h"

namespace {
// On ranks other than 0: print failures only, prefixed with the rank.
class FailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }

 private:
  int rank_;
};
// A fresh folder under $TEST_TMPDIR, $TMPDIR or /tmp, made by rank 0 and
// shared by every rank (multi-rank tests agree on paths under it), exported as
// TEST_TMPDIR so that testing::TempDir() and child processes use it. The
// trainer and checkpoint tests write ~1.5 GB there per suite run, which used
// to stay in /tmp. TMPDIR itself is left alone (Open MPI keeps its session
// folders and sockets under it). Empty when it could not be made: the tests
// then use the system's folder as before.
std::string make_run_tmp(int rank) {
  std::vector<char> path(4096, '\0');
  if (rank == 0) {
    std::string base = "/tmp";
    for (const char* var : {"TEST_TMPDIR", "TMPDIR"}) {
      const char* v = std::getenv(var);
      if (v != nullptr && v[0] != '\0') {
        base = v;
        break;
      }
    }
    std::string tmpl = base + "/shardlm-test-XXXXXX";
    if (tmpl.size() < path.size() && mkdtemp(tmpl.data()) != nullptr)
      std::copy(tmpl.begin(), tmpl.end(), path.begin());
  }
  MPI_Bcast(path.data(), static_cast<int>(path.size()), MPI_CHAR, 0, MPI_COMM_WORLD);
  std::string dir(path.data());
  if (!dir.empty()) setenv("TEST_TMPDIR", dir.c_str(), 1);
  return dir;
}
}  // namespace

int main(int argc, char** argv) {
  shardlm::core::prefer_passive_omp_wait(argv);  // as the shardlm binary does
  testing::InitGoogleTest(&argc, argv);
  shardlm::core::MpiSession mpi(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  shardlm::core::log::set_rank(rank, world);
  const std::string run_tmp = make_run_tmp(rank);
  if (rank != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));
  }
  int rc = RUN_ALL_TESTS();
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && worst != rc) std::fprintf(stderr, "a test failed on another rank\n");
  if (rank == 0 && !run_tmp.empty()) {
    // SHARDLM_KEEP_TEST_TMP=1 keeps the files of a run that passed too.
    const char* keep = std::getenv("SHARDLM_KEEP_TEST_TMP");
    if (worst == 0 && (keep == nullptr || std::string(keep) != "1")) {
      std::error_code ec;
      std::filesystem::remove_all(run_tmp, ec);
    } else {
      std::fprintf(stderr, "test files kept in %s\n", run_tmp.c_str());
    }
  }
  return worst;
}
