// FlatParams: a list of parameter tensors flattened into one contiguous fp32
// buffer, padded to a multiple of the world size so that rank r owns the
// equal slice shard_range(r). This is the layout ZeRO builds on: stage 1/2
// keep the whole buffer and step only the owned slice, stage 3 keeps only the
// slice and all-gathers the rest around each unit's forward and backward.
// views() gives the parameters back in their shapes, over any buffer of the
// padded size (parameters, gradients, a gathered copy).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "parallel/optimizer.h"
#include "parallel/param_rules.h"

namespace shardlm::parallel {

class FlatParams {
 public:
  struct Entry {
    std::string name;
    std::vector<int64_t> shape;
    int64_t offset = 0;  // in the flat buffer
    int64_t numel = 0;
    bool decay = true;
    bool embedding = false;
  };

  // Copies the values of `params` (any floating dtype and device) into a new
  // flat fp32 buffer on `device`. names: one per parameter, or empty ("p0", ...).
  FlatParams(const std::vector<torch::Tensor>& params, std::vector<std::string> names,
             int world_size, torch::Device device = torch::kCPU);
  // The module's parameters in named_parameters() order.
  static FlatParams from_module(const torch::nn::Module& module, int world_size,
                                torch::Device device = torch::kCPU);

  int world_size() const { return world_size_; }
  int64_t numel() const { return numel_; }          // sum of parameter sizes
  int64_t padded_numel() const { return padded_; }  // a multiple of world_size
  int64_t shard_numel() const { return padded_ / world_size_; }
  const std::vector<Entry>& entries() const { return entries_; }

  torch::Tensor& flat() { return flat_; }  // (padded,) fp32
  const torch::Tensor& flat() const { return flat_; }
  // [begin, end) of rank's slice in the flat buffer.
  std::pair<int64_t, int64_t> shard_range(int rank) const;
  // View of rank's slice of `buffer` (padded,), default the flat buffer.
  torch::Tensor shard(int rank) const { return shard(flat_, rank); }
  torch::Tensor shard(const torch::Tensor& buffer, int rank) const;

  // Views of `buffer` (padded,) in the parameters' shapes.
  std::vector<torch::Tensor> views(const torch::Tensor& buffer) const;
  std::vector<torch::Tensor> views() const { return views(flat_); }
  // Copies parameter values into the buffer / the buffer's values into them.
  void copy_from(const std::vector<torch::Tensor>& params);
  void copy_to(const std::vector<torch::Tensor>& params) const;

  // Segments of the flat range [begin, end), offsets relative to begin, for
  // Optimizer::set_segments. Padding is a segment named "<padding>" without decay.
  std::vector<ParamSegment> segments(int64_t begin, int64_t end) const;
  std::vector<ParamSegment> shard_segments(int rank) const;

 private:
  int world_size_;
  int64_t numel_ = 0, padded_ = 0;
  std::vector<Entry> entries_;
  torch::Tensor flat_;
};

}  // namespace shardlm::parallel
