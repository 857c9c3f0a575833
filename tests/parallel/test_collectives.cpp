// MpiGroup collectives on 1, 2 and 4 ranks: every dtype and reduction,
// uneven piece sizes, async handles, argument checks and byte accounting; the
// host staging path that CUDA tensors take, run here on CPU tensors.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "core/error.h"
#include "parallel/mpi_group.h"
#include "parallel/nccl_group.h"

namespace shardlm::parallel {
namespace {

// Small integers: exact in fp16 and bf16, so every dtype has one exact answer.
// Rank r holds v(r, i) = (r + 1) * k - 3 with k = i % 5 + 1.
torch::Tensor rank_values(int r, int64_t n, torch::ScalarType dt) {
  auto k = torch::arange(n, torch::kLong).remainder(5).add(1);
  return k.mul(r + 1).sub(3).to(dt);
}

torch::Tensor expected(ReduceOp op, int p, int64_t n, torch::ScalarType dt) {
  auto k = torch::arange(n, torch::kLong).remainder(5).add(1).to(torch::kDouble);
  torch::Tensor e;
  switch (op) {
    case ReduceOp::kSum:
      e = k * (p * (p + 1) / 2.0) - 3.0 * p;
      break;
    case ReduceOp::kAvg:
      e = (k * (p * (p + 1) / 2.0) - 3.0 * p) / p;
      break;
    case ReduceOp::kMax:
      e = k * p - 3.0;
      break;
    case ReduceOp::kMin:
      e = k - 3.0;
      break;
  }
  return e.to(dt);
}

void expect_equal(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.scalar_type(), want.scalar_type()) << what;
  ASSERT_EQ(got.numel(), want.numel()) << what;
  double tol =
      (got.scalar_type() == torch::kHalf || got.scalar_type() == torch::kBFloat16) ? 1e-2 : 1e-9;
  if (got.numel() == 0) return;
  auto diff = (got.to(torch::kDouble) - want.to(torch::kDouble)).abs().max().item<double>();
  EXPECT_LE(diff, tol) << what;
}

ProcessGroupOptions quick_options() {
  ProcessGroupOptions o;
  o.timeout = std::chrono::seconds(60);
  return o;
}

const std::vector<torch::ScalarType> kAllTypes = {torch::kFloat,    torch::kDouble, torch::kHalf,
                                                  torch::kBFloat16, torch::kInt,    torch::kLong};
const std::vector<torch::ScalarType> kFloatTypes = {torch::kFloat, torch::kHalf, torch::kBFloat16};

TEST(Collectives, AllReduceEveryDtypeAndOp) {
  MpiGroup g(MPI_COMM_WORLD, quick_options());
  for (auto dt : kAllTypes) {
    for (auto op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
      if (op == ReduceOp::kAvg && !c10::isFloatingType(dt)) continue;
      for (int64_t n : {0, 1, 7, 1000, 4099}) {
        auto t = rank_values(g.rank(), n, dt);
        g.all_reduce(t, op);
        expect_equal(t, expected(op, g.size(), n, dt),
                     fmt::format("{} {} n={}", c10::toString(dt), reduce_op_name(op), n));
      }
    }
  }
}

TEST(Collectives, HalfSumOfNonIntegersIsCloseToFp32) {
  MpiGroup g(MPI_COMM_WORLD, quick_options());
  torch::manual_seed(42);  // same stream on every rank
  auto all = torch::randn({g.size(), 5000});
  for (auto dt : {torch::kHalf, torch::kBFloat16}) {
    auto t = all[g.rank()].to(dt).contiguous();
    g.all_reduce(t, ReduceOp::kSum);
    auto want = all.to(dt).to(torch::kFloat).sum(0);
    // Each pairwise step rounds once: at most size-1 roundings of a value <= |sum|.
    double eps = dt == torch::kHalf ? 1.0 / 1024 : 1.0 / 128;
    auto err = (t.to(torch::kFloat) - want).abs();
    auto bound = want.abs().add(all.abs().sum(0)).mul(eps * g.size()).add(1e-6);
    EXPECT_TRUE(err.le(bound).all().item<bool>()) << c10::toString(dt);
  }
}

TEST(Collectives, ReduceScatterEvenAndUneven) {
  MpiGroup g(MPI_COMM_WORLD, quick_options());
  const int p = g.size();
  for (auto dt : kFloatTypes) {
    for (int64_t n : {int64_t(p) * 3, int64_t(p) * 3 + 1, int64_t(p) * 5 + p - 1, int64_t(1)}) {
      auto off = split_offsets(n, p);
      auto in = rank_values(g.rank(), n, dt);
      auto out = torch::empty({off[g.rank() + 1] - off[g.rank()]}, dt);
      g.reduce_scatter(out, in, ReduceOp::kSum);
      auto want = expected(ReduceOp::kSum, p, n, dt).slice(0, off[g.rank()], off[g.rank() + 1]);
      expect_equal(out, want, fmt::format("{} n={}", c10::toString(dt), n));
      g.reduce_scatter(out, in, ReduceOp::kAvg);
      want = expected(ReduceOp::kAvg, p, n, dt).slice(0, off[g.rank()], off[g.rank() + 1]);
      expect_equal(out, want, fmt::format("avg {} n={}", c10::toString(dt), n));
    }
  }
}

TEST(Collectives, AllGatherEvenAndUneven) {
  MpiGroup g(MPI_COMM_WORLD, quick_options());
  const int p = g.size();
  for (auto dt : kAllTypes) {
    for (int64_t n : {int64_t(p) * 4, int64_t(p) * 4 + 3, int64_t(2)}) {
      auto off = split_offsets(n, p);
      // Piece of rank r: the global arange slice, so the gathered whole is arange(n).
      auto whole = torch::arange(n, torch::kLong).to(dt);
      auto in = whole.slice(0, off[g.rank()], off[g.rank() + 1]).clone();
      auto out = torch::full({n}, -1, dt);
      g.all_gather(out, in);
      expect_equal(out, whole, fmt::format("{} n={}", c10::toString(dt), n));
    }
  }
}

TEST(Collectives, BroadcastFromEveryRoot) {
  MpiGroup g(MPI_COMM_WORLD, quick_options());
  for (int root = 0; root < g.size(); ++root) {
    for (auto dt : kAllTypes) {
      auto t = rank_values(g.rank(), 33, dt);
      g.broadcast(t, root);
      expect_equal(t, rank_values(root, 33, dt), fmt::format("root {}", root));
    }
  }
}

TEST(Collectives, AsyncHandlesCompleteInAnyWaitOrder) {
  MpiGroup g(MPI_COMM_WORLD, quick_options());
  std::vector<torch::Tensor> ts;
  std::vector<WorkPtr> works;
  for (int i = 0; i < 8; ++i) {
    ts.push_back(rank_values(g.rank(), 10000 + i, torch::kFloat));
    works.push_back(g.all_reduce_async(ts.back(), ReduceOp::kSum));
  }
  // The caller computes while the communication thread works.
  auto busy = torch::randn({256, 256}).matmul(torch::randn({256, 256})).sum();
  (void)busy;
  for (int i = 7; i >= 0; --i) works[i]->wait();
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(works[i]->completed());
    expect_equal(ts[i], expected(ReduceOp::kSum, g.size(), 10000 + i, torch::kFloat),
                 fmt::format("async {}", i));
  }
  EXPECT_EQ(g.issued(), 8);
  auto w = g.barrier_async();
  w->wait();
  EXPECT_TRUE(w->completed());
}

