// `shardlm plan --config run.toml`: memory per rank, communication per step,
// step time and a verdict for a run configuration, before it is launched
// (plan/plan.h computes; this file reads the configuration and the host,
// measures the network with --measure and prints). docs/planning.md.
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/config.h"
#include "core/log.h"
#include "data/loader.h"
#include "launcher/app.h"
#include "model/config.h"
#include "model/gpt.h"
#include "monitor/hardware.h"
#include "parallel/mpi_group.h"
#include "parallel/optimizer.h"
#include "parallel/sharded_model.h"
#include "plan/plan.h"
#include "plan/search.h"
#include "runtime/train_config.h"

namespace shardlm::launcher {

namespace {

struct Options {
  std::string config;
  std::vector<std::string> overrides;
  int world = 0, gpus_per_node = 0, rank = -1;
  std::string device, device_memory, host_memory, net;
  double efficiency = 0;
  int64_t global_batch = 0;
  bool json = false, search = false, measure = false;
  int rows = 20;
};

// This host's CPU from /proc/cpuinfo: the fastest clock in GHz (2.5 if
// unknown) and whether it has AVX-512.
struct CpuInfo {
  double ghz = 2.5;
  bool avx512 = false;
};
CpuInfo cpu_info() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  double mhz = 0;
  CpuInfo c;
  while (std::getline(in, line)) {
    if (line.rfind("cpu MHz", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) mhz = std::max(mhz, std::atof(line.c_str() + colon + 1));
    }
    if (line.rfind("flags", 0) == 0 && line.find(" avx512f") != std::string::npos) c.avx512 = true;
  }
  if (mhz > 0) c.ghz = mhz / 1000;
  return c;
}

// ---- --measure: all-reduce latency and bandwidth on the current ranks ---------------

struct Measured {
  double latency = 0, bandwidth = 0;  // seconds per ring step, bytes/s
  double small_s = 0, large_s = 0;
  int64_t large_bytes = 0;
};

// Median seconds of `reps` all-reduces of `numel` fp32 over `group`.
double time_all_reduce(parallel::ProcessGroup& group, int64_t numel, int reps) {
  auto t = torch::ones({numel});
  for (int i = 0; i < 2; ++i) group.all_reduce(t);  // warm up (connections, pages)
  std::vector<double> s;
  for (int i = 0; i < reps; ++i) {
    group.barrier();
    auto t0 = std::chrono::steady_clock::now();
    group.all_reduce(t);
    s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  // The slowest rank decides: agree on each rank's median.
  std::sort(s.begin(), s.end());
  auto med = torch::tensor({s[s.size() / 2]}, torch::kDouble);
  group.all_reduce(med, parallel::ReduceOp::kMax);
  return med.item<double>();
}

// Fits the ring model t = 2(P-1) a + 2 (P-1)/P n / b to an 8-byte and a
// 16 MiB all-reduce of the project's MpiGroup (the path training uses on CPUs;
// bench/parallel/bench_allreduce measures the same call).
Measured measure_network(parallel::ProcessGroup& group) {
  const int P = group.size();
  Measured m;
  m.large_bytes = int64_t{16} << 20;
  m.small_s = time_all_reduce(group, 2, 50);
  m.large_s = time_all_reduce(group, m.large_bytes / 4, 8);
  const double steps = 2.0 * (P - 1);
  m.latency = m.small_s / steps;
  const double wire = 2.0 * (P - 1) / P * static_cast<double>(m.large_bytes);
  m.bandwidth = wire / std::max(m.large_s - steps * m.latency, 1e-9);
  return m;
}

// ---- the input from the configuration ------------------------------------------------

plan::PlanInput make_input(const Options& o, const core::Env& env) {
  auto cfg = core::RunConfig::load(o.config, o.overrides);
  plan::PlanInput in;
  in.model = cfg.get<model::ModelConfig>("model");
  const auto train = cfg.get<runtime::TrainConfig>("train");
  const auto shard = cfg.get<parallel::ShardedConfig>("parallel");
  const auto opt = cfg.get<parallel::OptimizerConfig>("optimizer");
  // Only the batch shape of [data]: the data need not exist yet.
  const auto data = data::LoaderConfig::from(cfg.section("data"));
  in.micro_batch = data.batch_size;
  in.seq_len = data.seq_len;
  in.precision = train.precision;
  in.activation_checkpointing = train.activation_checkpointing;
  in.sharding.zero_stage = static_cast<int>(shard.zero_stage);
  in.sharding.cpu_offload = shard.cpu_offload;
  in.sharding.offload_params = shard.offload_params;
  in.sharding.prefetch = shard.prefetch;
  in.sharding.accumulation = train.accumulation;
  in.sharding.optimizer = opt.name;
  in.sharding.block_size = opt.block_size;
  in.sharding.min_8bit_numel = opt.min_8bit_numel;
  in.sharding.embedding_fp32_state = opt.embedding_fp32_state;
  in.world = o.world > 0 ? o.world : env.world_size;
  in.rank = o.rank;

  std::string dev = o.device;
  if (dev.empty()) dev = train.device == "cpu" ? "cpu" : "h100";
  if (dev == "cpu") {
    auto host = monitor::read_host_memory();
    const double mem = host && host->total > 0 ? static_cast<double>(host->total) : 16e9;
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const CpuInfo cpu = cpu_info();
    in.device = plan::cpu_profile(cores, cpu.ghz, mem, cpu.avx512);
  } else {
    in.device = plan::device_profile(dev);
  }
  if (!o.device_memory.empty())
    in.device.memory_bytes = plan::parse_bytes(o.device_memory, "--device-memory");
  if (!o.host_memory.empty()) {
    in.device.host_memory_bytes = plan::parse_bytes(o.host_memory, "--host-memory");
    if (!in.device.gpu) in.device.memory_bytes = in.device.host_memory_bytes;
  }
  if (o.efficiency > 0) in.device.efficiency = o.efficiency;
  in.gpus_per_node = o.gpus_per_node > 0 ? o.gpus_per_node
                     : in.device.gpu     ? std::min(in.world, 8)
                     : o.world > 0       ? in.world
                                         : env.local_size;
  in.net = plan::network_profile(o.net.empty() ? plan::default_network(in.device) : o.net);
  // The attention this build would run: SDPA where LibTorch has it (>= 2.0); a
  // GPU plan assumes a CUDA build, which is LibTorch 2.x.
  in.fused_attention = in.device.gpu || model::fused_attention_available();
  in.autocast_weight_cache = in.device.gpu || TORCH_VERSION_MAJOR >= 2;
  if (train.auto_batch && train.global_batch > 0 && o.global_batch == 0)
    core::log::warn0(
        "train.auto_batch: the plan uses data.batch_size x train.accumulation; "
        "--search explores the split of train.global_batch");
  return in;
}

int run_plan(const Options& o, Context& ctx) {
  const core::Env& env = o.measure ? ctx.env_with_mpi() : ctx.env();
  plan::PlanInput in = make_input(o, env);
  nlohmann::json measured;
  if (o.measure) {
    SHARDLM_CHECK(env.world_size >= 2, core::ConfigError,
                  "--measure needs at least 2 ranks: run it under mpirun (e.g. mpirun -n 2 "
                  "shardlm plan --config {} --measure)",
                  o.config);
    auto group = std::make_shared<parallel::MpiGroup>(MPI_COMM_WORLD);
    Measured m = measure_network(*group);
    plan::LinkProfile link;
    link.name = "measured";
    link.bandwidth = m.bandwidth;
    link.efficiency = 1.0;
    link.latency = m.latency;
    link.source =
        fmt::format("shardlm plan --measure on {} rank(s) (MpiGroup all-reduce)", env.world_size);
    in.net.name = "measured";
    in.net.intra = link;
    in.net.inter = link;
    if (o.world == 0) in.world = env.world_size;
    measured = {{"ranks", env.world_size},
                {"latency", m.latency},
                {"bandwidth", m.bandwidth},
                {"small_all_reduce_seconds", m.small_s},
                {"large_all_reduce_seconds", m.large_s},
                {"large_all_reduce_bytes", m.large_bytes}};
  }
  if (!env.is_root()) return 0;  // every rank measured; one prints

  std::string out;
  if (o.search) {
    plan::SearchOptions so;
    so.global_batch = o.global_batch;
    plan::SearchResult r = plan::search(in, so);
    if (o.json) {
      nlohmann::json j = plan::to_json(r);
      if (!measured.is_null()) j["measured"] = measured;
      out = j.dump(2) + "\n";
    } else {
      out = plan::format_search(r, static_cast<size_t>(o.rows));
    }
  } else {
    if (o.global_batch > 0) {
      SHARDLM_CHECK(o.global_batch % (in.micro_batch * in.world) == 0, core::ConfigError,
                    "--global-batch {} is not a multiple of micro-batch {} x world {}",
                    o.global_batch, in.micro_batch, in.world);
      in.sharding.accumulation = o.global_batch / (in.micro_batch * in.world);
    }
    plan::Plan p = plan::make_plan(in);
    if (o.json) {
      nlohmann::json j = plan::to_json(p);
      if (!measured.is_null()) j["measured"] = measured;
      out = j.dump(2) + "\n";
    } else {
      out = plan::format_table(p);
      if (!measured.is_null())
        out +=
            fmt::format("measured   all-reduce on {} ranks: {:.3g} us per step, {:.3g} GB/s\n",
                        env.world_size, in.net.intra.latency * 1e6, in.net.intra.bandwidth / 1e9);
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

void register_plan(CLI::App& app, Context& ctx, Command& run) {
  auto* cmd = app.add_subcommand(
      "plan", "Memory, communication and step time of a run before launching it");
  auto o = std::make_shared<Options>();
  cmd->add_option("-c,--config", o->config, "Run configuration (TOML)")->required();
  cmd->add_option("--world", o->world, "Ranks (GPUs) to plan for (default: this launch's world)");
  cmd->add_option("--gpus-per-node", o->gpus_per_node,
                  "Ranks per node (default: min(world, 8) on GPUs, the local ranks on CPUs)");
  cmd->add_option("--device", o->device,
                  "Device profile: h100, h200, a100 or cpu (default: cpu when train.device = "
                  "\"cpu\", else h100)");
  cmd->add_option("--device-memory", o->device_memory,
                  "Memory per device, e.g. 80GB or 141GB (default: the profile's)");
  cmd->add_option("--host-memory", o->host_memory, "Host memory per node, e.g. 2TB");
  cmd->add_option("--net", o->net,
                  "Network: dgx-h100, dgx-a100, pcie-ib, pcie-eth, cpu, or INTRA,INTER links "
                  "(nvlink4, nvlink3, pcie5, pcie4, shm, ib-ndr8, ib-hdr8, ib-ndr, eth-400g, "
                  "eth-100g, eth-25g)");
  cmd->add_option("--efficiency", o->efficiency,
                  "Fraction of peak FLOP/s reached (default: the profile's, 0.4 on GPUs)");
  cmd->add_option("--global-batch", o->global_batch,
                  "Rows per optimizer step over all ranks (sets accumulation; --search keeps it)");
  cmd->add_option("--rank", o->rank, "Plan for this rank (default: the one holding the most)");
  cmd->add_option("--rows", o->rows, "--search: configurations to print (default 20)");
  cmd->add_flag("--json", o->json, "One JSON object instead of the table");
  cmd->add_flag("--search", o->search,
                "Try every ZeRO stage, offload, checkpointing and micro-batch x accumulation for "
                "the global batch; list those that fit, fastest first, and why the others fail");
  cmd->add_flag("--measure", o->measure,
                "Measure all-reduce latency and bandwidth on the current ranks (run under "
                "mpirun) and plan with them");
  cmd->allow_extras();  // --section.key=value overrides
  cmd->footer(
      "Any --section.key=value overrides the configuration file, e.g. "
      "--parallel.zero_stage=3");
  cmd->callback([&ctx, &run, cmd, o] {
    for (const auto& extra : cmd->remaining()) o->overrides.push_back(extra);
    run = [&ctx, o] { return run_plan(*o, ctx); };
  });
}

}  // namespace shardlm::launcher
