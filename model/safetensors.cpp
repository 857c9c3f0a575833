// safetensors reader/writer and the GPT <-> file layouts (HF GPT-2 and shardlm's own).
#include "model/safetensors.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_int.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors is little-endian; this reader copies bytes as they are");

namespace shardlm::model {

namespace fs = std::filesystem;
using core::CheckpointError;
using torch::Tensor;

// ---- dtypes --------------------------------------------------------------------------

namespace {

const std::vector<std::pair<std::string, torch::ScalarType>>& dtype_names() {
  static const std::vector<std::pair<std::string, torch::ScalarType>> names{
      {"F64", torch::kFloat64},   {"F32", torch::kFloat32}, {"F16", torch::kFloat16},
      {"BF16", torch::kBFloat16}, {"I64", torch::kInt64},   {"I32", torch::kInt32},
      {"I16", torch::kInt16},     {"I8", torch::kInt8},     {"U8", torch::kUInt8},
      {"BOOL", torch::kBool}};
  return names;
}

std::string dtype_name(torch::ScalarType t, const std::string& path, const std::string& tensor) {
  for (const auto& [n, s] : dtype_names())
    if (s == t) return n;
  SHARDLM_FAIL(CheckpointError, "{}: tensor '{}' has dtype {} which safetensors cannot store", path,
               tensor, c10::toString(t));
}

}  // namespace

// ---- the file format ----------------------------------------------------------------

bool SafetensorsFile::contains(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return true;
  return false;
}

const Tensor& SafetensorsFile::at(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  SHARDLM_FAIL(CheckpointError, "{}: no tensor '{}'", path, name);
}

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> data;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    SHARDLM_CHECK(t.defined(), CheckpointError, "{}: tensor '{}' is undefined", path, name);
    SHARDLM_CHECK(seen.insert(name).second && name != "__metadata__", CheckpointError,
                  "{}: tensor name '{}' used twice or reserved", path, name);
    Tensor c = t.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = c.numel() * c.element_size();
    header[name] = {{"dtype", dtype_name(c.scalar_type(), path, name)},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  // A crash or a full disk leaves any earlier file at `path` whole (core/fs.h).
  core::write_file_atomic<CheckpointError>(path, [&](std::ostream& out) {
    const uint64_t n = text.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const Tensor& c : data)
      out.write(static_cast<const char*>(c.data_ptr()),
                static_cast<std::streamsize>(c.numel() * c.element_size()));
  });
}

SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SHARDLM_CHECK(in.good(), CheckpointError, "{}: cannot open for reading", path);
  std::error_code ec;
  const uint64_t file_size = fs::file_size(path, ec);
  SHARDLM_CHECK(!ec && file_size >= 8, CheckpointError,
                "{}: {} bytes, too short for a safetensors file (8-byte header length first)", path,
                ec ? 0 : file_size);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  SHARDLM_CHECK(
      n <= file_size - 8 && n <= (uint64_t{100} << 20), CheckpointError,
      "{}: header length {} does not fit the file ({} bytes): not safetensors or truncated", path,
      n, file_size);
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    SHARDLM_FAIL(CheckpointError, "{}: header is not valid JSON: {}", path, e.what());
  }
  SHARDLM_CHECK(header.is_object(), CheckpointError, "{}: header is not a JSON object", path);

  SafetensorsFile file;
  file.path = path;
  const uint64_t data_size = file_size - 8 - n;
  struct Entry {
    std::string name;
    torch::ScalarType dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (const auto& [name, e] : header.items()) {
    if (name == "__metadata__") {
      SHARDLM_CHECK(e.is_object(), CheckpointError, "{}: __metadata__ must be an object", path);
      for (const auto& [k, v] : e.items())
        file.metadata[k] = v.is_string() ? v.get<std::string>() : v.dump();
      continue;
    }
    Entry en;
    en.name = name;
    try {
      const std::string dt = e.at("dtype").get<std::string>();
      bool known = false;
      for (const auto& [dn, st] : dtype_names())
        if (dn == dt) en.dtype = st, known = true;
      SHARDLM_CHECK(known, CheckpointError, "{}: tensor '{}' has unsupported dtype {}", path, name,
                    dt);
      const std::string where = path + ": tensor '" + name + "'";
      SHARDLM_CHECK(e.at("shape").is_array() && e.at("data_offsets").is_array(), CheckpointError,
                    "{}: shape and data_offsets must be arrays", where);
      en.shape.clear();
      for (const auto& d : e.at("shape"))
        en.shape.push_back(core::json_int<int64_t, CheckpointError>(d, where + " shape"));
      std::vector<uint64_t> offs;
      for (const auto& o : e.at("data_offsets"))
        offs.push_back(core::json_int<uint64_t, CheckpointError>(o, where + " data_offsets"));
      SHARDLM_CHECK(offs.size() == 2 && offs[0] <= offs[1], CheckpointError,
                    "{}: tensor '{}' has bad data_offsets {}", path, name,
                    e.at("data_offsets").dump());
      en.begin = offs[0];
      en.end = offs[1];
    } catch (const nlohmann::json::exception& ex) {
      SHARDLM_FAIL(CheckpointError, "{}: tensor '{}' has a malformed entry {}: {}", path, name,
                   e.dump(), ex.what());
    }
    int64_t numel = 1;
    for (int64_t d : en.shape) {
      SHARDLM_CHECK(d >= 0, CheckpointError, "{}: tensor '{}' has a negative dim", path, name);
      numel *= d;
    }
    const uint64_t bytes = static_cast<uint64_t>(numel) * c10::elementSize(en.dtype);
    SHARDLM_CHECK(en.end - en.begin == bytes, CheckpointError,
                  "{}: tensor '{}' spans {} bytes but shape {} of {} needs {}", path, name,
                  en.end - en.begin, e.at("shape").dump(), e.at("dtype").get<std::string>(), bytes);
    SHARDLM_CHECK(en.end <= data_size, CheckpointError,
                  "{}: tensor '{}' ends at byte {} of the data section, which has only {} bytes: "
                  "file truncated",
                  path, name, en.end, data_size);
    entries.push_back(std::move(en));
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < entries.size(); ++i)
    SHARDLM_CHECK(entries[i].begin >= entries[i - 1].end, CheckpointError,
                  "{}: tensors '{}' and '{}' overlap", path, entries[i - 1].name, entries[i].name);
  for (const Entry& en : entries) {
    Tensor t = torch::empty(en.shape, torch::dtype(en.dtype));
    in.seekg(static_cast<std::streamoff>(8 + n + en.begin));
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(en.end - en.begin));
    SHARDLM_CHECK(in.good(), CheckpointError, "{}: reading tensor '{}' failed (truncated?)", path,
                  en.name);
    file.tensors.emplace_back(en.name, t);
  }
  return file;
}

