// Helpers shared by the model tests.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>

namespace shardlm::model::test_util {

// max |a - b| / max |b|: the relative error of a whole tensor (computed in double).
inline double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max() /
          b.to(torch::kDouble).abs().max().clamp_min(1e-30))
      .item<double>();
}

// The message of the exception `f` throws, or "" when it does not throw.
inline std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace shardlm::model::test_util
