// safetensors: read and write the format, and save/load a GPT with it.
//
// The format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON {"name": {"dtype": "F32", "shape": [..],
// "data_offsets": [begin, end]}, "__metadata__": {..}}, then the raw little-endian
// tensor bytes, offsets relative to the end of the header. No Debian package offers a
// C++ reader, so this is one, with errors that name the file and the tensor.
//
// A GPT with GPT-2's architecture (ModelConfig::is_gpt2_architecture) is saved in
// Hugging Face's GPT-2 layout (transformer.h.N.attn.c_attn.weight stored (in, out),
// as HF's Conv1D does) with an HF GPT-2 config.json, so transformers can load it;
// every other configuration uses shardlm's own parameter names and config.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"
#include "model/gpt.h"

namespace shardlm::model {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

struct SafetensorsFile {
  std::string path;
  NamedTensors tensors;  // in data order
  std::map<std::string, std::string> metadata;
  bool contains(const std::string& name) const;
  // The tensor `name`; throws CheckpointError naming the file when absent.
  const torch::Tensor& at(const std::string& name) const;
};

// Writes `tensors` (moved to CPU, made contiguous) to `path` atomically (a
// temporary file renamed into place). Supported dtypes: F64 F32 F16 BF16 I64 I32
// I16 I8 U8 BOOL. Throws CheckpointError when the file cannot be written.
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// Reads every tensor to CPU. Throws CheckpointError naming the file (and the
// tensor) on a bad header, unknown dtype, overlapping or out-of-range offsets, a
// size that disagrees with the shape, or a truncated file.
SafetensorsFile read_safetensors(const std::string& path);

// The model's tensors as they appear in the file: HF GPT-2 names (and (in, out)
// linear weights) for a GPT-2 architecture, shardlm's parameter names otherwise.
NamedTensors export_state(const GPTImpl& model);
// HF GPT-2 config.json for a GPT-2 architecture (with the full shardlm config under
// "shardlm_config"), else {"model_type": "shardlm", "shardlm_config": {...}}.
nlohmann::json export_config(const ModelConfig& cfg);
// Inverse of export_config (also reads a plain HF GPT-2 config.json).
ModelConfig import_config(const nlohmann::json& j, const std::string& source = "config.json");

// Writes dir/model.safetensors and dir/config.json (creating dir). `cfg` must
// describe `model` (same shapes); it may differ in run-time fields (dropout, RoPE
// scaling). Throws ModelError on a mismatch, CheckpointError on I/O failure.
void save_safetensors(const GPT& model, const ModelConfig& cfg, const std::string& dir);
void save_safetensors(const GPT& model, const std::string& dir);
// Loads a directory (model.safetensors + config.json) or a .safetensors file (its
// config.json beside it). Reads shardlm's layout, HF GPT2LMHeadModel files and HF
// GPT2Model files (names without "transformer."). Floating tensors are converted to
// fp32; a missing, unexpected, wrongly shaped or non-floating tensor throws
// CheckpointError naming the file and the tensor.
GPT load_safetensors(const std::string& dir_or_file);

}  // namespace shardlm::model
