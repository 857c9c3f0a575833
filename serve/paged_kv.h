// PagedKV: the tensors behind a BlockPool, and one model step over them. Keys
// and values of every layer live in a pool of num_blocks * block_size slots
// (slot = block * block_size + offset); a sequence's block table says which
// slots hold its tokens, so sequences of any lengths share one bounded buffer
// and a cached prefix block is read by every sequence that holds it, never
// copied. step() runs the model once over the tokens of a StepPlan packed into
// one row (B = 1, T = tokens of every chunk), through model::AttentionBackend:
// each layer writes the new keys and values into their slots and attends per
// sequence (decoding sequences together, one query each; prefill chunks one by
// one with a causal mask over the cached keys and their own).
//
//   PagedKV kv(model->config(), pool.num_blocks(), pool.block_size(), device, torch::kFloat);
//   torch::Tensor logits = kv.step(model, inputs);  // (S, V) fp32: one row per sampling chunk
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "model/gpt.h"

namespace shardlm::serve {

// One chunk of a step: tokens[start, start + count) of a sequence whose block
// table covers them (positions are start, start + 1, ...).
struct ChunkInput {
  const int64_t* tokens = nullptr;  // the sequence's tokens (at least start + count)
  int64_t start = 0, count = 0;
  const std::vector<int>* blocks = nullptr;
  bool sample = false;  // its last token's logits are returned
};

class PagedKV {
 public:
  PagedKV(const model::ModelConfig& mc, int num_blocks, int block_size, torch::Device device,
          torch::ScalarType dtype);
  // Bytes of the key and value buffers (every layer).
  int64_t bytes() const;
  // Bytes one block takes (keys and values of every layer).
  static int64_t block_bytes(const model::ModelConfig& mc, int block_size, torch::ScalarType dtype);
  // Runs `model` over the chunks (non-empty; every block table already covers
  // its chunk) and returns the next-token logits (S, V) fp32 of the chunks with
  // sample = true, in their order (S may be 0).
  torch::Tensor step(model::GPT& model, const std::vector<ChunkInput>& chunks);

 private:
  int block_size_;
  std::vector<torch::Tensor> k_, v_;  // per layer (num_blocks * block_size, H, D)
};

}  // namespace shardlm::serve