// ---- GPT <-> file layout --------------------------------------------------------------

namespace {

// One tensor of the file: the parameters it holds (concatenated along dim 0) and
// whether the file stores it transposed (HF's Conv1D keeps linear weights (in, out)).
struct Slot {
  std::string name;
  std::vector<Tensor> parts;
  bool transpose = false;
};

std::vector<Slot> layout(const GPTImpl& m) {
  const ModelConfig& cfg = m.config();
  std::vector<Slot> slots;
  if (!cfg.is_gpt2_architecture()) {  // shardlm's own names, tensors as they are
    for (const auto& p : m.named_parameters()) slots.push_back({p.key(), {p.value()}, false});
    return slots;
  }
  auto add = [&](const std::string& name, std::vector<Tensor> parts, bool transpose = false) {
    slots.push_back({"transformer." + name, std::move(parts), transpose});
  };
  add("wte.weight", {m.wte->weight});
  add("wpe.weight", {m.wpe->weight});
  for (size_t l = 0; l < m.blocks->size(); ++l) {
    auto b = m.blocks->ptr<BlockImpl>(l);
    const std::string h = fmt::format("h.{}.", l);
    add(h + "ln_1.weight", {b->ln_1->weight});
    add(h + "ln_1.bias", {b->ln_1->bias});
    const auto& a = b->attn;
    if (a->c_attn) {
      add(h + "attn.c_attn.weight", {a->c_attn->weight}, true);
      add(h + "attn.c_attn.bias", {a->c_attn->bias});
    } else {
      add(h + "attn.c_attn.weight", {a->q_proj->weight, a->k_proj->weight, a->v_proj->weight},
          true);
      add(h + "attn.c_attn.bias", {a->q_proj->bias, a->k_proj->bias, a->v_proj->bias});
    }
    add(h + "attn.c_proj.weight", {a->c_proj->weight}, true);
    add(h + "attn.c_proj.bias", {a->c_proj->bias});
    add(h + "ln_2.weight", {b->ln_2->weight});
    add(h + "ln_2.bias", {b->ln_2->bias});
    add(h + "mlp.c_fc.weight", {b->mlp->c_fc->weight}, true);
    add(h + "mlp.c_fc.bias", {b->mlp->c_fc->bias});
    add(h + "mlp.c_proj.weight", {b->mlp->c_proj->weight}, true);
    add(h + "mlp.c_proj.bias", {b->mlp->c_proj->bias});
  }
  add("ln_f.weight", {m.ln_f->weight});
  add("ln_f.bias", {m.ln_f->bias});
  return slots;
}

std::vector<int64_t> file_shape(const Slot& s) {
  std::vector<int64_t> shape = s.parts[0].sizes().vec();
  for (size_t i = 1; i < s.parts.size(); ++i) shape[0] += s.parts[i].size(0);
  if (s.transpose) std::swap(shape[0], shape[1]);
  return shape;
}

}  // namespace

