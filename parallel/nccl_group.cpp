// NcclGroup (see nccl_group.h). Everything but the NotCompiled stubs needs
// SHARDLM_WITH_CUDA.
#include "parallel/nccl_group.h"

#include "core/error.h"

#ifdef SHARDLM_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/cuda_check.h"
#include "core/env.h"
#include "core/mpi_check.h"
#include "parallel/watchdog.h"
#endif

namespace shardlm::parallel {

bool NcclGroup::compiled() {
#ifdef SHARDLM_WITH_CUDA
  return true;
#else
  return false;
#endif
}

#ifndef SHARDLM_WITH_CUDA

// ---- stubs without CUDA --------------------------------------------------------------

struct NcclGroup::Impl {};

std::shared_ptr<NcclGroup> NcclGroup::create(MPI_Comm, ProcessGroupOptions, int) {
  SHARDLM_FAIL(core::NotCompiled,
               "NcclGroup: this build has no CUDA/NCCL (SHARDLM_WITH_CUDA is off); use MpiGroup "
               "or rebuild against a CUDA LibTorch");
}
NcclGroup::NcclGroup(int rank, int size, ProcessGroupOptions options, int device)
    : ProcessGroup(rank, size, std::move(options)), index_(device) {}
NcclGroup::~NcclGroup() = default;
#define SHARDLM_NCCL_STUB SHARDLM_FAIL(core::NotCompiled, "NcclGroup: this build has no CUDA/NCCL")
WorkPtr NcclGroup::all_reduce_async(torch::Tensor, ReduceOp, const CollectiveOptions&) {
  SHARDLM_NCCL_STUB;
}
WorkPtr NcclGroup::reduce_scatter_async(torch::Tensor, torch::Tensor, ReduceOp,
                                        const CollectiveOptions&) {
  SHARDLM_NCCL_STUB;
}
WorkPtr NcclGroup::all_gather_async(torch::Tensor, torch::Tensor, const CollectiveOptions&) {
  SHARDLM_NCCL_STUB;
}
WorkPtr NcclGroup::broadcast_async(torch::Tensor, int, const CollectiveOptions&) {
  SHARDLM_NCCL_STUB;
}
WorkPtr NcclGroup::barrier_async(const CollectiveOptions&) {
  SHARDLM_NCCL_STUB;
}
#undef SHARDLM_NCCL_STUB

#else

// ---- CUDA / NCCL ------------------------------------------------------------------------

namespace {
using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat:
      return ncclFloat32;
    case torch::kDouble:
      return ncclFloat64;
    case torch::kHalf:
      return ncclFloat16;
    case torch::kBFloat16:
      return ncclBfloat16;
    case torch::kInt:
      return ncclInt32;
    case torch::kLong:
      return ncclInt64;
    case torch::kByte:
      return ncclUint8;
    default:
      SHARDLM_FAIL(core::NcclError, "NcclGroup: dtype {} is not supported", c10::toString(t));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  return ncclSum;
}

void check_cuda_tensor(const torch::Tensor& t, int device, const char* what) {
  SHARDLM_CHECK(t.defined() && t.is_cuda() && t.device().index() == device, core::NcclError,
                "{}: NcclGroup takes tensors on cuda:{} (got {})", what, device,
                t.defined() ? t.device().str() : std::string("an undefined tensor"));
  SHARDLM_CHECK(t.is_contiguous(), core::NcclError, "{}: tensor is not contiguous", what);
  (void)nccl_type(t.scalar_type());
}

class NcclWork final : public Work {
 public:
  NcclWork(cudaEvent_t done, int device) : done_(done), device_(device) {}
  ~NcclWork() override { cudaEventDestroy(done_); }
  void wait() override {
    c10::cuda::CUDAGuard guard(device_);
    SHARDLM_CUDA_CHECK(
        cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream(device_).stream(), done_, 0));
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (error_) std::rethrow_exception(error_);
      }
      cudaError_t e = cudaEventQuery(done_);
      if (e == cudaSuccess) return;
      SHARDLM_CHECK(e == cudaErrorNotReady, core::CudaError, "NCCL collective failed: {}",
                    cudaGetErrorString(e));
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  bool completed() const override { return cudaEventQuery(done_) == cudaSuccess; }
  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_) error_ = e;
  }
  cudaEvent_t event() const { return done_; }

 private:
  cudaEvent_t done_;
  int device_;
  std::mutex mu_;
  std::exception_ptr error_;
};

