// make_plan: memory, communication and step time of one configuration (see plan.h).
#include "plan/plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace shardlm::plan {

// ---- input -----------------------------------------------------------------------------

void PlanInput::validate() const {
  using core::config_require;
  model.validate();
  config_require(micro_batch >= 1, "data.batch_size", std::to_string(micro_batch), ">= 1");
  config_require(seq_len >= 1, "data.seq_len", std::to_string(seq_len), ">= 1");
  config_require(precision == "fp32" || precision == "bf16" || precision == "fp16",
                 "train.precision", precision, "fp32, bf16 or fp16");
  config_require(sharding.zero_stage >= 0 && sharding.zero_stage <= 3, "parallel.zero_stage",
                 std::to_string(sharding.zero_stage), "0, 1, 2 or 3");
  config_require(!sharding.offload_params || (sharding.zero_stage == 3 && sharding.cpu_offload),
                 "parallel.offload_params", "true", "zero_stage = 3 and cpu_offload = true");
  config_require(sharding.accumulation >= 1, "train.accumulation",
                 std::to_string(sharding.accumulation), ">= 1");
  config_require(sharding.optimizer == "adamw" || sharding.optimizer == "cpu_adam" ||
                     sharding.optimizer == "adam8bit",
                 "optimizer.name", sharding.optimizer, "adamw, cpu_adam or adam8bit");
  config_require(world >= 1, "world", std::to_string(world), ">= 1");
  config_require(gpus_per_node >= 1, "gpus_per_node", std::to_string(gpus_per_node), ">= 1");
  config_require(rank >= -1 && rank < world, "rank", std::to_string(rank), "-1 or a rank < world");
  config_require(device.peak_flops_fp32 > 0 && device.efficiency > 0 && device.efficiency <= 1,
                 "device", device.name, "a profile with peak FLOP/s and an efficiency in (0, 1]");
  config_require(device.memory_bytes > 0, "device-memory", std::to_string(device.memory_bytes),
                 "> 0 bytes");
}

// ---- the plan ---------------------------------------------------------------------------

namespace {
// Bytes of memory traffic per element of one optimizer step: AdamW reads
// p, g, m, v and writes p, m, v (fp32); 8-bit Adam reads p, g and two bytes of
// moments and writes p and the two bytes.
double optimizer_bytes_per_element(const std::string& name) {
  return name == "adam8bit" ? 16.0 : 28.0;
}

// Elements of the range this rank's optimizer steps, over all units.
int64_t optimizer_elements(const std::vector<UnitInfo>& units, int stage, int world) {
  int64_t n = 0;
  for (const auto& u : units) n += stage == 0 ? u.padded(world) : u.shard(world);
  return n;
}
}  // namespace

