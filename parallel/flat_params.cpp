// FlatParams: flatten, pad, shard, view (see flat_params.h).
#include "parallel/flat_params.h"

#include <algorithm>

#include "core/error.h"

namespace shardlm::parallel {

FlatParams::FlatParams(const std::vector<torch::Tensor>& params, std::vector<std::string> names,
                       int world_size, torch::Device device)
    : world_size_(world_size) {
  SHARDLM_CHECK(world_size >= 1, core::ModelError, "FlatParams: world size {} < 1", world_size);
  SHARDLM_CHECK(names.empty() || names.size() == params.size(), core::ModelError,
                "FlatParams: {} names for {} parameters", names.size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor& p = params[i];
    SHARDLM_CHECK(p.defined() && p.is_floating_point(), core::ModelError,
                  "FlatParams: parameter {} is not a floating-point tensor", i);
    Entry e;
    e.name = names.empty() ? "p" + std::to_string(i) : names[i];
    e.shape = p.sizes().vec();
    e.offset = numel_;
    e.numel = p.numel();
    e.decay = default_decay(e.name, e.shape.size());
    e.embedding = looks_like_embedding(e.name);
    numel_ += e.numel;
    entries_.push_back(std::move(e));
  }
  padded_ = (numel_ + world_size - 1) / world_size * world_size;
  if (padded_ == 0) padded_ = world_size;  // every rank owns at least one (padding) element
  flat_ = torch::zeros({padded_}, torch::TensorOptions().dtype(torch::kFloat).device(device));
  copy_from(params);
}

FlatParams FlatParams::from_module(const torch::nn::Module& module, int world_size,
                                   torch::Device device) {
  std::vector<torch::Tensor> params;
  std::vector<std::string> names;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    names.push_back(item.key());
    params.push_back(item.value());
  }
  return FlatParams(params, std::move(names), world_size, device);
}

std::pair<int64_t, int64_t> FlatParams::shard_range(int rank) const {
  SHARDLM_CHECK(rank >= 0 && rank < world_size_, core::ModelError,
                "FlatParams: rank {} outside a world of {}", rank, world_size_);
  const int64_t s = shard_numel();
  return {rank * s, (rank + 1) * s};
}

torch::Tensor FlatParams::shard(const torch::Tensor& buffer, int rank) const {
  SHARDLM_CHECK(buffer.dim() == 1 && buffer.numel() == padded_, core::ModelError,
                "FlatParams: buffer of {} elements, expected {}", buffer.numel(), padded_);
  auto r = shard_range(rank);
  return buffer.narrow(0, r.first, r.second - r.first);
}

std::vector<torch::Tensor> FlatParams::views(const torch::Tensor& buffer) const {
  SHARDLM_CHECK(buffer.dim() == 1 && buffer.numel() == padded_, core::ModelError,
                "FlatParams: buffer of {} elements, expected {}", buffer.numel(), padded_);
  std::vector<torch::Tensor> out;
  out.reserve(entries_.size());
  for (const Entry& e : entries_) out.push_back(buffer.narrow(0, e.offset, e.numel).view(e.shape));
  return out;
}

void FlatParams::copy_from(const std::vector<torch::Tensor>& params) {
  SHARDLM_CHECK(params.size() == entries_.size(), core::ModelError,
                "FlatParams: {} tensors for {} parameters", params.size(), entries_.size());
  torch::NoGradGuard no_grad;
  auto v = views();
  for (size_t i = 0; i < params.size(); ++i) {
    SHARDLM_CHECK(params[i].sizes() == v[i].sizes(), core::ModelError,
                  "FlatParams: '{}' has shape {}, expected {}", entries_[i].name,
                  c10::str(params[i].sizes()), c10::str(v[i].sizes()));
    v[i].copy_(params[i]);
  }
}

void FlatParams::copy_to(const std::vector<torch::Tensor>& params) const {
  SHARDLM_CHECK(params.size() == entries_.size(), core::ModelError,
                "FlatParams: {} tensors for {} parameters", params.size(), entries_.size());
  torch::NoGradGuard no_grad;
  auto v = views();
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(v[i]);
}

std::vector<ParamSegment> FlatParams::segments(int64_t begin, int64_t end) const {
  SHARDLM_CHECK(0 <= begin && begin <= end && end <= padded_, core::ModelError,
                "FlatParams: range [{}, {}) outside [0, {})", begin, end, padded_);
  std::vector<ParamSegment> out;
  for (const Entry& e : entries_) {
    const int64_t b = std::max(begin, e.offset), x = std::min(end, e.offset + e.numel);
    if (b >= x) continue;
    out.push_back(ParamSegment{b - begin, x - begin, e.decay, false, e.numel, e.name, e.embedding});
  }
  const int64_t pad_b = std::max(begin, numel_);
  if (pad_b < end)
    out.push_back(ParamSegment{pad_b - begin, end - begin, false, true, padded_ - numel_,
                               "<padding>", false});
  return out;
}

std::vector<ParamSegment> FlatParams::shard_segments(int rank) const {
  auto r = shard_range(rank);
  return segments(r.first, r.second);
}

}  // namespace shardlm::parallel
