// Google Benchmark under mpiexec: every rank runs the same benchmarks with
// fixed iteration counts (so their collectives match); only rank 0 reports.
#pragma once

#include <benchmark/benchmark.h>
#include <mpi.h>

namespace shardlm::bench {

class NullReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

// After benchmark::Initialize: runs the registered benchmarks on every rank.
inline void run_on_all_ranks() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    NullReporter quiet;
    benchmark::RunSpecifiedBenchmarks(&quiet);
  }
}

}  // namespace shardlm::bench