TEST(Collectives, BadArgumentsThrowMpiError) {
  MpiGroup g(MPI_COMM_WORLD, quick_options());
  auto t = torch::zeros({4, 4});
  EXPECT_THROW(g.all_reduce(t.t()), core::MpiError);                            // not contiguous
  EXPECT_THROW(g.all_reduce(torch::zeros({3}, torch::kBool)), core::MpiError);  // dtype
  EXPECT_THROW(g.all_reduce(torch::zeros({3}, torch::kInt), ReduceOp::kAvg), core::MpiError);
  auto in = torch::zeros({g.size() * 4});
  EXPECT_THROW(g.reduce_scatter(torch::zeros({5}), in), core::MpiError);            // wrong piece
  EXPECT_THROW(g.all_gather(in, torch::zeros({4}, torch::kHalf)), core::MpiError);  // dtype
  EXPECT_THROW(g.broadcast(t, g.size()), core::MpiError);  // root outside the group
  // The group still works after rejected calls (nothing was issued).
  EXPECT_EQ(g.issued(), 0);
  g.barrier();
}

TEST(Collectives, AccountingFollowsTheRingFormulas) {
  MpiGroup g(MPI_COMM_WORLD, quick_options());
  const uint64_t p = static_cast<uint64_t>(g.size());
  const int64_t n = 4096 * static_cast<int64_t>(p);
  auto t = torch::ones({n});
  g.all_reduce(t);
  g.all_reduce(t);
  auto piece = torch::empty({n / static_cast<int64_t>(p)});
  g.reduce_scatter(piece, t);
  g.stats().end_step();
  g.all_gather(t, piece);
  g.broadcast(t, 0);
  g.barrier();

  const uint64_t bytes = static_cast<uint64_t>(n) * 4;
  auto ar = g.stats().total(Collective::kAllReduce);
  EXPECT_EQ(ar.calls, 2u);
  EXPECT_EQ(ar.payload_bytes, 2 * bytes);
  EXPECT_EQ(ar.wire_bytes, 2 * (2 * bytes * (p - 1) / p));
  EXPECT_EQ(g.stats().total(Collective::kReduceScatter).wire_bytes, bytes * (p - 1) / p);
  EXPECT_EQ(g.stats().total(Collective::kAllGather).wire_bytes, bytes * (p - 1) / p);
  EXPECT_EQ(g.stats().total(Collective::kBarrier).calls, 1u);
  // The closed step holds the first three calls, the open one the last three.
  EXPECT_EQ(g.stats().last_step_all().calls, 3u);
  EXPECT_EQ(g.stats().step(Collective::kAllReduce).calls, 0u);
  EXPECT_EQ(g.stats().step(Collective::kAllGather).calls, 1u);
  EXPECT_GE(ar.seconds, 0.0);
  EXPECT_NE(g.stats().summary().find("all_reduce"), std::string::npos);
}

