// File helpers of the compression tools (io.h).
#include "compress/io.h"

#include <fstream>

#include "core/error.h"
#include "core/fs.h"

namespace shardlm::model::compress {

namespace fs = std::filesystem;
using core::CheckpointError;

fs::path model_weights_path(const std::string& dir_or_file) {
  fs::path p(dir_or_file);
  return fs::is_directory(p) ? p / "model.safetensors" : p;
}

fs::path model_config_path(const std::string& dir_or_file) {
  fs::path dir = model_weights_path(dir_or_file).parent_path();
  return (dir.empty() ? fs::path(".") : dir) / "config.json";
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  SHARDLM_CHECK(in.good(), CheckpointError, "{}: cannot open", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    SHARDLM_FAIL(CheckpointError, "{}: not valid JSON: {}", path, e.what());
  }
}

void write_model_dir(const std::string& dir, const NamedTensors& tensors,
                     const nlohmann::json& config,
                     const std::map<std::string, std::string>& metadata) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  SHARDLM_CHECK(!ec, CheckpointError, "{}: cannot create directory: {}", dir, ec.message());
  std::map<std::string, std::string> meta = metadata;
  meta.emplace("format", "pt");
  meta.emplace("producer", "shardlm");
  write_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, meta);
  core::write_file_atomic<CheckpointError>((fs::path(dir) / "config.json").string(),
                                           config.dump(2) + "\n");
}

int64_t layer_index(const std::string& name) {
  if (name.rfind("blocks.", 0) != 0) return -1;
  return std::stoll(name.substr(7, name.find('.', 7) - 7));
}

GPT copy_gpt(const GPT& model, const ModelConfig& cfg) {
  GPT copy(cfg);
  torch::NoGradGuard no_grad;
  auto src = model->named_parameters();
  for (auto& p : copy->named_parameters()) {
    const torch::Tensor* from = src.find(p.key());
    SHARDLM_CHECK(from && from->sizes() == p.value().sizes(), core::ModelError,
                  "copy_gpt: parameter '{}' {} has no counterpart of that shape", p.key(),
                  c10::str(p.value().sizes()));
    p.value().copy_(*from);
  }
  copy->to(src.size() ? src[0].value().device() : torch::kCPU);
  return copy;
}

GPT copy_gpt(const GPT& model) {
  return copy_gpt(model, model->config());
}

int64_t weights_file_bytes(const std::string& dir_or_file) {
  std::error_code ec;
  auto n = fs::file_size(model_weights_path(dir_or_file), ec);
  return ec ? 0 : static_cast<int64_t>(n);
}

}  // namespace shardlm::model::compress
