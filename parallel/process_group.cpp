// ProcessGroup's shared pieces: piece sizes and argument checks.
#include "parallel/process_group.h"

#include "core/error.h"

namespace shardlm::parallel {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kAvg:
      return "avg";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kMin:
      return "min";
  }
  return "?";
}

ProcessGroup::ProcessGroup(int rank, int size, ProcessGroupOptions options)
    : rank_(rank), size_(size), options_(std::move(options)) {
  SHARDLM_CHECK(size_ >= 1 && rank_ >= 0 && rank_ < size_, core::MpiError,
                "process group '{}': rank {} outside a world of {}", options_.name, rank_, size_);
  SHARDLM_CHECK(options_.timeout.count() > 0, core::MpiError,
                "process group '{}': timeout must be positive (got {} ms)", options_.name,
                options_.timeout.count());
}

std::vector<int64_t> split_sizes(int64_t n, int parts) {
  std::vector<int64_t> out(static_cast<size_t>(parts), n / parts);
  for (int64_t i = 0; i < n % parts; ++i) out[static_cast<size_t>(i)] += 1;
  return out;
}

std::vector<int64_t> split_offsets(int64_t n, int parts) {
  std::vector<int64_t> sizes = split_sizes(n, parts);
  std::vector<int64_t> off(static_cast<size_t>(parts) + 1, 0);
  for (int i = 0; i < parts; ++i) off[i + 1] = off[i] + sizes[i];
  return off;
}

std::vector<int64_t> ProcessGroup::check_split(const char* what, const torch::Tensor& whole,
                                               const torch::Tensor& piece) const {
  SHARDLM_CHECK(whole.scalar_type() == piece.scalar_type(), core::MpiError,
                "{}: the flat tensor is {} but this rank's piece is {}", what,
                c10::toString(whole.scalar_type()), c10::toString(piece.scalar_type()));
  std::vector<int64_t> sizes = split_sizes(whole.numel(), size_);
  SHARDLM_CHECK(piece.numel() == sizes[rank_], core::MpiError,
                "{}: rank {} piece has {} elements; a flat tensor of {} split over {} ranks "
                "gives it {}",
                what, rank_, piece.numel(), whole.numel(), size_, sizes[rank_]);
  return sizes;
}

}  // namespace shardlm::parallel
