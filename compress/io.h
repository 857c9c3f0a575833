// Small file helpers shared by the compression tools: where a model directory
// keeps its config and weights, reading config.json, writing a model directory
// (weights + config, each atomically) and measuring what a model takes on disk.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "model/safetensors.h"

namespace shardlm::model::compress {

// dir/model.safetensors for a directory, the path itself for a .safetensors file.
std::filesystem::path model_weights_path(const std::string& dir_or_file);
// config.json beside the weights.
std::filesystem::path model_config_path(const std::string& dir_or_file);
// Parses a JSON file; throws CheckpointError naming the file when it cannot.
nlohmann::json read_json(const std::string& path);
// Writes dir/model.safetensors and dir/config.json (creating dir; each file
// written to a temporary name and renamed into place). Throws CheckpointError.
void write_model_dir(const std::string& dir, const NamedTensors& tensors,
                     const nlohmann::json& config,
                     const std::map<std::string, std::string>& metadata = {});
// The layer of a block parameter: "blocks.3.attn.c_attn.weight" -> 3; -1 for others.
int64_t layer_index(const std::string& parameter_name);
// A new GPT built from `cfg` (validated) holding every parameter of `model` by name
// (the initialisation is overwritten). Shapes must agree: ModelError otherwise.
GPT copy_gpt(const GPT& model, const ModelConfig& cfg);
GPT copy_gpt(const GPT& model);
// Bytes of the weights file of a model directory or .safetensors file (0 when absent).
int64_t weights_file_bytes(const std::string& dir_or_file);

}  // namespace shardlm::model::compress
