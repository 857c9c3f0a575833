// ProcessGroup's shared pieces: piece sizes and argument checks.
#include "parallel/process_group.h"

#include <algorithm>
#include <cstring>

#include <torch/torch.h>

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

ProcessGroup::ProcessGroup(int rank, int size, ProcessGroupOptions options, torch::Device device)
    : rank_(rank), size_(size), options_(std::move(options)), device_(device) {
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

// ---- core::Comm -------------------------------------------------------------------------

namespace {
ReduceOp to_reduce_op(core::Reduce op) {
  switch (op) {
    case core::Reduce::kSum:
      return ReduceOp::kSum;
    case core::Reduce::kMax:
      return ReduceOp::kMax;
    case core::Reduce::kMin:
      return ReduceOp::kMin;
  }
  return ReduceOp::kSum;
}

// A host vector as a tensor on `device`, and back.
template <class T>
torch::Tensor to_device(const std::vector<T>& v, torch::ScalarType dtype, torch::Device device) {
  auto host = torch::from_blob(const_cast<T*>(v.data()), {static_cast<int64_t>(v.size())}, dtype);
  return host.to(device, /*non_blocking=*/false, /*copy=*/true);
}
template <class T>
void to_host(const torch::Tensor& t, std::vector<T>& v) {
  auto host = t.to(torch::kCPU).contiguous();
  std::memcpy(v.data(), host.data_ptr(), v.size() * sizeof(T));
}
}  // namespace

void ProcessGroup::broadcast_bytes(std::string& bytes, int root) {
  if (size_ == 1) return;
  std::vector<int64_t> n{static_cast<int64_t>(bytes.size())};
  auto len = to_device(n, torch::kLong, device_);
  broadcast(len, root);
  to_host(len, n);
  SHARDLM_CHECK(n[0] >= 0, core::MpiError, "broadcast_bytes: a negative length from rank {}", root);
  bytes.resize(static_cast<size_t>(n[0]));
  if (n[0] == 0) return;
  std::vector<uint8_t> buf(bytes.begin(), bytes.end());
  auto t = to_device(buf, torch::kByte, device_);
  broadcast(t, root);
  to_host(t, buf);
  bytes.assign(buf.begin(), buf.end());
}

void ProcessGroup::all_reduce_i64(std::vector<int64_t>& values, core::Reduce op) {
  if (size_ == 1 || values.empty()) return;
  auto t = to_device(values, torch::kLong, device_);
  all_reduce(t, to_reduce_op(op));
  to_host(t, values);
}

void ProcessGroup::all_reduce_f64(std::vector<double>& values, core::Reduce op) {
  if (size_ == 1 || values.empty()) return;
  auto t = to_device(values, torch::kDouble, device_);
  all_reduce(t, to_reduce_op(op));
  to_host(t, values);
}

std::vector<std::string> ProcessGroup::gather_bytes(const std::string& mine, int root) {
  if (size_ == 1) return {mine};
  // Lengths first, then every rank's bytes padded to the longest (all_gather
  // needs equal pieces); only `root` keeps the result.
  std::vector<int64_t> lens(static_cast<size_t>(size_), 0);
  lens[static_cast<size_t>(rank_)] = static_cast<int64_t>(mine.size());
  all_reduce_i64(lens, core::Reduce::kSum);
  int64_t longest = std::max<int64_t>(1, *std::max_element(lens.begin(), lens.end()));
  std::vector<uint8_t> piece(static_cast<size_t>(longest), 0);
  std::copy(mine.begin(), mine.end(), piece.begin());
  auto in = to_device(piece, torch::kByte, device_);
  auto out = torch::empty({longest * size_}, in.options());
  all_gather(out, in);
  if (rank_ != root) return {};
  std::vector<uint8_t> all(static_cast<size_t>(longest * size_));
  to_host(out, all);
  std::vector<std::string> result;
  for (int r = 0; r < size_; ++r) {
    auto b = all.begin() + static_cast<std::ptrdiff_t>(r * longest);
    result.emplace_back(b, b + lens[static_cast<size_t>(r)]);
  }
  return result;
}

}  // namespace shardlm::parallel