NamedTensors export_state(const GPTImpl& model) {
  torch::NoGradGuard no_grad;
  NamedTensors out;
  for (const Slot& s : layout(model)) {
    Tensor t = s.parts.size() == 1 ? s.parts[0] : torch::cat(s.parts, 0);
    if (s.transpose) t = t.t();
    out.emplace_back(s.name, t.detach().contiguous());
  }
  return out;
}

nlohmann::json export_config(const ModelConfig& cfg) {
  if (!cfg.is_gpt2_architecture())
    return {{"architectures", {"ShardlmGPT"}},
            {"model_type", "shardlm"},
            {"shardlm_config", cfg.to_json()}};
  return {{"architectures", {"GPT2LMHeadModel"}},
          {"model_type", "gpt2"},
          {"vocab_size", cfg.vocab_size},
          {"n_positions", cfg.context_length},
          {"n_ctx", cfg.context_length},
          {"n_embd", cfg.d_model},
          {"n_layer", cfg.n_layer},
          {"n_head", cfg.n_head},
          {"n_inner", cfg.ffn_dim()},
          {"activation_function", "gelu_new"},  // HF's name for the tanh approximation
          {"layer_norm_epsilon", cfg.layernorm_eps},
          {"resid_pdrop", cfg.resid_dropout},
          {"embd_pdrop", cfg.embd_dropout},
          {"attn_pdrop", cfg.attn_dropout},
          {"initializer_range", cfg.init_std},
          {"scale_attn_weights", true},
          {"tie_word_embeddings", true},
          {"torch_dtype", "float32"},
          {"shardlm_config", cfg.to_json()}};
}

namespace {
ModelConfig import_config_checked(const nlohmann::json& j, const std::string& source) {
  SHARDLM_CHECK(j.is_object(), CheckpointError, "{}: expected a JSON object", source);
  if (j.contains("shardlm_config")) {
    ModelConfig c = ModelConfig::from_json(j.at("shardlm_config"));
    c.validate();
    return c;
  }
  SHARDLM_CHECK(j.value("model_type", "") == "gpt2", CheckpointError,
                "{}: neither a shardlm config (\"shardlm_config\") nor an HF GPT-2 config "
                "(model_type \"gpt2\")",
                source);
  ModelConfig c;
  try {
    auto num = [&](const char* key) {
      return core::json_int<int64_t, CheckpointError>(j.at(key), source + ": " + key);
    };
    c.vocab_size = num("vocab_size");
    c.context_length = num("n_positions");
    c.d_model = num("n_embd");
    c.n_layer = num("n_layer");
    c.n_head = num("n_head");
    c.d_ff = j.contains("n_inner") && !j.at("n_inner").is_null() ? num("n_inner") : 0;
    c.ff_mult = 4.0;
    const std::string act = j.value("activation_function", "gelu_new");
    SHARDLM_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast" ||
                      act == "gelu" || act == "relu" || act == "silu",
                  CheckpointError, "{}: activation_function \"{}\" is not supported", source, act);
    c.activation = act == "gelu"   ? "gelu"
                   : act == "relu" ? "relu"
                   : act == "silu" ? "silu"
                                   : "gelu_tanh";
    c.layernorm_eps = j.value("layer_norm_epsilon", 1e-5);
    c.resid_dropout = j.value("resid_pdrop", 0.0);
    c.embd_dropout = j.value("embd_pdrop", 0.0);
    c.attn_dropout = j.value("attn_pdrop", 0.0);
    c.init_std = j.value("initializer_range", 0.02);
  } catch (const nlohmann::json::exception& e) {
    SHARDLM_FAIL(CheckpointError, "{}: malformed HF GPT-2 config: {}", source, e.what());
  }
  c.positional = "learned";
  c.pre_norm = true;
  c.tied_embeddings = true;
  c.bias = true;
  c.scale_embeddings = false;
  c.validate();
  return c;
}
}  // namespace

ModelConfig import_config(const nlohmann::json& j, const std::string& source) {
  try {
    return import_config_checked(j, source);
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong type, anywhere
    SHARDLM_FAIL(CheckpointError, "{}: malformed config: {}", source, e.what());
  } catch (const core::ConfigError& e) {  // shardlm_config: an unknown key, a value out of range
    SHARDLM_FAIL(CheckpointError, "{}: shardlm_config: {}", source, e.what());
  }
}

