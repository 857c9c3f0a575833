// INT8 / INT4 weight quantisation: the schemes, packing, the safetensors layout
// and the two runtimes. quantize.h has the formulas; docs/compression.md the why.
#include "compress/quantize.h"

#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

#include "compress/io.h"
#include "core/error.h"
#include "model/generate.h"
#include "model/safetensors.h"

namespace shardlm::model::compress {

using core::CheckpointError;
using core::ModelError;
using torch::Tensor;
namespace fs = std::filesystem;

// ---- configuration ---------------------------------------------------------------------

QuantConfig QuantConfig::from(const core::ConfigSection& s) {
  QuantConfig c;
  c.method = s.get("method", c.method);
  c.group_size = s.get("group_size", c.group_size);
  c.symmetric = s.get("symmetric", c.symmetric);
  c.embeddings = s.get("embeddings", c.embeddings);
  c.runtime = s.get("runtime", c.runtime);
  return c;
}

void QuantConfig::validate() const {
  using core::config_require;
  config_require(method == "int8" || method == "int4", "method", method, "one of int8, int4");
  if (method == "int4")
    config_require(group_size == 32 || group_size == 64 || group_size == 128, "group_size",
                   std::to_string(group_size), "one of 32, 64, 128");
  config_require(runtime == "dequantized" || runtime == "on_the_fly", "runtime", runtime,
                 "one of dequantized, on_the_fly");
}

nlohmann::json QuantConfig::to_json() const {
  return {{"method", method},         {"group_size", group_size}, {"symmetric", symmetric},
          {"embeddings", embeddings}, {"runtime", runtime},       {"format_version", 1}};
}

QuantConfig QuantConfig::from_json(const nlohmann::json& j) {
  QuantConfig c;
  c.method = j.value("method", c.method);
  c.group_size = j.value("group_size", c.group_size);
  c.symmetric = j.value("symmetric", c.symmetric);
  c.embeddings = j.value("embeddings", c.embeddings);
  c.runtime = j.value("runtime", c.runtime);
  c.validate();
  return c;
}

// ---- packing and the schemes ------------------------------------------------------------------

Tensor pack_int4(const Tensor& codes) {
  // codes (..., 2n) uint8 -> (..., n): low nibble = even element, high = odd.
  SHARDLM_CHECK(codes.dim() >= 1 && codes.size(-1) % 2 == 0, ModelError,
                "pack_int4: the last dim must be even, got {}", c10::str(codes.sizes()));
  SHARDLM_CHECK(codes.scalar_type() == torch::kByte, ModelError,
                "pack_int4: codes must be uint8, got {}", c10::toString(codes.scalar_type()));
  SHARDLM_CHECK(codes.numel() == 0 || codes.max().item<int64_t>() <= 15, ModelError,
                "pack_int4: codes must lie in [0, 15], got {}", codes.max().item<int64_t>());
  auto sizes = codes.sizes().vec();
  sizes.back() /= 2;
  sizes.push_back(2);
  Tensor pairs = codes.contiguous().view(sizes);  // (..., n, 2)
  return pairs.select(-1, 0).bitwise_or(pairs.select(-1, 1).mul(16)).contiguous();
}

Tensor unpack_int4(const Tensor& packed) {
  // (..., n) uint8 -> (..., 2n)
  SHARDLM_CHECK(packed.scalar_type() == torch::kByte, ModelError,
                "unpack_int4: expected uint8, got {}", c10::toString(packed.scalar_type()));
  Tensor lo = packed.bitwise_and(15);
  Tensor hi = at::div(packed, 16, "floor");
  auto sizes = packed.sizes().vec();
  sizes.back() *= 2;
  return torch::stack({lo, hi}, -1).view(sizes);
}

namespace {
Tensor as_matrix(const Tensor& w, const char* what) {
  SHARDLM_CHECK(w.dim() == 2 && w.is_floating_point(), ModelError,
                "{}: expected a floating (out, in) matrix, got {} of {}", what, c10::str(w.sizes()),
                c10::toString(w.scalar_type()));
  return w.detach().to(torch::kCPU, torch::kFloat).contiguous();
}
// A scale of 0 (an all-zero row or group) would divide by zero; any value works there.
Tensor safe(const Tensor& s) {
  return torch::where(s > 0, s, torch::ones_like(s));
}
}  // namespace

QuantizedTensor quantize_int8(const Tensor& w_in) {
  Tensor w = as_matrix(w_in, "quantize_int8");  // (out, in)
  QuantizedTensor qt;
  qt.scheme = "int8";
  qt.rows = w.size(0);
  qt.cols = w.size(1);
  qt.scale = safe(w.abs().amax(1) / 127.0);  // (out)
  qt.q = torch::round(w / qt.scale.unsqueeze(1)).clamp_(-127, 127).to(torch::kChar);
  return qt;
}

QuantizedTensor quantize_int4(const Tensor& w_in, int64_t group, bool symmetric) {
  Tensor w = as_matrix(w_in, "quantize_int4");  // (out, in)
  const int64_t out = w.size(0), in = w.size(1);
  SHARDLM_CHECK(group > 0 && in % group == 0, ModelError,
                "quantize_int4: {} input columns are not a multiple of group_size {}", in, group);
  QuantizedTensor qt;
  qt.scheme = symmetric ? "int4" : "int4_asym";
  qt.rows = out;
  qt.cols = in;
  qt.group_size = group;
  Tensor wg = w.view({out, in / group, group});  // (out, G, group)
  Tensor codes;
  if (symmetric) {
    qt.scale = safe(wg.abs().amax(2) / 7.0);  // (out, G)
    codes = torch::round(wg / qt.scale.unsqueeze(2)).clamp_(-8, 7).add_(8);
  } else {
    // The range always includes 0, so zero is exact and z lies in [0, 15].
    Tensor lo = wg.amin(2).clamp_max(0), hi = wg.amax(2).clamp_min(0);
    qt.scale = safe((hi - lo) / 15.0);
    Tensor z = torch::round(-lo / qt.scale).clamp_(0, 15);
    codes = torch::round(wg / qt.scale.unsqueeze(2)).add_(z.unsqueeze(2)).clamp_(0, 15);
    qt.zero = z.to(torch::kByte);
  }
  qt.q = pack_int4(codes.to(torch::kByte).view({out, in}));  // (out, in / 2)
  return qt;
}

Tensor QuantizedTensor::dequantize() const {
  if (scheme == "int8") return q.to(torch::kFloat) * scale.unsqueeze(1);
  const int64_t groups = cols / group_size;
  Tensor codes = unpack_int4(q).view({rows, groups, group_size}).to(torch::kFloat);
  Tensor z = zero.defined() ? zero.to(torch::kFloat).unsqueeze(2)
                            : torch::full({1}, 8.0f, scale.options());
  return ((codes - z) * scale.unsqueeze(2)).view({rows, cols});
}

int64_t QuantizedTensor::nbytes() const {
  int64_t n = q.numel() * q.element_size() + scale.numel() * scale.element_size();
  if (zero.defined()) n += zero.numel() * zero.element_size();
  return n;
}

// ---- the model ---------------------------------------------------------------------------------

namespace {
bool is_block_linear(const std::string& name, const Tensor& p) {
  return name.rfind("blocks.", 0) == 0 && p.dim() == 2;
}
bool is_embedding(const std::string& name) {
  return name == "wte.weight" || name == "wpe.weight" || name == "lm_head";
}
}  // namespace

int64_t QuantizedModel::nbytes() const {
  int64_t n = 0;
  for (const auto& p : model->named_parameters()) {
    auto it = weights.find(p.key());
    n += it != weights.end() ? it->second.nbytes() : p.value().numel() * 4;
  }
  return n;
}

QuantizedModel quantize(const GPT& model, const QuantConfig& cfg) {
  cfg.validate();
  QuantizedModel qm;
  qm.model = copy_gpt(model);
  qm.cfg = cfg;
  torch::NoGradGuard no_grad;
  for (const auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    if (is_block_linear(name, p.value())) {
      qm.weights[name] = cfg.method == "int8"
                             ? quantize_int8(p.value())
                             : quantize_int4(p.value(), cfg.group_size, cfg.symmetric);
    } else if (cfg.embeddings && is_embedding(name)) {
      qm.weights[name] = quantize_int8(p.value());  // one scale per token / position row
    }
  }
  return qm;
}

void save_quantized(const QuantizedModel& qm, const std::string& dir) {
  NamedTensors tensors;
  for (const auto& p : qm.model->named_parameters()) {
    auto it = qm.weights.find(p.key());
    if (it == qm.weights.end()) {
      tensors.emplace_back(p.key(), p.value().detach().to(torch::kCPU, torch::kFloat));
      continue;
    }
    const QuantizedTensor& qt = it->second;
    tensors.emplace_back(p.key() + ".qweight", qt.q);
    tensors.emplace_back(p.key() + ".scale", qt.scale);
    if (qt.zero.defined()) tensors.emplace_back(p.key() + ".zero", qt.zero);
  }
  nlohmann::json config = {{"model_type", "shardlm"},
                           {"shardlm_config", qm.model->config().to_json()},
                           {"quantization", qm.cfg.to_json()}};
  write_model_dir(dir, tensors, config, {{"shardlm_quantization", qm.cfg.method}});
}

bool is_quantized_dir(const std::string& dir_or_file) {
  const fs::path cfg_path = model_config_path(dir_or_file);
  if (!fs::is_regular_file(cfg_path)) return false;
  return read_json(cfg_path.string()).contains("quantization");
}

namespace {
// The quantised form of `name` from the file, checked against the model's (rows, cols).
QuantizedTensor read_quantized(const SafetensorsFile& f, const std::string& name, int64_t rows,
                               int64_t cols) {
  const Tensor& q = f.at(name + ".qweight");
  const Tensor& s = f.at(name + ".scale");
  auto shape = [](const Tensor& t) { return nlohmann::json(t.sizes().vec()).dump(); };
  QuantizedTensor qt;
  qt.rows = rows;
  qt.cols = cols;
  qt.q = q;
  qt.scale = s.to(torch::kFloat);
  if (q.scalar_type() == torch::kChar) {
    qt.scheme = "int8";
    SHARDLM_CHECK(
        q.sizes() == torch::IntArrayRef({rows, cols}) && s.dim() == 1 && s.size(0) == rows,
        CheckpointError, "{}: '{}' int8 weight {} / scale {} do not match the config's ({}, {})",
        f.path, name, shape(q), shape(s), rows, cols);
    return qt;
  }
  SHARDLM_CHECK(q.scalar_type() == torch::kByte, CheckpointError,
                "{}: '{}.qweight' has dtype {}, expected I8 (int8) or U8 (packed int4)", f.path,
                name, c10::toString(q.scalar_type()));
  SHARDLM_CHECK(cols % 2 == 0 && q.sizes() == torch::IntArrayRef({rows, cols / 2}) &&
                    s.dim() == 2 && s.size(0) == rows && s.size(1) > 0 && cols % s.size(1) == 0,
                CheckpointError,
                "{}: '{}' packed int4 weight {} / scale {} do not match the config's ({}, {})",
                f.path, name, shape(q), shape(s), rows, cols);
  qt.group_size = cols / s.size(1);
  qt.scheme = "int4";
  if (f.contains(name + ".zero")) {
    qt.scheme = "int4_asym";
    qt.zero = f.at(name + ".zero");
    SHARDLM_CHECK(qt.zero.scalar_type() == torch::kByte && qt.zero.sizes() == s.sizes(),
                  CheckpointError, "{}: '{}.zero' must be U8 of shape {}, got {} {}", f.path, name,
                  shape(s), c10::toString(qt.zero.scalar_type()), shape(qt.zero));
  }
  return qt;
}
}  // namespace

QuantizedModel load_quantized(const std::string& dir_or_file, const std::string& runtime) {
  const fs::path cfg_path = model_config_path(dir_or_file);
  const nlohmann::json j = read_json(cfg_path.string());
  SHARDLM_CHECK(j.contains("quantization"), CheckpointError,
                "{}: no \"quantization\" block: not a quantised model", cfg_path.string());
  QuantizedModel qm;
  try {
    qm.cfg = QuantConfig::from_json(j.at("quantization"));
  } catch (const core::ConfigError& e) {
    SHARDLM_FAIL(CheckpointError, "{}: invalid \"quantization\" block: {}", cfg_path.string(),
                 e.what());
  }
  ModelConfig mcfg = import_config(j, cfg_path.string());
  SafetensorsFile f = read_safetensors(model_weights_path(dir_or_file).string());
  qm.model = GPT(mcfg);
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& p : qm.model->named_parameters()) {
    const std::string& name = p.key();
    Tensor& param = p.value();
    if (f.contains(name)) {
      const Tensor& t = f.at(name);
      SHARDLM_CHECK(t.is_floating_point() && t.sizes() == param.sizes(), CheckpointError,
                    "{}: tensor '{}' is {} {}, expected a floating tensor of shape {}", f.path,
                    name, c10::toString(t.scalar_type()), c10::str(t.sizes()),
                    c10::str(param.sizes()));
      param.copy_(t);
      used.insert(name);
      continue;
    }
    SHARDLM_CHECK(f.contains(name + ".qweight"), CheckpointError,
                  "{}: tensor '{}' is missing (neither '{}' nor '{}.qweight')", f.path, name, name,
                  name);
    SHARDLM_CHECK(param.dim() == 2, CheckpointError, "{}: '{}' ({}) cannot be quantised", f.path,
                  name, c10::str(param.sizes()));
    qm.weights[name] = read_quantized(f, name, param.size(0), param.size(1));
    for (const char* part : {".qweight", ".scale", ".zero"}) used.insert(name + part);
  }
  for (const auto& [n, t] : f.tensors)
    SHARDLM_CHECK(used.count(n), CheckpointError,
                  "{}: unexpected tensor '{}' (not a parameter of the configured model)", f.path,
                  n);
  install_runtime(qm, runtime.empty() ? qm.cfg.runtime : runtime);
  return qm;
}