struct InFlight {
  int64_t seq;
  std::string what;
  Collective kind;
  Clock::time_point issued, deadline;
  std::shared_ptr<NcclWork> work;
};
}  // namespace

struct NcclGroup::Impl {
  ncclComm_t comm = nullptr;
  MPI_Comm mpi = MPI_COMM_NULL;
  cudaStream_t stream = nullptr;
  std::unique_ptr<Watchdog> watchdog;
  std::mutex mu;
  std::deque<InFlight> inflight;
  int64_t seq = 0;
  int64_t armed = 0;
  bool stop = false;
  std::thread monitor;
};

std::shared_ptr<NcclGroup> NcclGroup::create(MPI_Comm comm, ProcessGroupOptions options,
                                             int device) {
  int rank = 0, size = 1;
  SHARDLM_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  SHARDLM_MPI_CHECK(MPI_Comm_size(comm, &size));
  if (device < 0) SHARDLM_CUDA_CHECK(cudaGetDevice(&device));
  std::shared_ptr<NcclGroup> g(new NcclGroup(rank, size, std::move(options), device));
  Impl& im = *g->impl_;
  SHARDLM_MPI_CHECK(MPI_Comm_dup(comm, &im.mpi));
  ncclUniqueId id;
  if (rank == 0) SHARDLM_NCCL_CHECK(ncclGetUniqueId(&id));
  SHARDLM_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, im.mpi));
  c10::cuda::CUDAGuard guard(device);
  // A stream of LibTorch's pool, which lives as long as the process: tensors
  // recorded on it (recordStream) may be freed after this group is gone, and
  // the caching allocator then records an event on the stream.
  im.stream =
      c10::cuda::getStreamFromPool(/*isHighPriority=*/false, static_cast<c10::DeviceIndex>(device))
          .stream();
  SHARDLM_NCCL_CHECK(ncclCommInitRank(&im.comm, size, id, rank));
  im.watchdog = std::make_unique<Watchdog>(im.mpi, g->options_.name);
  NcclGroup* self = g.get();
  im.monitor = std::thread([self] {
    Impl& m = *self->impl_;
    c10::cuda::CUDAGuard dev(self->index_);
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(m.mu);
        while (!m.inflight.empty() && m.inflight.front().work->completed()) {
          InFlight& f = m.inflight.front();
          m.watchdog->on_completed(f.seq);
          self->stats_.add_time(f.kind,
                                std::chrono::duration<double>(Clock::now() - f.issued).count());
          m.inflight.pop_front();
        }
        if (m.inflight.empty()) {
          if (m.armed) m.watchdog->disarm();
          m.armed = 0;
          if (m.stop) return;
        } else if (m.armed != m.inflight.front().seq && self->size_ > 1) {
          const InFlight& f = m.inflight.front();
          auto left =
              std::chrono::duration_cast<std::chrono::milliseconds>(f.deadline - Clock::now());
          Watchdog::TimeoutHandler handler;
          if (self->options_.on_timeout == TimeoutAction::kThrow) {
            std::weak_ptr<NcclWork> weak = f.work;
            handler = [weak](const WatchdogReport& rep) {
              if (auto w = weak.lock())
                w->fail(std::make_exception_ptr(core::TimeoutError(rep.text())));
            };
          }
          m.watchdog->arm(f.seq, f.what, std::max(left, std::chrono::milliseconds(1)),
                          std::move(handler));
          m.armed = f.seq;
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  return g;
}

NcclGroup::NcclGroup(int rank, int size, ProcessGroupOptions options, int device)
    : ProcessGroup(rank, size, std::move(options),
                   torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device))),
      index_(device),
      impl_(std::make_unique<Impl>()) {}

