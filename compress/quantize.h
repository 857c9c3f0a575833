// Weight-only quantisation of a GPT: INT8 per output channel and INT4 per group
// of input columns (symmetric, or asymmetric with a zero point), two INT4 codes
// packed per byte; saving and loading such a model as safetensors; and running
// it, either dequantised once at load or dequantised block by block just before
// each block runs (int weights resident, fp32 only for one block at a time).
//
// The formulas (docs/compression.md):
//   int8, row r:           s_r = max_j |w_rj| / 127,  q = clamp(round(w / s_r), -127, 127)
//   int4 sym, group g:     s_g = max |w| / 7,         q = clamp(round(w / s_g), -8, 7) + 8
//   int4 asym, group g:    s_g = (max(w,0) - min(w,0)) / 15,  z_g = round(-min(w,0) / s_g),
//                          q = clamp(round(w / s_g) + z_g, 0, 15)
//   dequantised:           w' = s (q - z)   (z = 0 for int8, 8 for symmetric int4)
// so every element satisfies |w - w'| <= s / 2 (the tests assert it). Zero is
// exactly representable in every scheme, so pruned weights stay zero.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "model/generate.h"
#include "model/gpt.h"

namespace shardlm::model::compress {

// ---- configuration ---------------------------------------------------------------------

// How a loaded quantised model runs.
//   "dequantized": fp32 weights rebuilt once at load: fp32 speed, the file (not
//                  the memory) is smaller.
//   "on_the_fly":  int8/int4 weights stay resident; each block's weights are
//                  dequantised just before it runs and released after it.
struct QuantConfig {
  std::string method = "int8";          // "int8" (per output channel) | "int4" (per group)
  int64_t group_size = 64;              // int4: 32, 64 or 128 input columns per scale
  bool symmetric = true;                // int4: false = asymmetric (zero point per group)
  bool embeddings = false;              // also int8 the token / position embeddings (and lm_head)
  std::string runtime = "dequantized";  // "dequantized" | "on_the_fly" (see above)

  // Reads the [quantize] section.
  static QuantConfig from(const core::ConfigSection& s);
  // Throws ConfigError naming the wrong field.
  void validate() const;
  nlohmann::json to_json() const;
  static QuantConfig from_json(const nlohmann::json& j);
};

// ---- one quantised matrix ---------------------------------------------------------------

struct QuantizedTensor {
  std::string scheme;      // "int8" | "int4" | "int4_asym"
  torch::Tensor q;         // int8 (out, in) | uint8 (out, in / 2): two 4-bit codes per byte
  torch::Tensor scale;     // fp32 (out) for int8 | (out, in / group) for int4
  torch::Tensor zero;      // uint8 (out, in / group) for int4_asym, else undefined
  int64_t group_size = 0;  // int4 only
  int64_t rows = 0, cols = 0;

  // fp32 (rows, cols).
  torch::Tensor dequantize() const;
  // Bytes held by q, scale and zero.
  int64_t nbytes() const;
};

// w (out, in) floating -> int8 per output row. Throws ModelError unless w is 2-D.
QuantizedTensor quantize_int8(const torch::Tensor& w);
// w (out, in) -> int4 in groups of `group_size` columns; `in` must be a multiple
// of group_size (ModelError otherwise).
QuantizedTensor quantize_int4(const torch::Tensor& w, int64_t group_size, bool symmetric);

// codes (..., 2n) uint8 in [0, 15] -> (..., n) uint8: element 2i in the low nibble,
// 2i + 1 in the high nibble. Throws ModelError on an odd last dim or a code > 15.
torch::Tensor pack_int4(const torch::Tensor& codes);
// (..., n) uint8 -> (..., 2n) uint8 in [0, 15]; the exact inverse of pack_int4.
torch::Tensor unpack_int4(const torch::Tensor& packed);

// ---- a quantised model ---------------------------------------------------------------------

// Every Linear weight inside the blocks (and, with cfg.embeddings, wte / wpe /
// lm_head) quantised; all other parameters (biases, norms) stay fp32.
struct QuantizedModel {
  GPT model{nullptr};  // runs the model: fp32 weights until install_runtime replaces them
  QuantConfig cfg;
  std::map<std::string, QuantizedTensor> weights;  // parameter name -> quantised form

  // Bytes of the quantised weights plus every fp32 parameter left unquantised.
  int64_t nbytes() const;
};

// Quantises a copy of `model`'s weights (`model` itself is not changed); qm.model
// keeps the fp32 weights until install_runtime(qm, ...) is called.
QuantizedModel quantize(const GPT& model, const QuantConfig& cfg);

// Writes dir/model.safetensors (for each quantised weight NAME: NAME.qweight
// I8/U8, NAME.scale F32, NAME.zero U8; every other parameter F32 under its own
// name) and dir/config.json ({"model_type": "shardlm", "shardlm_config": ...,
// "quantization": cfg.to_json()}). Throws CheckpointError on I/O failure.
void save_quantized(const QuantizedModel& qm, const std::string& dir);
// Whether dir (or a .safetensors file's directory) holds a quantised model:
// its config.json has a "quantization" block.
bool is_quantized_dir(const std::string& dir_or_file);
// Loads what save_quantized wrote, runnable as configured by `runtime` ("" = the
// runtime stored in config.json). Throws CheckpointError naming the file and
// tensor when something is missing or has the wrong shape or dtype.
QuantizedModel load_quantized(const std::string& dir_or_file, const std::string& runtime = "");

// Makes qm.model run from the quantised weights: "dequantized" writes w' into the
// fp32 parameters; "on_the_fly" frees the fp32 block weights and installs
// GPT::default_block_runner to dequantise each block before it runs (thread-safe).
void install_runtime(QuantizedModel& qm, const std::string& runtime);

}  // namespace shardlm::model::compress
