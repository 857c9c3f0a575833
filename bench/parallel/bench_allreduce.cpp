// All-reduce bandwidth over MPI, run under mpiexec (2 ranks for RESULTS.md):
//   MpiGroup::all_reduce (communication thread + watchdog)  vs  raw MPI_Allreduce
// on the same fp32 buffers, 1 MB to 256 MB. Every rank runs the same fixed
// iteration counts (so the collectives match); only rank 0 reports.
// "busbw" = bytes * 2(P-1)/P / time, the per-rank wire bandwidth (nccl-tests' definition).
//   mpiexec -n 2 build/bench/parallel/bench_allreduce
#include <benchmark/benchmark.h>
#include <mpi.h>

#include <torch/torch.h>

#include "bench/parallel/mpi_bench.h"
#include "core/env.h"
#include "parallel/mpi_group.h"

namespace {

shardlm::parallel::MpiGroup* g_group = nullptr;

void report(benchmark::State& state, int64_t bytes) {
  const double p = g_group->size();
  state.counters["MB"] = bytes / 1e6;
  state.counters["busbw_GB/s"] =
      benchmark::Counter(bytes * 2 * (p - 1) / p, benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
  state.counters["ranks"] = p;
}

void BM_MpiGroupAllReduce(benchmark::State& state) {
  const int64_t n = state.range(0) / 4;
  auto t = torch::ones({n});
  g_group->barrier();
  for (auto _ : state) g_group->all_reduce(t);
  report(state, n * 4);
}

void BM_RawMpiAllreduce(benchmark::State& state) {
  const int64_t n = state.range(0) / 4;
  auto t = torch::ones({n});
  MPI_Barrier(MPI_COMM_WORLD);
  for (auto _ : state)
    MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(n), MPI_FLOAT, MPI_SUM,
                  MPI_COMM_WORLD);
  report(state, n * 4);
}

void sizes(benchmark::internal::Benchmark* b) {
  for (int64_t mb : {1, 16, 64, 256}) b->Arg(mb << 20);
  b->Iterations(10)->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_MpiGroupAllReduce)->Apply(sizes);
BENCHMARK(BM_RawMpiAllreduce)->Apply(sizes);

int main(int argc, char** argv) {
  shardlm::core::MpiSession mpi(&argc, &argv);
  {
    shardlm::parallel::MpiGroup group;
    g_group = &group;
    benchmark::Initialize(&argc, argv);
    benchmark::AddCustomContext("ranks", std::to_string(group.size()));
    shardlm::bench::run_on_all_ranks();
    benchmark::Shutdown();
    g_group = nullptr;
  }
  return 0;
}