NcclGroup::~NcclGroup() {
  Impl& im = *impl_;
  {
    std::lock_guard<std::mutex> lock(im.mu);
    im.stop = true;
  }
  if (im.monitor.joinable()) im.monitor.join();  // returns once nothing is in flight
  im.watchdog.reset();
  if (im.comm) ncclCommDestroy(im.comm);
  // im.stream belongs to LibTorch's pool: not destroyed here.
  if (im.mpi != MPI_COMM_NULL && core::MpiSession::active()) MPI_Comm_free(&im.mpi);
}

namespace {
// Orders the group's stream after the caller's, runs `launch` on it, records
// the completion event and keeps the tensors' memory from being reused early.
template <class Launch>
std::shared_ptr<NcclWork> enqueue_on(NcclGroup::Impl& im, int device,
                                     const std::vector<torch::Tensor>& tensors, Launch launch) {
  c10::cuda::CUDAGuard guard(device);
  cudaStream_t caller = c10::cuda::getCurrentCUDAStream(device).stream();
  cudaEvent_t ready, done;
  SHARDLM_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  SHARDLM_CUDA_CHECK(cudaEventRecord(ready, caller));
  SHARDLM_CUDA_CHECK(cudaStreamWaitEvent(im.stream, ready, 0));
  cudaEventDestroy(ready);
  launch(im.stream);
  SHARDLM_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  SHARDLM_CUDA_CHECK(cudaEventRecord(done, im.stream));
  auto side = c10::cuda::getStreamFromExternal(im.stream, static_cast<c10::DeviceIndex>(device));
  for (const torch::Tensor& t : tensors)
    c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), side);
  return std::make_shared<NcclWork>(done, device);
}
}  // namespace

#define SHARDLM_NCCL_ISSUE(kind, what, bytes, opts, tensors, body)                               \
  [&] {                                                                                          \
    Impl& im = *impl_;                                                                           \
    stats_.record(kind, bytes, ring_wire_bytes(kind, bytes, size_));                             \
    std::lock_guard<std::mutex> lock(im.mu);                                                     \
    const int64_t seq = ++im.seq;                                                                \
    im.watchdog->on_called(seq);                                                                 \
    im.watchdog->on_started(seq);                                                                \
    auto work = enqueue_on(im, index_, tensors, [&](cudaStream_t stream) { body; });             \
    auto now = Clock::now();                                                                     \
    im.inflight.push_back(InFlight{seq, fmt::format("{} (tag {})", what, (opts).tag), kind, now, \
                                   now + timeout_for(opts), work});                              \
    return std::static_pointer_cast<Work>(work);                                                 \
  }()

WorkPtr NcclGroup::all_reduce_async(torch::Tensor t, ReduceOp op, const CollectiveOptions& opts) {
  check_cuda_tensor(t, index_, "all_reduce");
  auto what = fmt::format("all_reduce({}, {}, {} elements)", reduce_op_name(op),
                          c10::toString(t.scalar_type()), t.numel());
  return SHARDLM_NCCL_ISSUE(
      Collective::kAllReduce, what, static_cast<uint64_t>(t.nbytes()), opts, {t},
      SHARDLM_NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(),
                                       nccl_type(t.scalar_type()), nccl_op(op), im.comm, stream)));
}

