// Hardware profiles for the planner: what a device computes and holds, and how
// fast the links between ranks move bytes. Torch-free and MPI-free: every
// number is data (presets with their sources below, or values a user measured).
//
// Presets (nominal figures from the vendors' data sheets; the planner applies
// the efficiencies stated in each profile, which are assumptions, not facts):
//   devices   h100 (H100 SXM5 80 GB), h200 (H200 SXM 141 GB), a100 (A100 SXM 80 GB),
//             cpu (built from this host: cores x clock x fp32 FLOP/cycle)
//   links     nvlink4, nvlink3, pcie5, pcie4, shm (intra-node, per GPU and direction)
//             ib-ndr8, ib-hdr8, ib-ndr, eth-400g, eth-100g, eth-25g (inter-node, per
//             node and direction: NCCL spreads its rings over every NIC of a node)
//   networks  "INTRA,INTER" or one of dgx-h100 (nvlink4,ib-ndr8), dgx-a100
//             (nvlink3,ib-hdr8), pcie-ib (pcie5,ib-ndr), pcie-eth (pcie4,eth-100g),
//             cpu (shm,eth-100g)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace shardlm::plan {

struct DeviceProfile {
  std::string name;
  bool gpu = true;
  double peak_flops_bf16 = 0;    // dense tensor-core FLOP/s (bf16/fp16 compute)
  double peak_flops_fp32 = 0;    // FLOP/s for fp32 matmuls (no TF32: LibTorch's default)
  double efficiency = 0.4;       // assumed fraction of peak that training reaches (MFU)
  double memory_bytes = 0;       // device memory (HBM); CPU: the host's memory
  double memory_bw = 0;          // bytes/s of device memory (the optimizer step is bound by it)
  double host_link_bw = 0;       // bytes/s host <-> device per GPU (PCIe), for offload
  double host_memory_bytes = 0;  // host memory per node (offload's master and states)
  double host_memory_bw = 0;     // bytes/s of host memory per node (CPU Adam)
  // Bytes the runtime holds outside the allocator (CUDA context, kernels).
  double runtime_reserve = 0;
  // Fraction of the allocator's bytes lost to fragmentation (caching allocator).
  double fragmentation = 0;
  std::string source;  // where the figures come from
};

// One kind of link: the bandwidth a large collective reaches (nominal x
// efficiency) and the latency of one step (one hop of a ring or tree).
struct LinkProfile {
  std::string name;
  double bandwidth = 0;     // nominal bytes/s per direction
  double efficiency = 0.8;  // assumed fraction of nominal reached by large collectives
  double latency = 0;       // seconds per step
  std::string source;
  double effective_bw() const { return bandwidth * efficiency; }
};

struct NetworkProfile {
  std::string name;
  LinkProfile intra;  // between GPUs of one node (per GPU)
  LinkProfile inter;  // between nodes (per node)
};

// The named preset; throws core::ConfigError listing the names otherwise.
DeviceProfile device_profile(const std::string& name);
// A CPU of `cores` cores at `ghz`, `memory_bytes` of memory: the whole node,
// whose ranks share cores, memory and bandwidth (make_plan divides them). fp32 FLOP per
// cycle and core: 2 FMA units x 8 lanes x 2 = 32 with AVX2, 64 with AVX-512.
// Efficiency 0.5: LibTorch's CPU training step of the benchmark model takes
// 411 ms of one core's time on this project's AVX-512 development machine
// (bench/RESULTS.md), 2.74e10 FLOP: 67 GFLOP/s = 0.5 x 2.1 GHz x 64.
DeviceProfile cpu_profile(int cores, double ghz, double memory_bytes, bool avx512 = false);
std::vector<std::string> device_profile_names();

LinkProfile link_profile(const std::string& name);
std::vector<std::string> link_profile_names();
// "dgx-h100" or "INTRA,INTER" (e.g. "nvlink4,ib-ndr8"); throws core::ConfigError.
NetworkProfile network_profile(const std::string& spec);
std::vector<std::string> network_profile_names();
// The network a device usually comes with (h100/h200: dgx-h100, a100: dgx-a100, cpu: cpu).
std::string default_network(const DeviceProfile& device);

// "80GB", "80 GiB", "512MB", "1.5TB", "1e9" (bytes). Decimal units (kB, MB, GB,
// TB) are powers of 1000, binary ones (KiB, MiB, GiB, TiB) of 1024. Throws
// core::ConfigError naming `what` and the text.
double parse_bytes(const std::string& text, const std::string& what = "size");
// 1536 -> "1.50 KiB"; binary units, three significant digits.
std::string format_bytes(double bytes);

}  // namespace shardlm::plan