Plan make_plan(const PlanInput& in) {
  in.validate();
  Plan p;
  p.input = in;
  const auto units = model_units(in.model);
  const int P = in.world;
  const ShardingSpec& sh = in.sharding;
  const bool gpu = in.device.gpu;
  p.num_parameters = in.model.num_parameters();

  // ---- memory
  ShardingSpec spec = sh;
  spec.gpu = gpu;
  if (in.rank >= 0) {
    p.rank = in.rank;
    p.memory.states = model_states(units, spec, P, in.rank);
  } else {
    p.memory.states = model_states_max(units, spec, P);
  }
  ActivationSpec as;
  as.micro_batch = in.micro_batch;
  as.seq_len = in.seq_len;
  as.precision = in.precision;
  as.gpu = gpu;
  as.checkpointing = in.activation_checkpointing;
  as.fused_attention = in.fused_attention;
  as.weight_cache = in.autocast_weight_cache;
  p.memory.activations = activation_bytes(in.model, as);
  as.checkpointing = !as.checkpointing;
  p.memory.activations_other = activation_bytes(in.model, as);

  MemoryPlan& m = p.memory;
  // NCCL's buffers (NCCL_BUFFSIZE 4 MiB x up to 32 channels x both directions):
  // assumed 256 MiB once there is a peer; MPI's collectives here run in place.
  m.comm_buffers = gpu && P > 1 ? int64_t{256} << 20 : 0;
  const StateBytes& pk = m.states.peak;
  m.device_dynamic = static_cast<double>(pk.params + pk.grads + pk.optimizer + m.activations.peak +
                                         m.comm_buffers);
  m.device_headroom = m.device_dynamic * in.device.fragmentation;
  m.device_reserve = in.device.runtime_reserve;
  m.device_total = m.device_dynamic + m.device_headroom + m.device_reserve;
  m.device_capacity = in.device.memory_bytes;
  const int ranks_per_node = std::min(P, in.gpus_per_node);
  m.host_per_rank = static_cast<double>(pk.host) + (gpu ? 0.0 : m.device_total);
  m.host_per_node = m.host_per_rank * ranks_per_node;
  m.host_capacity = in.device.host_memory_bytes;
  if (gpu) {
    m.fits_device = m.device_total <= m.device_capacity;
    m.fits_host = m.host_per_node <= m.host_capacity;
  } else {  // the CPU's "device" is the host: one budget per node
    m.fits_device = m.fits_host = m.host_per_node <= m.device_capacity;
  }

  // ---- communication
  p.comm = comm_plan(units, sh, P, in.gpus_per_node, in.net);

  // ---- compute
  ComputePlan& c = p.compute;
  const bool half = in.precision != "fp32" && (gpu || in.precision == "bf16");
  c.peak_flops = half ? in.device.peak_flops_bf16 : in.device.peak_flops_fp32;
  // A CPU profile is the whole node: its ranks share the cores and the memory
  // channels (a GPU profile is one rank's device).
  const double share = gpu ? 1.0 : static_cast<double>(ranks_per_node);
  c.peak_flops /= share;
  c.efficiency = in.device.efficiency;
  const double T = static_cast<double>(in.seq_len);
  const double tokens = static_cast<double>(in.micro_batch * sh.accumulation) * T;  // per rank
  c.flops_per_token = in.model.flops_per_token(in.seq_len);
  const double fwd = in.model.forward_flops_per_token(in.seq_len);
  const double head = 2.0 * in.model.d_model * in.model.vocab_size;
  const double recompute = in.activation_checkpointing ? fwd - head : 0.0;
  c.model_flops_per_step = c.flops_per_token * tokens;
  c.flops_per_step = (c.flops_per_token + recompute) * tokens;
  const double rate = c.peak_flops * c.efficiency;
  c.forward_s = fwd * tokens / rate;
  c.backward_s = (c.flops_per_token - fwd + recompute) * tokens / rate;
  c.compute_s = c.forward_s + c.backward_s;

  const double n_opt = static_cast<double>(optimizer_elements(units, sh.zero_stage, P));
  const double opt_traffic = n_opt * optimizer_bytes_per_element(sh.optimizer);
  if (sh.cpu_offload) {
    // The ranks of a node share its memory bandwidth for the host Adam step.
    c.optimizer_s = opt_traffic / (in.device.host_memory_bw / ranks_per_node);
    // Gradient shard to the host, updated shard back (not with streaming, where
    // the copies ride along the gathers and reductions).
    if (gpu && !sh.offload_params) c.transfer_s = 8.0 * n_opt / in.device.host_link_bw;
  } else {
    c.optimizer_s = opt_traffic / (in.device.memory_bw / share);
  }

  // ---- step time: compute, plus what communication cannot hide behind it
  const double A = static_cast<double>(sh.accumulation);
  const double fwd_mb = c.forward_s / A, bwd_mb = c.backward_s / A;
  double hidden_window_extra = 0;  // streamed host copies share the gathers' window
  if (gpu && sh.offload_params) {
    double shard_bytes = 0;
    for (const auto& u : units) shard_bytes += 4.0 * u.shard(P) * (u.root ? 1 : 2);
    double grad_bytes = 0;
    for (const auto& u : units) grad_bytes += 4.0 * u.shard(P);
    hidden_window_extra = (shard_bytes + grad_bytes) / in.device.host_link_bw;  // per micro-batch
  }
  double exposed = p.comm.serial_s;
  exposed += std::max(0.0, p.comm.last_backward_s - bwd_mb);
  if (sh.zero_stage == 3) {
    const double per_mb =
        (p.comm.forward_backward_s + p.comm.each_backward_s) / A + hidden_window_extra;
    if (sh.prefetch)
      exposed += A * std::max(0.0, per_mb - (fwd_mb + bwd_mb));
    else
      exposed += p.comm.forward_backward_s + A * std::max(0.0, p.comm.each_backward_s / A - bwd_mb);
  } else {
    exposed += A * std::max(0.0, p.comm.each_backward_s / A - bwd_mb);
  }
  p.exposed_comm_s = exposed;
  p.step_s = c.compute_s + exposed + c.optimizer_s + c.transfer_s;
  p.tokens_per_step = tokens * P;
  p.tokens_per_s = p.tokens_per_step / p.step_s;
  p.mfu = c.flops_per_token * p.tokens_per_s / (P * c.peak_flops);

  // ---- verdict
  p.fits = m.fits_device && m.fits_host;
  if (!p.fits) {
    p.bottleneck = "memory";
    if (!m.fits_device)
      p.verdict = fmt::format(
          "does not fit: {} per {} needed, {} available (model states {}, activations {})",
          format_bytes(m.device_total), gpu ? "GPU" : "node", format_bytes(m.device_capacity),
          format_bytes(static_cast<double>(pk.params + pk.grads + pk.optimizer)),
          format_bytes(static_cast<double>(m.activations.peak)));
    else
      p.verdict = fmt::format("does not fit: {} of host memory per node needed, {} available",
                              format_bytes(m.host_per_node), format_bytes(m.host_capacity));
  } else {
    struct Term {
      const char* name;
      double s;
    };
    const Term terms[] = {{"compute", c.compute_s},
                          {"communication", exposed},
                          {"optimizer", c.optimizer_s},
                          {"host transfers", c.transfer_s}};
    const Term* top = &terms[0];
    for (const Term& t : terms)
      if (t.s > top->s) top = &t;
    p.bottleneck = top->name;
    p.verdict = fmt::format(
        "fits: {} of {} per {}; step {:.3g} s, {:.3g} tokens/s, MFU {:.1f}%; "
        "bottleneck: {}",
        format_bytes(gpu ? m.device_total : m.host_per_node), format_bytes(m.device_capacity),
        gpu ? "GPU" : "node", p.step_s, p.tokens_per_s, 100 * p.mfu, p.bottleneck);
  }
  if (sh.zero_stage >= 2 && !sh.offload_params)
    p.notes.push_back(
        "ZeRO-2/3 here allocate every unit's full gradient buffer for the whole step (freed "
        "between steps): the peak keeps them all; layer streaming (offload_params) does not");
  if (!gpu && in.precision == "fp16")
    p.notes.push_back("fp16 on a CPU computes in fp32 (the trainer keeps only the loss scaling)");
  return p;
}

