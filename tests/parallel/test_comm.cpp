// core::Comm, the one way ranks exchange strings and scalars, checked on both
// implementations with the same assertions: core::MpiComm (checked MPI) and
// parallel::MpiGroup (small tensors on the group's device through its queue).
// Run under mpiexec -n 1, 2 and 4.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <string>

#include "core/comm.h"
#include "core/error.h"
#include "parallel/groups.h"
#include "parallel/mpi_group.h"

using namespace shardlm;

namespace {

void check_comm(core::Comm& c) {
  const int r = c.rank(), n = c.size();
  // A string only rank 0 has (binary bytes included), and an empty one.
  std::string mine = r == 0 ? std::string("checkpoint\0path/step-7", 22) : std::string("junk");
  EXPECT_EQ(core::broadcast_string(c, mine), std::string("checkpoint\0path/step-7", 22));
  EXPECT_EQ(core::broadcast_string(c, r == 0 ? "" : "junk"), "");
  // A string from the last rank.
  EXPECT_EQ(core::broadcast_string(c, "from " + std::to_string(r), n - 1),
            "from " + std::to_string(n - 1));
  // Reductions of int64 (exact beyond 2^53) and doubles.
  const int64_t big = (int64_t{1} << 60) + r;
  EXPECT_EQ(core::all_reduce(c, big, core::Reduce::kMax), (int64_t{1} << 60) + n - 1);
  EXPECT_EQ(core::all_reduce(c, int64_t{r + 1}, core::Reduce::kSum), int64_t{n} * (n + 1) / 2);
  EXPECT_DOUBLE_EQ(core::all_reduce(c, 0.5 + r, core::Reduce::kMin), 0.5);
  EXPECT_EQ(core::any_rank(c, r == n - 1), true);
  EXPECT_EQ(core::any_rank(c, false), false);
  EXPECT_FALSE(core::all_ranks(c, r != 0));
  EXPECT_EQ(core::all_ranks(c, true), true);
  // Every rank's bytes (of different lengths) on rank 0, in order.
  auto all = c.gather_bytes(std::string(static_cast<size_t>(r), 'a' + r % 26), 0);
  if (r == 0) {
    ASSERT_EQ(all.size(), static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
      EXPECT_EQ(all[i], std::string(static_cast<size_t>(i), 'a' + i % 26));
  } else {
    EXPECT_TRUE(all.empty());
  }
  core::barrier(c);
}

}  // namespace

TEST(CommMpi, MpiCommExchangesStringsAndScalars) {
  core::MpiComm c(MPI_COMM_WORLD);
  check_comm(c);
  auto dup = core::MpiComm::duplicate(MPI_COMM_WORLD);  // a channel of its own
  check_comm(*dup);
}

TEST(CommMpi, ProcessGroupIsTheSameComm) {
  parallel::MpiGroup g(MPI_COMM_WORLD);
  EXPECT_EQ(g.device().str(), "cpu");
  check_comm(g);
  // The values travelled through the group's own collectives.
  if (g.size() > 1) EXPECT_GT(g.stats().total_all().calls, 0u);
}

// parallel.backend: "auto" is MPI on the CPU; "nccl" without CUDA says why.
TEST(CommMpi, BackendChoice) {
  EXPECT_EQ(parallel::resolve_backend("auto", torch::kCPU, 1), "mpi");
  EXPECT_EQ(parallel::resolve_backend("mpi", torch::kCPU, 1), "mpi");
  try {
    parallel::resolve_backend("nccl", torch::kCPU, 1);
    FAIL() << "no error";
  } catch (const core::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.device"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parallel::resolve_backend("gloo", torch::kCPU, 1), core::ConfigError);
  auto g = parallel::make_process_group("auto", torch::kCPU, MPI_COMM_WORLD, 1);
  EXPECT_EQ(g->backend(), "mpi");
}