void save_safetensors(const GPT& model, const ModelConfig& cfg, const std::string& dir) {
  const ModelConfig& m = model->config();
  const bool same =
      cfg.vocab_size == m.vocab_size && cfg.n_layer == m.n_layer && cfg.n_head == m.n_head &&
      cfg.d_model == m.d_model && cfg.ffn_dim() == m.ffn_dim() && cfg.positional == m.positional &&
      (cfg.positional != "learned" || cfg.context_length == m.context_length) &&
      cfg.tied_embeddings == m.tied_embeddings && cfg.bias == m.bias &&
      cfg.fused_qkv == m.fused_qkv && cfg.pre_norm == m.pre_norm && cfg.activation == m.activation;
  SHARDLM_CHECK(same, core::ModelError,
                "save_safetensors: the config {} does not describe the model {}",
                cfg.to_json().dump(), m.to_json().dump());
  std::error_code ec;
  fs::create_directories(dir, ec);
  SHARDLM_CHECK(!ec, CheckpointError, "{}: cannot create directory: {}", dir, ec.message());
  write_safetensors((fs::path(dir) / "model.safetensors").string(), export_state(*model),
                    {{"format", "pt"}, {"producer", "shardlm"}});
  core::write_file_atomic<CheckpointError>((fs::path(dir) / "config.json").string(),
                                           export_config(cfg).dump(2) + "\n");
}

void save_safetensors(const GPT& model, const std::string& dir) {
  save_safetensors(model, model->config(), dir);
}

GPT load_safetensors(const std::string& dir_or_file) {
  fs::path weights = dir_or_file;
  if (fs::is_directory(weights)) weights /= "model.safetensors";
  const fs::path cfg_path = weights.parent_path() / "config.json";
  std::ifstream cin(cfg_path);
  SHARDLM_CHECK(cin.good(), CheckpointError, "{}: cannot open (the config beside {})",
                cfg_path.string(), weights.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(cin);
  } catch (const nlohmann::json::exception& e) {
    SHARDLM_FAIL(CheckpointError, "{}: not valid JSON: {}", cfg_path.string(), e.what());
  }
  SHARDLM_CHECK(!j.contains("quantization"), CheckpointError,
                "{}: a quantised model (\"quantization\" block); load it with "
                "load::load_model or compress::load_quantized",
                cfg_path.string());
  ModelConfig cfg;
  try {
    cfg = import_config(j, cfg_path.string());
  } catch (const core::ConfigError& e) {
    SHARDLM_FAIL(CheckpointError, "{}: invalid model config: {}", cfg_path.string(), e.what());
  }
  SafetensorsFile file = read_safetensors(weights.string());
  const std::string& path = file.path;

  GPT model(cfg);
  torch::NoGradGuard no_grad;
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [n, t] : file.tensors) by_name[n] = &t;
  // HF GPT2Model files name tensors without the "transformer." prefix.
  const bool hf = cfg.is_gpt2_architecture();
  const bool bare = hf && !by_name.count("transformer.wte.weight") && by_name.count("wte.weight");
  std::set<std::string> used;
  for (const Slot& s : layout(*model)) {
    const std::string name = bare ? s.name.substr(std::string("transformer.").size()) : s.name;
    auto it = by_name.find(name);
    const auto want = file_shape(s);
    SHARDLM_CHECK(it != by_name.end(), CheckpointError,
                  "{}: tensor '{}' is missing (expected shape {})", path, name,
                  nlohmann::json(want).dump());
    const Tensor& t = *it->second;
    SHARDLM_CHECK(t.is_floating_point(), CheckpointError,
                  "{}: tensor '{}' has dtype {}, expected a floating type (F32, F16, BF16, F64)",
                  path, name, c10::toString(t.scalar_type()));
    SHARDLM_CHECK(t.sizes().vec() == want, CheckpointError,
                  "{}: tensor '{}' has shape {} but the config needs {}", path, name,
                  nlohmann::json(t.sizes().vec()).dump(), nlohmann::json(want).dump());
    Tensor src = s.transpose ? t.t() : t;
    int64_t row = 0;
    for (const Tensor& part : s.parts) {
      part.copy_(src.narrow(0, row, part.size(0)));
      row += part.size(0);
    }
    used.insert(name);
  }
  for (const auto& [n, t] : file.tensors) {
    if (used.count(n)) continue;
    // HF GPT-2 files may carry the causal-mask buffers and a tied lm_head copy.
    const bool hf_extra =
        hf && (n.find(".attn.bias") != std::string::npos ||
               n.find(".attn.masked_bias") != std::string::npos || n == "lm_head.weight");
    SHARDLM_CHECK(hf_extra, CheckpointError,
                  "{}: unexpected tensor '{}' (shape {}) that the config in {} has no place for",
                  path, n, nlohmann::json(t.sizes().vec()).dump(), cfg_path.string());
  }
  return model;
}

}  // namespace shardlm::model
