// Hardware presets and size parsing (see profiles.h).
#include "plan/profiles.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace shardlm::plan {

namespace {
constexpr double kGB = 1e9, kGiB = 1073741824.0, kTB = 1e12, kT = 1e12;

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// Hopper SXM parts share the compute engine (GH100): the data sheets give
// 1,979 TFLOP/s bf16 "with sparsity", i.e. 989.4 dense, and 67 TFLOP/s fp32.
DeviceProfile hopper(const std::string& name, double hbm, double hbm_bw, const std::string& src) {
  DeviceProfile d;
  d.name = name;
  d.peak_flops_bf16 = 989.4 * kT;
  d.peak_flops_fp32 = 67 * kT;
  d.memory_bytes = hbm;
  d.memory_bw = hbm_bw;
  d.host_link_bw = 64 * kGB * 0.8;  // PCIe Gen5 x16: 64 GB/s per direction, 80% reached
  d.host_memory_bytes = 2 * kTB;    // DGX H100 / H200: 2 TB of DDR5 per node
  // Two Xeon 8480C, 8 DDR5-4800 channels each: 614 GB/s nominal; ~half reached.
  d.host_memory_bw = 300 * kGB;
  d.runtime_reserve = 0.6 * kGiB;  // CUDA context + LibTorch kernels (assumed)
  d.fragmentation = 0.10;          // caching allocator (assumed)
  d.source = src;
  return d;
}
}  // namespace

// ---- devices ------------------------------------------------------------------------------

std::vector<std::string> device_profile_names() {
  return {"h100", "h200", "a100", "cpu"};
}

DeviceProfile device_profile(const std::string& name) {
  if (name == "h100")
    return hopper("h100", 80 * kGB, 3.35 * kTB,
                  "NVIDIA H100 Tensor Core GPU data sheet (SXM5): bf16 1,979 TFLOP/s with "
                  "sparsity (989 dense), fp32 67 TFLOP/s, 80 GB HBM3 at 3.35 TB/s, PCIe Gen5");
  if (name == "h200")
    return hopper("h200", 141 * kGB, 4.8 * kTB,
                  "NVIDIA H200 Tensor Core GPU data sheet (SXM): bf16 1,979 TFLOP/s with "
                  "sparsity (989 dense), fp32 67 TFLOP/s, 141 GB HBM3e at 4.8 TB/s, PCIe Gen5");
  if (name == "a100") {
    DeviceProfile d;
    d.name = "a100";
    d.peak_flops_bf16 = 312 * kT;
    d.peak_flops_fp32 = 19.5 * kT;
    d.memory_bytes = 80 * kGB;
    d.memory_bw = 2.039 * kTB;
    d.host_link_bw = 32 * kGB * 0.8;  // PCIe Gen4 x16
    d.host_memory_bytes = 1 * kTB;    // DGX A100: 1 TB (2 TB option)
    d.host_memory_bw = 200 * kGB;     // two EPYC 7742, 8 DDR4-3200 channels each: 410 nominal
    d.runtime_reserve = 0.6 * kGiB;
    d.fragmentation = 0.10;
    d.source =
        "NVIDIA A100 Tensor Core GPU data sheet (SXM 80 GB): bf16 312 TFLOP/s dense, fp32 "
        "19.5 TFLOP/s, 80 GB HBM2e at 2,039 GB/s, PCIe Gen4";
    return d;
  }
  if (name == "cpu") return cpu_profile(16, 2.5, 64 * kGiB, false);
  throw core::ConfigError(fmt::format("unknown device profile '{}'; expected one of {}", name,
                                      join(device_profile_names())));
}

DeviceProfile cpu_profile(int cores, double ghz, double memory_bytes, bool avx512) {
  DeviceProfile d;
  d.name = "cpu";
  d.gpu = false;
  // 2 FMA units x 8 (AVX2) or 16 (AVX-512) fp32 lanes x 2 FLOP per cycle and
  // core. bf16 autocast on a CPU without AMX computes no faster than fp32.
  const int per_cycle = avx512 ? 64 : 32;
  d.peak_flops_fp32 = cores * ghz * 1e9 * per_cycle;
  d.peak_flops_bf16 = d.peak_flops_fp32;
  d.efficiency = 0.5;  // measured once, see profiles.h
  d.memory_bytes = memory_bytes;
  d.host_memory_bytes = memory_bytes;
  d.memory_bw = 20 * kGB;  // one socket's DDR channels, as a streaming kernel sees them (assumed)
  d.host_memory_bw = d.memory_bw;
  d.host_link_bw = 0;  // no copies: the "device" is the host
  d.source =
      fmt::format("this host: {} cores x {:.2f} GHz x 32 fp32 FLOP/cycle (AVX2 FMA)", cores, ghz);
  return d;
}

// ---- links and networks ---------------------------------------------------------------------

std::vector<std::string> link_profile_names() {
  return {"nvlink4", "nvlink3", "pcie5",    "pcie4",    "shm",    "ib-ndr8",
          "ib-hdr8", "ib-ndr",  "eth-400g", "eth-100g", "eth-25g"};
}

