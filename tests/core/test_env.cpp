// Env detection under mpiexec: distinct ranks, a consistent world, local ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <set>

#include "core/env.h"

using shardlm::core::Env;

TEST(Env, RanksAreDistinctAndWorldMatchesMpi) {
  Env e = Env::detect();
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  EXPECT_EQ(e.world_size, world);
  EXPECT_EQ(e.source, "mpi");
  std::vector<int> ranks(world);
  MPI_Allgather(&e.rank, 1, MPI_INT, ranks.data(), 1, MPI_INT, MPI_COMM_WORLD);
  std::set<int> distinct(ranks.begin(), ranks.end());
  EXPECT_EQ(static_cast<int>(distinct.size()), world);
  EXPECT_EQ(*distinct.begin(), 0);
  EXPECT_EQ(*distinct.rbegin(), world - 1);
  // All ranks run on this one machine here.
  EXPECT_EQ(e.local_size, world);
  EXPECT_EQ(e.local_rank, e.rank);
  EXPECT_GE(e.cpu_threads, 1);
#ifndef SHARDLM_WITH_CUDA
  EXPECT_EQ(e.device, "cpu");  // no CUDA in this build's LibTorch
#endif
}

TEST(Env, ThreadsFollowOmpNumThreads) {
  setenv("OMP_NUM_THREADS", "3", 1);
  EXPECT_EQ(Env::detect().cpu_threads, 3);
  unsetenv("OMP_NUM_THREADS");
  Env e = Env::detect();
  EXPECT_GE(e.cpu_threads, 1);
  setenv("OMP_NUM_THREADS", "1", 1);
}
