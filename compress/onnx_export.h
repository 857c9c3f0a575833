// ONNX export of a GPT's forward pass: input_ids (B, T) int64 with dynamic B and
// T -> logits (B, T, V) float32, written as an ONNX ModelProto (opset 17) with
// standard operators only: Gather, MatMul, Add, Mul, LayerNormalization,
// Reshape, Transpose, Softmax, Shape, Slice, Concat, Tanh / Erf / Relu / Sigmoid.
// LibTorch's C++ API has no ONNX exporter, so the graph is built node by node
// from the module's weights (docs/compression.md lists it). Weights are stored
// as initializers (Linear weights transposed to (in, out), so MatMul needs no
// Transpose; the tied output projection shares wte through one Transpose).
//
// Supported: learned, sinusoidal and rotary positions (with linear / NTK scaling;
// the tables are initializers of context_length (x scaling factor) rows, which
// bounds T), every activation, pre- and post-LN, fused or separate QKV, with or
// without biases, tied or untied head, scaled embeddings. Not yet: padding masks
// and the KV cache (the graph is the full causal forward).
#pragma once

#include <string>

#include "model/gpt.h"

namespace shardlm::model::compress {

struct OnnxExportOptions {
  int64_t opset = 17;  // LayerNormalization needs >= 17
  std::string producer = "shardlm";
};

// Writes `model`'s forward graph to `path` (atomically). Throws ModelError for an
// opset below 17 or weights that are not resident, CheckpointError when the file
// cannot be written, NotCompiled when this build has no libonnx-dev.
void export_onnx(const GPT& model, const std::string& path, const OnnxExportOptions& opts = {});
// Whether this build can export ONNX.
bool onnx_export_available();

}  // namespace shardlm::model::compress