// ---- runtimes -----------------------------------------------------------------------------------

namespace {
// The int weights of every block and the fp32 parameters they are expanded into.
struct OnTheFly {
  struct Item {
    Tensor param;  // the module's parameter: empty between uses
    QuantizedTensor qt;
  };
  std::vector<std::vector<Item>> per_layer;
  std::mutex mu;  // one forward at a time may expand a block
};
}  // namespace

void install_runtime(QuantizedModel& qm, const std::string& runtime) {
  QuantConfig check = qm.cfg;
  check.runtime = runtime;
  check.validate();
  qm.cfg.runtime = runtime;
  torch::NoGradGuard no_grad;
  auto params = qm.model->named_parameters();
  auto state = std::make_shared<OnTheFly>();
  state->per_layer.resize(qm.model->config().n_layer);
  for (const auto& [name, qt] : qm.weights) {
    Tensor& p = params[name];
    if (runtime == "on_the_fly" && name.rfind("blocks.", 0) == 0) {
      state->per_layer[layer_index(name)].push_back({p, qt});
      p.set_data(torch::empty({0}, p.options()));  // the fp32 copy is freed
    } else {
      p.set_data(qt.dequantize().to(p.options()));  // embeddings always run dequantised
    }
  }
  if (runtime != "on_the_fly") {
    qm.model->default_block_runner = nullptr;
    return;
  }
  qm.model->default_block_runner = [state](int64_t layer, const BlockFn& run, const Tensor& x) {
    std::lock_guard<std::mutex> lock(state->mu);
    auto& items = state->per_layer[layer];
    for (auto& it : items) {
      if (it.qt.q.device() != it.param.device()) {  // follow the model to its device, once
        it.qt.q = it.qt.q.to(it.param.device());
        it.qt.scale = it.qt.scale.to(it.param.device());
        if (it.qt.zero.defined()) it.qt.zero = it.qt.zero.to(it.param.device());
      }
      it.param.set_data(it.qt.dequantize().to(it.param.options()));
    }
    Tensor y = run(x);
    for (auto& it : items) it.param.set_data(torch::empty({0}, it.param.options()));
    return y;
  };
}

}  // namespace shardlm::model::compress