// ---- output -------------------------------------------------------------------------------

nlohmann::json to_json(const Plan& p) {
  using nlohmann::json;
  const PlanInput& in = p.input;
  auto states = [](const StateBytes& s) {
    return json{{"params", s.params}, {"grads", s.grads},     {"optimizer", s.optimizer},
                {"host", s.host},     {"device", s.device()}, {"total", s.total()}};
  };
  auto acts = [](const ActivationBytes& a) {
    return json{{"per_layer", a.per_layer},
                {"per_layer_checkpointed", a.per_layer_ckpt},
                {"attention_scores_per_layer", a.attention_scores},
                {"root", a.root},
                {"weight_copies", a.weight_copies},
                {"saved", a.saved},
                {"peak", a.peak},
                {"peak_at", a.peak_at}};
  };
  json j;
  j["input"] = {{"model", in.model.to_json()},
                {"parameters", p.num_parameters},
                {"micro_batch", in.micro_batch},
                {"seq_len", in.seq_len},
                {"accumulation", in.sharding.accumulation},
                {"global_batch", in.global_batch()},
                {"precision", in.precision},
                {"zero_stage", in.sharding.zero_stage},
                {"cpu_offload", in.sharding.cpu_offload},
                {"offload_params", in.sharding.offload_params},
                {"activation_checkpointing", in.activation_checkpointing},
                {"fused_attention", in.fused_attention},
                {"optimizer", in.sharding.optimizer},
                {"world", in.world},
                {"gpus_per_node", in.gpus_per_node},
                {"rank", p.rank},
                {"device",
                 {{"name", in.device.name},
                  {"peak_flops_bf16", in.device.peak_flops_bf16},
                  {"peak_flops_fp32", in.device.peak_flops_fp32},
                  {"efficiency", in.device.efficiency},
                  {"memory_bytes", in.device.memory_bytes},
                  {"source", in.device.source}}},
                {"network",
                 {{"name", in.net.name},
                  {"intra",
                   {{"name", in.net.intra.name},
                    {"bandwidth", in.net.intra.bandwidth},
                    {"efficiency", in.net.intra.efficiency},
                    {"latency", in.net.intra.latency}}},
                  {"inter",
                   {{"name", in.net.inter.name},
                    {"bandwidth", in.net.inter.bandwidth},
                    {"efficiency", in.net.inter.efficiency},
                    {"latency", in.net.inter.latency}}}}}};
  const MemoryPlan& m = p.memory;
  j["memory"] = {
      {"model_states", {{"rest", states(m.states.rest)}, {"peak", states(m.states.peak)}}},
      {"activations", acts(m.activations)},
      {"activations_other", acts(m.activations_other)},
      {"comm_buffers", m.comm_buffers},
      {"device_dynamic", m.device_dynamic},
      {"device_headroom", m.device_headroom},
      {"device_reserve", m.device_reserve},
      {"device_total", m.device_total},
      {"device_capacity", m.device_capacity},
      {"host_per_rank", m.host_per_rank},
      {"host_per_node", m.host_per_node},
      {"host_capacity", m.host_capacity},
      {"fits_device", m.fits_device},
      {"fits_host", m.fits_host}};
  json kinds = json::object();
  for (int i = 0; i < parallel::kNumCollectives; ++i) {
    const CollectiveTotals& k = p.comm.per_kind[i];
    if (k.calls == 0) continue;
    kinds[parallel::collective_name(static_cast<parallel::Collective>(i))] = {
        {"calls", k.calls},
        {"payload_bytes", k.payload_bytes},
        {"wire_bytes", k.wire_bytes},
        {"ring_seconds", k.ring_seconds},
        {"tree_seconds", k.tree_seconds},
        {"seconds", k.seconds}};
  }
  j["communication"] = {{"per_kind", kinds},
                        {"wire_bytes", p.comm.total.wire_bytes},
                        {"payload_bytes", p.comm.total.payload_bytes},
                        {"ring_seconds", p.comm.total.ring_seconds},
                        {"tree_seconds", p.comm.total.tree_seconds},
                        {"seconds", p.comm.total.seconds},
                        {"exposed_seconds", p.exposed_comm_s},
                        {"bus_bandwidth", p.comm.bus_bandwidth},
                        {"step_latency", p.comm.step_latency},
                        {"nodes", p.comm.nodes}};
  const ComputePlan& c = p.compute;
  j["compute"] = {{"flops_per_token", c.flops_per_token},
                  {"flops_per_step", c.flops_per_step},
                  {"model_flops_per_step", c.model_flops_per_step},
                  {"peak_flops", c.peak_flops},
                  {"efficiency", c.efficiency},
                  {"compute_seconds", c.compute_s},
                  {"forward_seconds", c.forward_s},
                  {"backward_seconds", c.backward_s},
                  {"optimizer_seconds", c.optimizer_s},
                  {"transfer_seconds", c.transfer_s}};
  j["step_seconds"] = p.step_s;
  j["tokens_per_step"] = p.tokens_per_step;
  j["tokens_per_second"] = p.tokens_per_s;
  j["mfu"] = p.mfu;
  j["fits"] = p.fits;
  j["bottleneck"] = p.bottleneck;
  j["verdict"] = p.verdict;
  j["notes"] = p.notes;
  return j;
}

