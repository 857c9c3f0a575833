// The planner: what a training configuration costs per rank before it is
// launched — memory (device and host), communication per step, compute and
// step time — and whether it fits. Pure functions of a PlanInput: no I/O, no
// MPI, no LibTorch. `shardlm plan` (launcher/cmd_plan.cpp) fills the input
// from a run configuration and prints the result; docs/planning.md explains
// every term and how the predictions were checked against real runs.
//
//   plan::PlanInput in;
//   in.model = model_cfg;  in.micro_batch = 8;  in.seq_len = 1024;
//   in.sharding.zero_stage = 3;  in.world = 8;  in.gpus_per_node = 8;
//   in.device = plan::device_profile("h100");  in.net = plan::network_profile("dgx-h100");
//   plan::Plan p = plan::make_plan(in);
//   if (!p.fits) std::cout << p.verdict;
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "plan/comm.h"
#include "plan/layout.h"
#include "plan/memory.h"
#include "plan/profiles.h"

namespace shardlm::plan {

struct PlanInput {
  model::ModelConfig model;
  int64_t micro_batch = 8;         // rows per rank and micro-batch (data.batch_size)
  int64_t seq_len = 128;           // data.seq_len
  std::string precision = "fp32";  // fp32 | bf16 | fp16
  bool activation_checkpointing = false;
  bool fused_attention = false;       // SDPA (LibTorch >= 2): no (T, T) scores kept
  bool autocast_weight_cache = true;  // see ActivationSpec::weight_cache
  ShardingSpec sharding;              // stage, offload, streaming, optimizer, accumulation
  int world = 1;
  int gpus_per_node = 1;
  int rank = -1;  // the rank to plan for; -1: the one that holds the most
  DeviceProfile device;
  NetworkProfile net;

  // Throws core::ConfigError naming the field that is out of range.
  void validate() const;
  int64_t global_batch() const { return micro_batch * sharding.accumulation * world; }
};

struct MemoryPlan {
  ModelStates states;                 // per rank
  ActivationBytes activations;        // per micro-batch, as configured
  ActivationBytes activations_other;  // with checkpointing flipped, for comparison
  int64_t comm_buffers = 0;           // communication library buffers on the device
  double device_dynamic = 0;          // states (each at its peak) + activation peak + buffers
  double device_headroom = 0;         // allocator fragmentation on top of it
  double device_reserve = 0;          // runtime outside the allocator (CUDA context)
  double device_total = 0;
  double device_capacity = 0;
  double host_per_rank = 0;  // offloaded states (CPU device: everything)
  double host_per_node = 0;
  double host_capacity = 0;  // per node
  bool fits_device = true, fits_host = true;
};

struct ComputePlan {
  double flops_per_token = 0;       // model FLOPs (forward + backward), as MFU counts them
  double flops_per_step = 0;        // per rank, with recomputation
  double model_flops_per_step = 0;  // per rank, without recomputation
  double peak_flops = 0, efficiency = 0;
  double compute_s = 0, forward_s = 0, backward_s = 0;  // per step and rank
  double optimizer_s = 0;  // optimizer step (device memory or host memory bound)
  double transfer_s = 0;   // host <-> device copies of offload not hidden behind compute
};

struct Plan {
  PlanInput input;
  int64_t num_parameters = 0;
  int rank = 0;  // the rank planned for
  MemoryPlan memory;
  CommPlan comm;
  ComputePlan compute;
  double exposed_comm_s = 0;  // communication not hidden behind compute
  double step_s = 0;
  double tokens_per_step = 0;  // all ranks
  double tokens_per_s = 0;
  double mfu = 0;
  bool fits = true;
  std::string bottleneck;  // memory | compute | communication | optimizer | host transfers
  std::string verdict;     // one sentence
  std::vector<std::string> notes;
};

Plan make_plan(const PlanInput& input);

nlohmann::json to_json(const Plan& plan);
// The human table `shardlm plan` prints.
std::string format_table(const Plan& plan);

}  // namespace shardlm::plan