LinkProfile link_profile(const std::string& name) {
  auto make = [&](double gbytes, double latency_us, std::string src) {
    LinkProfile l;
    l.name = name;
    l.bandwidth = gbytes * kGB;
    l.latency = latency_us * 1e-6;
    l.source = std::move(src);
    return l;
  };
  // Intra-node, per GPU and direction.
  if (name == "nvlink4")
    return make(450, 2, "NVLink 4 (H100/H200 SXM): 900 GB/s bidirectional per GPU, via NVSwitch");
  if (name == "nvlink3")
    return make(300, 2, "NVLink 3 (A100 SXM): 600 GB/s bidirectional per GPU, via NVSwitch");
  if (name == "pcie5") return make(64, 5, "PCIe Gen5 x16: 64 GB/s per direction");
  if (name == "pcie4") return make(32, 5, "PCIe Gen4 x16: 32 GB/s per direction");
  if (name == "shm")
    return make(10, 1, "MPI over shared memory on one host (assumed; measure with --measure)");
  // Inter-node, per node and direction (NCCL runs one ring per NIC).
  if (name == "ib-ndr8")
    return make(400, 5, "8 x InfiniBand NDR 400 Gb/s per node (DGX H100): 8 x 50 GB/s");
  if (name == "ib-hdr8")
    return make(200, 5, "8 x InfiniBand HDR 200 Gb/s per node (DGX A100): 8 x 25 GB/s");
  if (name == "ib-ndr") return make(50, 5, "1 x InfiniBand NDR 400 Gb/s per node: 50 GB/s");
  if (name == "eth-400g") return make(50, 10, "1 x 400 GbE per node: 50 GB/s");
  if (name == "eth-100g") return make(12.5, 15, "1 x 100 GbE per node: 12.5 GB/s");
  if (name == "eth-25g") return make(3.125, 20, "1 x 25 GbE per node: 3.125 GB/s");
  throw core::ConfigError(fmt::format("unknown link profile '{}'; expected one of {}", name,
                                      join(link_profile_names())));
}

std::vector<std::string> network_profile_names() {
  return {"dgx-h100", "dgx-a100", "pcie-ib", "pcie-eth", "cpu"};
}

NetworkProfile network_profile(const std::string& spec) {
  std::string intra, inter;
  if (spec == "dgx-h100") {
    intra = "nvlink4", inter = "ib-ndr8";
  } else if (spec == "dgx-a100") {
    intra = "nvlink3", inter = "ib-hdr8";
  } else if (spec == "pcie-ib") {
    intra = "pcie5", inter = "ib-ndr";
  } else if (spec == "pcie-eth") {
    intra = "pcie4", inter = "eth-100g";
  } else if (spec == "cpu") {
    intra = "shm", inter = "eth-100g";
  } else if (auto comma = spec.find(','); comma != std::string::npos) {
    intra = spec.substr(0, comma);
    inter = spec.substr(comma + 1);
  } else {
    throw core::ConfigError(
        fmt::format("unknown network '{}'; expected one of {} or INTRA,INTER with links from {}",
                    spec, join(network_profile_names()), join(link_profile_names())));
  }
  NetworkProfile n;
  n.name = spec;
  n.intra = link_profile(intra);
  n.inter = link_profile(inter);
  return n;
}

std::string default_network(const DeviceProfile& device) {
  if (!device.gpu) return "cpu";
  if (device.name == "a100") return "dgx-a100";
  return "dgx-h100";
}

// ---- sizes ----------------------------------------------------------------------------------

double parse_bytes(const std::string& text, const std::string& what) {
  auto fail = [&] {
    throw core::ConfigError(fmt::format(
        "{}: '{}' is not a size; expected a number with an optional unit (B, kB, MB, GB, TB, "
        "KiB, MiB, GiB, TiB), e.g. 80GB",
        what, text));
  };
  const char* begin = text.c_str();
  char* end = nullptr;
  double v = std::strtod(begin, &end);
  if (end == begin || !std::isfinite(v) || v < 0) fail();
  std::string unit;
  for (const char* p = end; *p; ++p)
    if (!std::isspace(static_cast<unsigned char>(*p)))
      unit += static_cast<char>(std::tolower(static_cast<unsigned char>(*p)));
  double scale = 0;
  if (unit.empty() || unit == "b")
    scale = 1;
  else if (unit == "kb" || unit == "k")
    scale = 1e3;
  else if (unit == "mb" || unit == "m")
    scale = 1e6;
  else if (unit == "gb" || unit == "g")
    scale = 1e9;
  else if (unit == "tb" || unit == "t")
    scale = 1e12;
  else if (unit == "kib")
    scale = 1024.0;
  else if (unit == "mib")
    scale = 1048576.0;
  else if (unit == "gib")
    scale = kGiB;
  else if (unit == "tib")
    scale = kGiB * 1024;
  else
    fail();
  return v * scale;
}

std::string format_bytes(double bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  double v = bytes;
  while (std::fabs(v) >= 1024 && u < 5) v /= 1024, ++u;
  if (u == 0) return fmt::format("{:.0f} B", v);
  return fmt::format("{:.{}f} {}", v, std::fabs(v) >= 100 ? 0 : (std::fabs(v) >= 10 ? 1 : 2),
                     units[u]);
}

}  // namespace shardlm::plan
