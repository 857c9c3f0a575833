// GoogleTest main shared by every test executable: starts MPI (a singleton world
// when not under mpiexec), so one binary serves single- and multi-rank cases.
// Under mpiexec only rank 0 prints GoogleTest's progress; a failure on any rank
// still fails the run (the exit codes are combined with MPI_Allreduce).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

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
}  // namespace

int main(int argc, char** argv) {
  shardlm::core::prefer_passive_omp_wait(argv);  // as the shardlm binary does
  testing::InitGoogleTest(&argc, argv);
  shardlm::core::MpiSession mpi(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  shardlm::core::log::set_rank(rank, world);
  if (rank != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));
  }
  int rc = RUN_ALL_TESTS();
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && worst != rc) std::fprintf(stderr, "a test failed on another rank\n");
  return worst;
}