// The path CUDA tensors take (copy into a host buffer, MPI on it, copy back),
// forced for CPU tensors: the caller's tensors get the same results as the
// direct path, including ZeRO's in-place all-gather and many calls in flight.
TEST(Collectives, StagedThroughHostMatchesDirect) {
  MpiGroup g(MPI_COMM_WORLD, quick_options());
  g.set_stage_cpu_tensors(true);
  const int p = g.size(), r = g.rank();
  for (auto dt : kAllTypes) {
    for (auto op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
      if (op == ReduceOp::kAvg && !c10::isFloatingType(dt)) continue;
      auto t = rank_values(r, 1001, dt);
      g.all_reduce(t, op);
      expect_equal(t, expected(op, p, 1001, dt),
                   fmt::format("staged all_reduce {} {}", c10::toString(dt), reduce_op_name(op)));
    }
    for (int root = 0; root < p; ++root) {
      auto t = rank_values(r, 33, dt);
      g.broadcast(t, root);
      expect_equal(t, rank_values(root, 33, dt), fmt::format("staged broadcast root {}", root));
    }
  }
  for (auto dt : kFloatTypes) {
    for (int64_t n : {int64_t(p) * 3, int64_t(p) * 5 + p - 1}) {
      auto off = split_offsets(n, p);
      auto in = rank_values(r, n, dt);
      auto out = torch::full({off[r + 1] - off[r]}, -7, dt);
      g.reduce_scatter(out, in, ReduceOp::kAvg);
      expect_equal(out, expected(ReduceOp::kAvg, p, n, dt).slice(0, off[r], off[r + 1]),
                   fmt::format("staged reduce_scatter {} n={}", c10::toString(dt), n));
      expect_equal(in, rank_values(r, n, dt), "reduce_scatter leaves its input alone");
    }
  }
  for (int64_t n : {int64_t(p) * 4, int64_t(p) * 4 + 3}) {
    auto off = split_offsets(n, p);
    auto whole = torch::arange(n, torch::kLong).to(torch::kFloat);
    auto out = torch::full({n}, -1.0f);
    g.all_gather(out, whole.slice(0, off[r], off[r + 1]).clone());
    expect_equal(out, whole, fmt::format("staged all_gather n={}", n));
    // In place: the input is this rank's piece of the output itself.
    auto inplace = torch::full({n}, -1.0f);
    inplace.slice(0, off[r], off[r + 1]).copy_(whole.slice(0, off[r], off[r + 1]));
    g.all_gather(inplace, inplace.slice(0, off[r], off[r + 1]));
    expect_equal(inplace, whole, fmt::format("staged in-place all_gather n={}", n));
  }
  std::vector<torch::Tensor> ts;
  std::vector<WorkPtr> works;
  for (int i = 0; i < 6; ++i) {
    ts.push_back(rank_values(r, 5000 + i, torch::kFloat));
    works.push_back(g.all_reduce_async(ts.back(), ReduceOp::kSum));
  }
  for (int i = 5; i >= 0; --i) works[i]->wait();
  for (int i = 0; i < 6; ++i)
    expect_equal(ts[i], expected(ReduceOp::kSum, p, 5000 + i, torch::kFloat),
                 fmt::format("staged async {}", i));
}

TEST(Collectives, TensorsOnOtherDevicesAreRefused) {
  MpiGroup g(MPI_COMM_WORLD, quick_options());
  auto meta = torch::empty({8}, torch::TensorOptions().device(torch::kMeta));
  try {
    g.all_reduce(meta);
    FAIL() << "expected core::MpiError";
  } catch (const core::MpiError& e) {
    EXPECT_NE(std::string(e.what()).find("meta"), std::string::npos) << e.what();
  }
  EXPECT_EQ(g.issued(), 0);
}

#ifndef SHARDLM_WITH_CUDA
TEST(Collectives, NcclWithoutCudaIsNotCompiled) {
  EXPECT_FALSE(NcclGroup::compiled());
  try {
    NcclGroup::create();
    FAIL() << "expected core::NotCompiled";
  } catch (const core::NotCompiled& e) {
    EXPECT_NE(std::string(e.what()).find("SHARDLM_WITH_CUDA"), std::string::npos) << e.what();
  }
}
#endif

TEST(Collectives, SplitSizes) {
  EXPECT_EQ(split_sizes(10, 4), (std::vector<int64_t>{3, 3, 2, 2}));
  EXPECT_EQ(split_sizes(8, 4), (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(split_sizes(1, 3), (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(split_offsets(10, 4), (std::vector<int64_t>{0, 3, 6, 8, 10}));
}

}  // namespace
}  // namespace shardlm::parallel
