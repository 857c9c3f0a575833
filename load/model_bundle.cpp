// load_model and the tokenizer discovery rule (see model_bundle.h).
#include "load/model_bundle.h"

#include <filesystem>

#include <torch/torch.h>

#include "ckpt/checkpoint.h"
#include "compress/io.h"
#include "compress/quantize.h"
#include "core/error.h"
#include "model/config.h"
#include "model/safetensors.h"

namespace shardlm::load {

namespace fs = std::filesystem;
namespace mc = model::compress;

bool is_checkpoint(const std::string& path) {
  std::error_code ec;
  return fs::exists(fs::path(path) / "manifest.json", ec) ||
         fs::is_directory(fs::path(path) / "checkpoints", ec);
}

std::string checkpoint_dir(const std::string& path) {
  if (fs::exists(fs::path(path) / "manifest.json")) return path;
  auto found = ckpt::resolve_checkpoint(path, "latest");
  SHARDLM_CHECK(found, core::CheckpointError,
                "{}: no checkpoint (neither a step directory nor a run with one)", path);
  return *found;
}

model::GPT load_checkpoint_model(const std::string& step_or_run_dir) {
  const std::string dir = checkpoint_dir(step_or_run_dir);
  ckpt::CheckpointReader r(dir);
  r.verify();
  auto cfg = model::ModelConfig::from_json(r.manifest().at("state").at("model"));
  model::GPT gpt(cfg);
  auto params = ckpt::read_parameters(r);
  torch::NoGradGuard no_grad;
  for (auto& p : gpt->named_parameters()) {
    auto it = params.find(p.key());
    SHARDLM_CHECK(it != params.end(), core::CheckpointError, "{}: no parameter {}", dir, p.key());
    p.value().copy_(it->second.view(p.value().sizes()));
  }
  return gpt;
}

std::string find_tokenizer(const std::string& model_path) {
  std::error_code ec;
  fs::path p = fs::absolute(model_path, ec);
  if (!fs::is_directory(p, ec)) p = p.parent_path();
  for (int depth = 0; depth < 4 && !p.empty(); ++depth, p = p.parent_path()) {
    for (const char* name : {"tokenizer.json", "tokenizer.shardlm.json"})
      if (fs::is_regular_file(p / name, ec)) return (p / name).string();
    if (p == p.parent_path()) break;
  }
  return {};
}

torch::Device parse_device(const std::string& text, const std::string& key) {
  try {
    return torch::Device(text);
  } catch (const c10::Error&) {
    throw core::ConfigError("", key, text, "cpu, cuda or cuda:N");
  }
}

ModelBundle load_model(const std::string& path, const LoadOptions& options) {
  ModelBundle b;
  std::error_code ec;
  SHARDLM_CHECK(fs::exists(path, ec), core::CheckpointError, "{}: no such file or directory", path);
  if (is_checkpoint(path)) {
    b.source = checkpoint_dir(path);
    b.model = load_checkpoint_model(b.source);
    b.format = "checkpoint";
  } else if (mc::is_quantized_dir(path)) {
    mc::QuantizedModel qm = mc::load_quantized(path, options.dense ? "dequantized" : "");
    b.model = qm.model;
    b.format = "safetensors+" + qm.cfg.method;
    b.source = mc::model_weights_path(path).string();
  } else {
    const fs::path p(path);
    if (fs::is_directory(p)) {
      SHARDLM_CHECK(fs::exists(p / "model.safetensors"), core::CheckpointError,
                    "{}: a model directory needs model.safetensors and config.json (write them "
                    "with model::save_safetensors)",
                    path);
      b.source = (p / "model.safetensors").string();
    } else {
      SHARDLM_CHECK(p.extension() == ".safetensors", core::CheckpointError,
                    "{}: expected a .safetensors file, a model directory or a checkpoint", path);
      b.source = p.string();
    }
    b.format = "safetensors";
    b.model = model::load_safetensors(path);
  }
  b.model->to(options.device);
  b.model->eval();

  b.tokenizer_path = options.tokenizer.empty() ? find_tokenizer(path) : options.tokenizer;
  if (b.tokenizer_path.empty()) {
    SHARDLM_CHECK(!options.need_tokenizer, core::ConfigError,
                  "no tokenizer for {}: pass --tokenizer, or put tokenizer.json beside the model",
                  b.source);
    return b;
  }
  b.tokenizer = data::Tokenizer::load(b.tokenizer_path);
  const int64_t vocab = b.model->config().vocab_size;
  SHARDLM_CHECK(static_cast<int64_t>(b.tokenizer->vocab_size()) <= vocab, core::ConfigError,
                "tokenizer {} has {} tokens but the model {} only {} (vocab_size): not its "
                "tokenizer",
                b.tokenizer_path, b.tokenizer->vocab_size(), path, vocab);
  return b;
}

ModelBundle load_dense(const std::string& path) {
  LoadOptions o;
  o.dense = true;
  return load_model(path, o);
}

}  // namespace shardlm::load