WorkPtr NcclGroup::reduce_scatter_async(torch::Tensor out, torch::Tensor in, ReduceOp op,
                                        const CollectiveOptions& opts) {
  check_cuda_tensor(out, index_, "reduce_scatter");
  check_cuda_tensor(in, index_, "reduce_scatter");
  std::vector<int64_t> sizes = check_split("reduce_scatter", in, out);
  std::vector<int64_t> off = split_offsets(in.numel(), size_);
  const bool even =
      std::all_of(sizes.begin(), sizes.end(), [&](int64_t c) { return c == sizes[0]; });
  auto what = fmt::format("reduce_scatter({}, {}, {} elements)", reduce_op_name(op),
                          c10::toString(in.scalar_type()), in.numel());
  const ncclDataType_t dt = nccl_type(in.scalar_type());
  const size_t esize = in.element_size();
  return SHARDLM_NCCL_ISSUE(
      Collective::kReduceScatter, what, static_cast<uint64_t>(in.nbytes()), opts,
      (std::vector<torch::Tensor>{out, in}), {
        if (even) {
          SHARDLM_NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), sizes[0], dt,
                                               nccl_op(op), im.comm, stream));
        } else {  // one reduce per piece, rooted at its owner
          SHARDLM_NCCL_CHECK(ncclGroupStart());
          for (int r = 0; r < size_; ++r) {
            char* src = static_cast<char*>(in.data_ptr()) + off[r] * esize;
            SHARDLM_NCCL_CHECK(ncclReduce(src, r == rank_ ? out.data_ptr() : nullptr, sizes[r], dt,
                                          nccl_op(op), r, im.comm, stream));
          }
          SHARDLM_NCCL_CHECK(ncclGroupEnd());
        }
      });
}

WorkPtr NcclGroup::all_gather_async(torch::Tensor out, torch::Tensor in,
                                    const CollectiveOptions& opts) {
  check_cuda_tensor(out, index_, "all_gather");
  check_cuda_tensor(in, index_, "all_gather");
  std::vector<int64_t> sizes = check_split("all_gather", out, in);
  std::vector<int64_t> off = split_offsets(out.numel(), size_);
  const bool even =
      std::all_of(sizes.begin(), sizes.end(), [&](int64_t c) { return c == sizes[0]; });
  auto what =
      fmt::format("all_gather({}, {} elements)", c10::toString(out.scalar_type()), out.numel());
  const ncclDataType_t dt = nccl_type(in.scalar_type());
  const size_t esize = in.element_size();
  return SHARDLM_NCCL_ISSUE(
      Collective::kAllGather, what, static_cast<uint64_t>(out.nbytes()), opts,
      (std::vector<torch::Tensor>{out, in}), {
        if (even) {
          SHARDLM_NCCL_CHECK(
              ncclAllGather(in.data_ptr(), out.data_ptr(), sizes[0], dt, im.comm, stream));
        } else {  // one broadcast per piece, rooted at its owner
          SHARDLM_NCCL_CHECK(ncclGroupStart());
          for (int r = 0; r < size_; ++r) {
            char* dst = static_cast<char*>(out.data_ptr()) + off[r] * esize;
            SHARDLM_NCCL_CHECK(ncclBroadcast(r == rank_ ? in.data_ptr() : dst, dst, sizes[r], dt, r,
                                             im.comm, stream));
          }
          SHARDLM_NCCL_CHECK(ncclGroupEnd());
        }
      });
}

WorkPtr NcclGroup::broadcast_async(torch::Tensor t, int root, const CollectiveOptions& opts) {
  check_cuda_tensor(t, index_, "broadcast");
  SHARDLM_CHECK(root >= 0 && root < size_, core::NcclError,
                "broadcast: root {} outside a group of {} ranks", root, size_);
  auto what = fmt::format("broadcast(root {}, {}, {} elements)", root,
                          c10::toString(t.scalar_type()), t.numel());
  return SHARDLM_NCCL_ISSUE(
      Collective::kBroadcast, what, static_cast<uint64_t>(t.nbytes()), opts, {t},
      SHARDLM_NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(),
                                       nccl_type(t.scalar_type()), root, im.comm, stream)));
}

WorkPtr NcclGroup::barrier_async(const CollectiveOptions& opts) {
  // NCCL has no barrier: all-reduce one element.
  auto one = torch::zeros({1}, torch::TensorOptions()
                                   .dtype(torch::kFloat)
                                   .device(torch::kCUDA, static_cast<c10::DeviceIndex>(index_)));
  return SHARDLM_NCCL_ISSUE(
      Collective::kBarrier, std::string("barrier()"), 0, opts, {one},
      SHARDLM_NCCL_CHECK(
          ncclAllReduce(one.data_ptr(), one.data_ptr(), 1, ncclFloat32, ncclSum, im.comm, stream)));
}

#undef SHARDLM_NCCL_ISSUE
#endif

}  // namespace shardlm::parallel
