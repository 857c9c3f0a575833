// `shardlm info`: what this build and this machine provide, per rank.
#include <hdf5.h>
#include <mpi.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "core/mpi_check.h"
#include "launcher/app.h"

namespace shardlm::launcher {

namespace {

// The BLAS library really mapped into this process, found after a matrix
// product has forced LibTorch to load it (Debian selects it by alternatives).
std::string blas_in_use() {
  auto a = at::ones({64, 64});
  auto b = at::mm(a, a);
  (void)b;
  std::ifstream maps("/proc/self/maps");
  std::string line, found = "unknown";
  while (std::getline(maps, line)) {
    auto pos = line.find('/');
    if (pos == std::string::npos) continue;
    std::string path = line.substr(pos);
    if (path.find("openblas") != std::string::npos) return "OpenBLAS (" + path + ")";
    if (path.find("libmkl") != std::string::npos) return "MKL (" + path + ")";
    if (path.find("blis") != std::string::npos) return "BLIS (" + path + ")";
    if (path.find("atlas") != std::string::npos) return "ATLAS (" + path + ")";
    if (path.find("libblas.so") != std::string::npos) found = "reference BLAS (" + path + ")";
  }
  return found;
}

nlohmann::json collect(const core::Env& env) {
  nlohmann::json j;
  j["shardlm"] = SHARDLM_VERSION;
  j["libtorch"] = TORCH_VERSION;
#ifdef SHARDLM_WITH_CUDA
  j["cuda_compiled"] = true;
  j["nccl_compiled"] = true;
#else
  j["cuda_compiled"] = false;
  j["nccl_compiled"] = false;
#endif
  j["cuda_usable"] = torch::cuda::is_available();
  j["cuda_devices"] = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
  char mpiv[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(mpiv, &len);
  std::string mpi(mpiv, static_cast<size_t>(len));
  if (auto nl = mpi.find_first_of(",\n"); nl != std::string::npos) mpi.resize(nl);
  j["mpi"] = mpi;
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  j["hdf5"] = fmt::format("{}.{}.{}", maj, min, rel);
  j["blas"] = blas_in_use();
  j["threads"] = at::get_num_threads();
  j["rank"] = env.rank;
  j["world_size"] = env.world_size;
  j["local_rank"] = env.local_rank;
  j["local_size"] = env.local_size;
  j["device"] = env.device;
  j["host"] = env.hostname;
  j["env_source"] = env.source;
  return j;
}

}  // namespace

void register_info(CLI::App& app, Context& ctx, Command& run) {
  auto* cmd = app.add_subcommand("info", "Print versions, devices, BLAS, MPI rank and world");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "One JSON object per rank");
  cmd->callback([&ctx, &run, json] {
    run = [&ctx, json] {
      const core::Env& env = ctx.env_with_mpi();
      nlohmann::json j = collect(env);
      std::string text;
      if (*json) {
        text = j.dump() + "\n";
      } else {
        text = fmt::format("[rank {}/{}] host {} device {} (local rank {}/{}, from {})\n", env.rank,
                           env.world_size, env.hostname, env.device, env.local_rank, env.local_size,
                           env.source);
        for (auto& [k, v] : j.items()) {
          if (k == "rank" || k == "world_size" || k == "local_rank" || k == "local_size" ||
              k == "host" || k == "device" || k == "env_source")
            continue;
          text += fmt::format("[rank {}/{}]   {:<14} {}\n", env.rank, env.world_size, k,
                              v.is_string() ? v.get<std::string>() : v.dump());
        }
      }
      // Print rank by rank so that lines of different ranks do not interleave.
      for (int r = 0; r < env.world_size; ++r) {
        if (r == env.rank) {
          std::fwrite(text.data(), 1, text.size(), stdout);
          std::fflush(stdout);
        }
        SHARDLM_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
      }
      return 0;
    };
  });
}

}  // namespace shardlm::launcher