std::string format_table(const Plan& p) {
  const PlanInput& in = p.input;
  const MemoryPlan& m = p.memory;
  const StateBytes& pk = m.states.peak;
  const StateBytes& rs = m.states.rest;
  auto b = [](double x) { return format_bytes(x); };
  std::string o;
  o += fmt::format("model      {} parameters ({} layers, width {}, {} heads, vocabulary {})\n",
                   p.num_parameters, in.model.n_layer, in.model.d_model, in.model.n_head,
                   in.model.vocab_size);
  o += fmt::format(
      "run        {} rank(s), {} per node; micro-batch {} x accumulation {} x seq {} ({} "
      "tokens/step); {}; ZeRO-{}{}{}{}; {}\n",
      in.world, in.gpus_per_node, in.micro_batch, in.sharding.accumulation, in.seq_len,
      static_cast<int64_t>(p.tokens_per_step), in.precision, in.sharding.zero_stage,
      in.sharding.cpu_offload ? " + CPU offload" : "",
      in.sharding.offload_params ? " + layer streaming" : "",
      in.activation_checkpointing ? " + activation checkpointing" : "", in.sharding.optimizer);
  o += fmt::format("hardware   {} ({}); network {} ({} / {})\n\n", in.device.name,
                   b(in.device.memory_bytes), in.net.name, in.net.intra.name, in.net.inter.name);

  o += fmt::format("memory per rank ({})          {:>12} {:>12}\n", in.device.gpu ? "GPU" : "CPU",
                   "peak", "at rest");
  o += fmt::format("  parameters (fp32)               {:>12} {:>12}\n", b(pk.params), b(rs.params));
  o += fmt::format("  gradients (fp32)                {:>12} {:>12}\n", b(pk.grads), b(rs.grads));
  o += fmt::format("  optimizer states                {:>12} {:>12}\n", b(pk.optimizer),
                   b(rs.optimizer));
  const ActivationBytes& a = m.activations;
  const ActivationBytes& ao = m.activations_other;
  const ActivationBytes& plain = in.activation_checkpointing ? ao : a;
  o += fmt::format("  activations (peak)              {:>12}  at the {}\n", b(a.peak), a.peak_at);
  o += fmt::format(
      "    per layer                     {:>12}  (attention scores {}; {} with "
      "checkpointing)\n",
      b(plain.per_layer), b(plain.attention_scores), b(plain.per_layer_ckpt));
  o += fmt::format("    kept after forward            {:>12}  ({} {} checkpointing)\n", b(a.saved),
                   b(ao.saved), in.activation_checkpointing ? "without" : "with");
  if (a.weight_copies > 0)
    o += fmt::format("    autocast weight copies        {:>12}\n", b(a.weight_copies));
  o += fmt::format("  communication buffers           {:>12}\n", b(m.comm_buffers));
  o += fmt::format("  allocator headroom              {:>12}\n", b(m.device_headroom));
  o += fmt::format("  runtime reserve                 {:>12}\n", b(m.device_reserve));
  o += fmt::format("  total on the {}                {:>12}  of {}\n",
                   in.device.gpu ? "GPU" : "CPU", b(m.device_total), b(m.device_capacity));
  o += fmt::format("host per rank (offload)           {:>12}  ({} per node of {})\n\n", b(pk.host),
                   b(m.host_per_node), b(m.host_capacity));

  o += fmt::format(
      "communication per step    calls      payload    sent/rank     ring s     tree s\n");
  for (int i = 0; i < parallel::kNumCollectives; ++i) {
    const CollectiveTotals& k = p.comm.per_kind[i];
    if (k.calls == 0) continue;
    o += fmt::format("  {:<22} {:>6} {:>12} {:>12} {:>10.4g} {:>10.4g}\n",
                     parallel::collective_name(static_cast<parallel::Collective>(i)), k.calls,
                     b(static_cast<double>(k.payload_bytes)), b(static_cast<double>(k.wire_bytes)),
                     k.ring_seconds, k.tree_seconds);
  }
  o += fmt::format("  bus bandwidth {}/s, {:.3g} us per step, {} node(s); not hidden: {:.4g} s\n\n",
                   b(p.comm.bus_bandwidth), p.comm.step_latency * 1e6, p.comm.nodes,
                   p.exposed_comm_s);

  const ComputePlan& c = p.compute;
  o += fmt::format(
      "compute    {:.4g} FLOP/token; {:.4g} FLOP/step per rank; peak {:.4g} FLOP/s x "
      "efficiency {:.2f}\n",
      c.flops_per_token, c.flops_per_step, c.peak_flops, c.efficiency);
  o += fmt::format(
      "step       {:.4g} s = compute {:.4g} + communication {:.4g} + optimizer "
      "{:.4g} + host copies {:.4g}\n",
      p.step_s, c.compute_s, p.exposed_comm_s, c.optimizer_s, c.transfer_s);
  o += fmt::format("throughput {:.4g} tokens/s, MFU {:.1f}%\n\n", p.tokens_per_s, 100 * p.mfu);
  o += "verdict    " + p.verdict + "\n";
  for (const auto& n : p.notes) o += "note       " + n + "\n";
  return o;
}

}  // namespace shardlm::plan
