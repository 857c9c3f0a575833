// Transfers on a side CUDA stream with events (see copy_stream.h).
#include "parallel/copy_stream.h"

#ifdef SHARDLM_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace shardlm::parallel {

#ifdef SHARDLM_WITH_CUDA
struct CopyStream::Ticket {
  at::cuda::CUDAEvent done;
};
struct CopyStream::Impl {
  c10::cuda::CUDAStream side;
};
#else
struct CopyStream::Ticket {};
struct CopyStream::Impl {};
#endif

CopyStream::CopyStream(torch::Device device) : device_(device) {
#ifdef SHARDLM_WITH_CUDA
  if (device.is_cuda()) {
    const c10::DeviceIndex index = device.has_index() ? device.index() : 0;
    device_ = torch::Device(torch::kCUDA, index);
    impl_ = std::make_unique<Impl>(Impl{c10::cuda::getStreamFromPool(false, index)});
    async_ = true;
  }
#endif
}

CopyStream::~CopyStream() = default;

CopyStream::TicketPtr CopyStream::run(const std::function<void()>& f,
                                      std::initializer_list<torch::Tensor> touched) {
  if (!async_) {
    f();
    return nullptr;
  }
#ifdef SHARDLM_WITH_CUDA
  c10::cuda::CUDAStream side = impl_->side;
  at::cuda::CUDAEvent ready;
  ready.record(c10::cuda::getCurrentCUDAStream(device_.index()));
  ready.block(side);
  {
    c10::cuda::CUDAStreamGuard guard(side);
    f();
  }
  for (const torch::Tensor& t : touched)
    if (t.defined() && t.is_cuda() && t.storage().nbytes() > 0)
      c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), side);
  auto ticket = std::make_shared<Ticket>();
  ticket->done.record(side);
  return ticket;
#else
  return nullptr;
#endif
}

CopyStream::TicketPtr CopyStream::copy(torch::Tensor dst, const torch::Tensor& src) {
  return run([&] { dst.copy_(src, /*non_blocking=*/async_); }, {dst, src});
}

void CopyStream::compute_waits(const TicketPtr& t) const {
  if (!t) return;
#ifdef SHARDLM_WITH_CUDA
  t->done.block(c10::cuda::getCurrentCUDAStream(device_.index()));
#endif
}

void CopyStream::host_waits(const TicketPtr& t) {
  if (!t) return;
#ifdef SHARDLM_WITH_CUDA
  t->done.synchronize();
#endif
}

}  // namespace shardlm::parallel
