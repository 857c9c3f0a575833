// Checkpoint write and read throughput: a synthetic Snapshot of --gb GB
// (fp32 parameters and both Adam moments, in 8 units like a model's blocks)
// saved synchronously by ckpt::Checkpointer (HDF5 rank files, fsync, xxh3
// checksums, manifest, atomic rename), then read back whole through
// ckpt::CheckpointReader::read_range. bench/ckpt/run.sh runs it beside `dd`
// writing and reading the same number of bytes on the same disk. Prints one
// JSON line.
//
//   mpiexec -n 1 bench_ckpt_io --dir /tmp/x --gb 1
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ckpt/checkpoint.h"
#include "core/log.h"

using namespace shardlm;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  CLI::App app{"checkpoint I/O benchmark"};
  std::string dir;
  double gb = 1.0;
  int units = 8;
  app.add_option("--dir", dir, "Run directory to write into (removed first)")->required();
  app.add_option("--gb", gb, "Checkpoint size in GB (10^9 bytes), all ranks together");
  app.add_option("--units", units, "Units (blocks) the parameters are split into");
  bool verbose = false;
  app.add_flag("--verbose", verbose, "Log the time of each phase of the save");
  CLI11_PARSE(app, argc, argv);
  if (verbose) core::log::set_level(core::log::parse_level("debug"));
  MPI_Init(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (rank == 0) fs::remove_all(dir);
  MPI_Barrier(MPI_COMM_WORLD);

  // 12 bytes per element (params, exp_avg, exp_avg_sq), cut evenly over ranks.
  const int64_t per_unit = static_cast<int64_t>(gb * 1e9 / 12.0 / units);
  const int64_t piece = per_unit / world;
  ckpt::Snapshot snap;
  snap.step = 1;
  torch::manual_seed(rank);
  for (int u = 0; u < units; ++u) {
    ckpt::UnitPiece p;
    p.name = "unit" + std::to_string(u);
    p.numel = piece * world;
    p.begin = piece * rank;
    p.end = p.begin + piece;
    p.params = torch::randn({piece});
    p.exp_avg = torch::randn({piece});
    p.exp_avg_sq = torch::rand({piece});
    p.layout = nlohmann::json::array({{{"name", "w"}, {"shape", {piece * world}}, {"offset", 0}}});
    snap.units.push_back(std::move(p));
  }
  snap.state = {{"step", 1}};
  bool same = true;
  {  // the Checkpointer and the reader hold MPI communicators: gone before MPI_Finalize
    ckpt::CheckpointConfig cfg;
    cfg.keep_last = 1;
    cfg.keep_best = 0;
    cfg.async = false;
    ckpt::Checkpointer saver(cfg, dir, core::MpiComm::duplicate(MPI_COMM_WORLD));

    MPI_Barrier(MPI_COMM_WORLD);
    auto t0 = std::chrono::steady_clock::now();
    saver.save(snap, false);
    MPI_Barrier(MPI_COMM_WORLD);
    double save_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // Read back this rank's ranges of every unit and every state (a resume on
    // the same world size); compare one unit to what was saved.
    auto t1 = std::chrono::steady_clock::now();
    ckpt::CheckpointReader reader(
        (fs::path(dir) / "checkpoints" / ckpt::step_dir_name(1)).string());
    for (int u = 0; u < units; ++u)
      for (const char* what : {"params", "exp_avg", "exp_avg_sq"}) {
        auto t =
            reader.read_range("unit" + std::to_string(u), what, piece * rank, piece * (rank + 1));
        if (u == 0 && std::string(what) == "params") same = torch::equal(t, snap.units[0].params);
      }
    MPI_Barrier(MPI_COMM_WORLD);
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();

    int64_t bytes = 0;
    for (const auto& e : fs::directory_iterator(reader.dir()))
      bytes += static_cast<int64_t>(fs::file_size(e));
    if (rank == 0) {
      nlohmann::json j = {{"ranks", world},
                          {"bytes", bytes},
                          {"save_s", save_s},
                          {"load_s", load_s},
                          {"save_gb_s", bytes / save_s / 1e9},
                          {"load_gb_s", bytes / load_s / 1e9},
                          {"read_back_equal", same}};
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
  }
  MPI_Finalize();
  return same ? 0 : 1;
}
