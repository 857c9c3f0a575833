/// @file
/// Loading a model and its tokenizer for use (generate, serve, eval, compress,
/// export): the one place that knows every format a model comes in and where
/// its tokenizer lives.
///
///   load::ModelBundle b = load::load_model("runs/demo");        // newest checkpoint
///   load::ModelBundle q = load::load_model("out/int8", {.device = torch::kCUDA});
///   auto ids = b.tokenizer->encode("Hello");  b.model->forward(...)
///
/// Formats, tried in this order:
///   - a training checkpoint: a step directory (manifest.json) or a run
///     directory (checkpoints/: its newest complete step), any world size;
///   - a quantised model directory (compress quantize: INT8/INT4);
///   - a .safetensors file (config.json beside it) or a model directory
///     (model.safetensors + config.json).
/// The tokenizer: LoadOptions::tokenizer when given, else find_tokenizer().
#pragma once

#include <optional>
#include <string>

#include <torch/types.h>

#include "data/tokenizer.h"
#include "model/gpt.h"

namespace shardlm::load {

/// How load_model loads.
struct LoadOptions {
  torch::Device device = torch::kCPU;  ///< where the model goes
  std::string tokenizer;               ///< a tokenizer file; "" = find_tokenizer(path)
  bool need_tokenizer = false;         ///< true: no tokenizer found is a ConfigError (commands)
  /// Quantised models: keep the fp32 weights resident (pruning, distillation
  /// and export need them), whatever runtime the model's config.json names.
  bool dense = false;
};

/// A model ready to run, with its tokenizer and where both came from.
struct ModelBundle {
  model::GPT model{nullptr};                 ///< on options.device, in eval mode
  std::optional<data::Tokenizer> tokenizer;  ///< absent when none was found (need_tokenizer false)
  std::string format;          ///< "checkpoint", "safetensors", "safetensors+int8", ...
  std::string source;          ///< the file or step directory the weights came from
  std::string tokenizer_path;  ///< "" when none
};

/// Throws CheckpointError naming the path when nothing loadable is there, and
/// ConfigError when no tokenizer is found (need_tokenizer) or the tokenizer has
/// more tokens than the model's vocabulary (not its tokenizer).
ModelBundle load_model(const std::string& path, const LoadOptions& options = {});

/// load_model with the fp32 weights resident and the tokenizer optional: what
/// pruning, distillation, quantisation and export start from.
ModelBundle load_dense(const std::string& path);

/// The one tokenizer discovery rule: the first tokenizer.json (or
/// tokenizer.shardlm.json) in the model's folder (a file's folder) or one of
/// its three parents: a step directory, checkpoints/, the run directory, the
/// folder of runs. "" when there is none.
std::string find_tokenizer(const std::string& model_path);

/// The model of a training checkpoint (a step or run directory), whole, on the
/// CPU, verified against the checkpoint's checksums.
model::GPT load_checkpoint_model(const std::string& step_or_run_dir);
/// Whether `path` is a training checkpoint (a step or a run directory).
bool is_checkpoint(const std::string& path);
/// The step directory `path` names: itself, or a run directory's newest.
std::string checkpoint_dir(const std::string& path);

/// "cpu", "cuda", "cuda:N" as a torch::Device; ConfigError naming `key` otherwise.
torch::Device parse_device(const std::string& text, const std::string& key = "--device");

}  // namespace shardlm::load
