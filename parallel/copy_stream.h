// CopyStream: host<->device copies (and the collectives that read them) on a
// CUDA stream of their own, so that CPU offload and layer streaming overlap
// their transfers with the compute stream's kernels instead of queueing
// behind them (ShardedModel uses one per model).
//
// run(f, touched) calls f with the copy stream as the current stream, after
// the work the compute stream has been given so far (f may read what that
// work writes, and may use memory the caching allocator handed out on the
// compute stream). The device tensors in `touched` are recorded on the copy
// stream, so freeing them on the compute stream afterwards is safe. The
// returned Ticket's event marks the end of f's work: compute_waits() makes
// the compute stream wait for it (device side, the host goes on),
// host_waits() blocks the host (before the CPU reads a copied-down buffer).
//
// Host buffers must be pinned for the copies to be asynchronous (pageable
// ones still give correct, synchronous copies). Without SHARDLM_WITH_CUDA, or
// for a CPU device, run() simply calls f and the waits do nothing.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>

#include <torch/types.h>

namespace shardlm::parallel {

class CopyStream {
 public:
  struct Ticket;  // an event on the copy stream (copy_stream.cpp)
  using TicketPtr = std::shared_ptr<Ticket>;

  // `device`: the compute device (the stream is taken from LibTorch's pool on it).
  explicit CopyStream(torch::Device device);
  ~CopyStream();
  // Whether copies really run on a side stream (a CUDA device in a CUDA build).
  bool async() const { return async_; }

  TicketPtr run(const std::function<void()>& f, std::initializer_list<torch::Tensor> touched = {});
  // dst.copy_(src) on the copy stream (non-blocking where the memory allows).
  TicketPtr copy(torch::Tensor dst, const torch::Tensor& src);
  // The compute stream (the current stream of the calling thread) waits for `t`.
  void compute_waits(const TicketPtr& t) const;
  // The calling thread waits for `t`. Null tickets are done.
  static void host_waits(const TicketPtr& t);

 private:
  torch::Device device_;
  bool async_ = false;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardlm::parallel
