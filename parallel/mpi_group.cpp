// MpiGroup: collectives on a communication thread, half-precision reductions
// through user-defined MPI_Ops, deadlines kept by the watchdog, CUDA tensors
// staged through pinned host memory.
#include "parallel/mpi_group.h"

#include <climits>

#ifdef SHARDLM_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <ATen/core/grad_mode.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join (moved here in fmt 11)

#include "core/env.h"
#include "core/log.h"
#include "core/mpi_check.h"

namespace shardlm::parallel {

namespace {
using Clock = std::chrono::steady_clock;

// ---- half-precision datatypes and reductions ----------------------------------------

struct HalfTypes {
  MPI_Datatype fp16 = MPI_DATATYPE_NULL, bf16 = MPI_DATATYPE_NULL;
  MPI_Op sum = MPI_OP_NULL, max = MPI_OP_NULL, min = MPI_OP_NULL;
};
HalfTypes& half_types();

// inout[i] = H(f(float(in[i]), float(inout[i]))): each pairwise step in fp32.
template <class H, class F>
void combine(const void* in, void* inout, int n, F f) {
  const H* a = static_cast<const H*>(in);
  H* b = static_cast<H*>(inout);
  for (int i = 0; i < n; ++i) b[i] = H(f(static_cast<float>(a[i]), static_cast<float>(b[i])));
}
template <class F>
void combine_any(void* in, void* inout, int* len, MPI_Datatype* dt, F f) {
  if (*dt == half_types().bf16)
    combine<c10::BFloat16>(in, inout, *len, f);
  else
    combine<c10::Half>(in, inout, *len, f);
}
void half_sum(void* in, void* inout, int* len, MPI_Datatype* dt) {
  combine_any(in, inout, len, dt, [](float a, float b) { return a + b; });
}
void half_max(void* in, void* inout, int* len, MPI_Datatype* dt) {
  combine_any(in, inout, len, dt, [](float a, float b) { return a > b ? a : b; });
}
void half_min(void* in, void* inout, int* len, MPI_Datatype* dt) {
  combine_any(in, inout, len, dt, [](float a, float b) { return a < b ? a : b; });
}

HalfTypes& half_types() {
  static HalfTypes t = [] {
    HalfTypes h;
    SHARDLM_MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &h.fp16));
    SHARDLM_MPI_CHECK(MPI_Type_commit(&h.fp16));
    SHARDLM_MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &h.bf16));
    SHARDLM_MPI_CHECK(MPI_Type_commit(&h.bf16));
    SHARDLM_MPI_CHECK(MPI_Op_create(&half_sum, 1, &h.sum));
    SHARDLM_MPI_CHECK(MPI_Op_create(&half_max, 1, &h.max));
    SHARDLM_MPI_CHECK(MPI_Op_create(&half_min, 1, &h.min));
    return h;
  }();
  return t;
}

bool is_half(torch::ScalarType t) {
  return t == torch::kHalf || t == torch::kBFloat16;
}

MPI_Datatype mpi_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat:
      return MPI_FLOAT;
    case torch::kDouble:
      return MPI_DOUBLE;
    case torch::kHalf:
      return half_types().fp16;
    case torch::kBFloat16:
      return half_types().bf16;
    case torch::kInt:
      return MPI_INT32_T;
    case torch::kLong:
      return MPI_INT64_T;
    case torch::kByte:
      return MPI_UINT8_T;
    default:
      SHARDLM_FAIL(core::MpiError,
                   "MpiGroup: dtype {} is not supported (float32, float64, float16, bfloat16, "
                   "int32, int64, uint8)",
                   c10::toString(t));
  }
}

MPI_Op mpi_op(ReduceOp op, torch::ScalarType t) {
  const bool half = is_half(t);
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return half ? half_types().sum : MPI_SUM;
    case ReduceOp::kMax:
      return half ? half_types().max : MPI_MAX;
    case ReduceOp::kMin:
      return half ? half_types().min : MPI_MIN;
  }
  return MPI_SUM;
}

int count_of(const torch::Tensor& t, const char* what) {
  SHARDLM_CHECK(t.numel() <= INT_MAX, core::MpiError,
                "{}: {} elements exceed MPI's int count; split the tensor", what, t.numel());
  return static_cast<int>(t.numel());
}

void check_tensor(const torch::Tensor& t, const char* what) {
  SHARDLM_CHECK(t.defined(), core::MpiError, "{}: undefined tensor", what);
#ifdef SHARDLM_WITH_CUDA
  SHARDLM_CHECK(t.device().is_cpu() || t.device().is_cuda(), core::MpiError,
                "{}: MpiGroup takes CPU or CUDA tensors (got a tensor on {})", what,
                t.device().str());
#else
  SHARDLM_CHECK(t.device().is_cpu(), core::MpiError,
                "{}: MpiGroup takes CPU tensors in this build (got a tensor on {}); CUDA "
                "tensors need a build with SHARDLM_WITH_CUDA",
                what, t.device().str());
#endif
  SHARDLM_CHECK(t.is_contiguous(), core::MpiError, "{}: tensor of shape {} is not contiguous", what,
                fmt::join(t.sizes(), "x"));
  (void)mpi_type(t.scalar_type());  // throws for unsupported dtypes
}

void check_avg(ReduceOp op, const torch::Tensor& t, const char* what) {
  SHARDLM_CHECK(op != ReduceOp::kAvg || t.is_floating_point(), core::MpiError,
                "{}: avg needs a floating-point tensor (got {})", what,
                c10::toString(t.scalar_type()));
}

std::vector<int> to_int(const std::vector<int64_t>& v) {
  return {v.begin(), v.end()};
}

int comm_rank(MPI_Comm c) {
  int r = 0;
  SHARDLM_MPI_CHECK(MPI_Comm_rank(c, &r));
  return r;
}
int comm_size(MPI_Comm c) {
  int s = 1;
  SHARDLM_MPI_CHECK(MPI_Comm_size(c, &s));
  return s;
}

// ---- work handle ------------------------------------------------------------------

class MpiWork final : public Work {
 public:
  void wait() override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_ || error_; });
    if (error_) std::rethrow_exception(error_);
  }
  bool completed() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  void complete(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (e && !error_) error_ = e;
    done_ = true;
    cv_.notify_all();
  }
  // Fails the waiters now; the collective may still complete later.
  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_) error_ = e;
    cv_.notify_all();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
};

// ---- staging through host memory ------------------------------------------------------
// MPI reads and writes host memory. A CUDA tensor is copied into a pinned host
// buffer on the caller's thread, on its current stream (so after the work that
// produced it), and an event marks when those copies are done; the
// communication thread waits for the event, runs MPI on the host buffers and
// copies the results back on a stream of LibTorch's pool, waiting for that
// copy before the Work completes. So after wait() the device tensor holds the
// result whatever stream reads it next. With stage_cpu (tests) CPU tensors
// take the same path through separate host buffers.
class Staging {
 public:
  explicit Staging(bool stage_cpu) : stage_cpu_(stage_cpu) {}

  // The tensor MPI works on for `t`. copy_in: MPI reads t's values;
  // copy_out: MPI's result goes back into t.
  torch::Tensor add(const torch::Tensor& t, bool copy_in, bool copy_out) {
    if (!needs_staging(t)) return t;
    at::NoGradGuard no_grad;
    torch::Tensor host = torch::empty(
        t.sizes(), t.options().device(torch::kCPU).pinned_memory(t.device().is_cuda()));
    if (copy_in) host.copy_(t, /*non_blocking=*/t.device().is_cuda());
    entries_.push_back(Entry{t, host, copy_out});
    return host;
  }

  // Caller's thread, after the last add(): marks the end of the copies in.
  void issued() {
#ifdef SHARDLM_WITH_CUDA
    for (const Entry& e : entries_)
      if (e.user.device().is_cuda()) {
        ready_ = std::make_shared<at::cuda::CUDAEvent>();
        ready_->record(c10::cuda::getCurrentCUDAStream(e.user.device().index()));
        break;
      }
#endif
  }

  // Communication thread, before the MPI call.
  void before() const {
#ifdef SHARDLM_WITH_CUDA
    if (ready_) ready_->synchronize();
#endif
  }

  // Communication thread, after the MPI call: results back where they belong.
  void after() const {
    at::NoGradGuard no_grad;  // this thread's grad mode is on; these are plain buffers
    for (const Entry& e : entries_) {
      if (!e.copy_out) continue;
#ifdef SHARDLM_WITH_CUDA
      if (e.user.device().is_cuda()) {
        c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(
            /*isHighPriority=*/false, e.user.device().index());
        {
          c10::cuda::CUDAStreamGuard guard(side);
          e.user.copy_(e.host, /*non_blocking=*/true);
        }
        side.synchronize();
        continue;
      }
#endif
      e.user.copy_(e.host);
    }
  }

 private:
  bool needs_staging(const torch::Tensor& t) const {
    return !t.device().is_cpu() || stage_cpu_;
  }
  struct Entry {
    torch::Tensor user, host;
    bool copy_out;
  };
  bool stage_cpu_;
  std::vector<Entry> entries_;
#ifdef SHARDLM_WITH_CUDA
  std::shared_ptr<at::cuda::CUDAEvent> ready_;
#endif
};

}  // namespace

// ---- queue and thread -----------------------------------------------------------

struct MpiGroup::Op {
  Collective kind;
  int64_t seq = 0;
  std::string what;
  std::chrono::milliseconds timeout{0};
  std::function<void()> run;  // the blocking MPI call and any post-processing
  std::shared_ptr<MpiWork> work;
};

MpiGroup::MpiGroup(MPI_Comm comm, ProcessGroupOptions options, torch::Device device)
    : ProcessGroup(comm_rank(comm), comm_size(comm), std::move(options), device) {
  int level = 0;
  SHARDLM_MPI_CHECK(MPI_Query_thread(&level));
  SHARDLM_CHECK(level == MPI_THREAD_MULTIPLE, core::MpiError,
                "MpiGroup '{}' needs MPI_THREAD_MULTIPLE (MPI gave level {}); start MPI with "
                "core::MpiSession",
                options_.name, level);
  SHARDLM_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
  SHARDLM_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  (void)half_types();  // create the datatypes on this thread, before any collective
  watchdog_ = std::make_unique<Watchdog>(comm_, options_.name);
  thread_ = std::thread([this] { run_thread(); });
}

MpiGroup::~MpiGroup() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  watchdog_.reset();
  if (comm_ != MPI_COMM_NULL && core::MpiSession::active()) MPI_Comm_free(&comm_);
}

int64_t MpiGroup::issued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seq_;
}

WorkPtr MpiGroup::enqueue(Collective kind, std::string what, uint64_t payload_bytes,
                          const CollectiveOptions& opts, std::function<void()> run) {
  auto op = std::make_shared<Op>();
  op->kind = kind;
  op->what = fmt::format("{} (tag {})", what, opts.tag);
  op->timeout = timeout_for(opts);
  op->run = std::move(run);
  op->work = std::make_shared<MpiWork>();
  stats_.record(kind, payload_bytes, ring_wire_bytes(kind, payload_bytes, size_));
  {
    std::lock_guard<std::mutex> lock(mu_);
    op->seq = ++seq_;
    watchdog_->on_called(op->seq);
    queue_.push_back(op);
  }
  cv_.notify_all();
  return op->work;
}

void MpiGroup::run_thread() {
  for (;;) {
    std::shared_ptr<Op> op;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and nothing left
      op = queue_.front();
      queue_.pop_front();
    }
    execute(*op);
  }
}

void MpiGroup::execute(Op& op) {
  const auto t0 = Clock::now();
  watchdog_->on_started(op.seq);
  if (size_ > 1) {
    Watchdog::TimeoutHandler handler;  // empty: abort the job
    if (options_.on_timeout == TimeoutAction::kThrow) {
      std::weak_ptr<MpiWork> weak = op.work;
      handler = [weak](const WatchdogReport& rep) {
        core::log::error("{}", rep.text());
        if (auto w = weak.lock()) w->fail(std::make_exception_ptr(core::TimeoutError(rep.text())));
      };
    }
    watchdog_->arm(op.seq, op.what, op.timeout, std::move(handler));
  }
  std::exception_ptr err;
  try {
    op.run();
  } catch (...) {
    err = std::current_exception();
  }
  if (size_ > 1) watchdog_->disarm();
  watchdog_->on_completed(op.seq);
  stats_.add_time(op.kind, std::chrono::duration<double>(Clock::now() - t0).count());
  op.work->complete(err);
}

// ---- collectives ----------------------------------------------------------------------

WorkPtr MpiGroup::all_reduce_async(torch::Tensor user, ReduceOp op, const CollectiveOptions& opts) {
  check_tensor(user, "all_reduce");
  check_avg(op, user, "all_reduce");
  const int n = count_of(user, "all_reduce");
  const uint64_t bytes = static_cast<uint64_t>(user.nbytes());
  std::string what = fmt::format("all_reduce({}, {}, {} elements)", reduce_op_name(op),
                                 c10::toString(user.scalar_type()), n);
  auto st = std::make_shared<Staging>(stage_cpu_);
  torch::Tensor t = st->add(user, true, true);
  st->issued();
  return enqueue(Collective::kAllReduce, std::move(what), bytes, opts, [this, st, t, op, n] {
    st->before();
    if (size_ > 1)
      SHARDLM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), n, mpi_type(t.scalar_type()),
                                      mpi_op(op, t.scalar_type()), comm_));
    if (op == ReduceOp::kAvg && size_ > 1) t.div_(size_);
    st->after();
  });
}

WorkPtr MpiGroup::reduce_scatter_async(torch::Tensor out_user, torch::Tensor in_user, ReduceOp op,
                                       const CollectiveOptions& opts) {
  check_tensor(out_user, "reduce_scatter");
  check_tensor(in_user, "reduce_scatter");
  check_avg(op, in_user, "reduce_scatter");
  (void)count_of(in_user, "reduce_scatter");
  std::vector<int> counts = to_int(check_split("reduce_scatter", in_user, out_user));
  const uint64_t bytes = static_cast<uint64_t>(in_user.nbytes());
  std::string what = fmt::format("reduce_scatter({}, {}, {} elements)", reduce_op_name(op),
                                 c10::toString(in_user.scalar_type()), in_user.numel());
  auto st = std::make_shared<Staging>(stage_cpu_);
  torch::Tensor in = st->add(in_user, true, false);
  torch::Tensor out = st->add(out_user, false, true);
  st->issued();
  return enqueue(
      Collective::kReduceScatter, std::move(what), bytes, opts, [this, st, out, in, op, counts] {
        st->before();
        if (size_ == 1) {
          out.copy_(in);
          st->after();
          return;
        }
        MPI_Datatype dt = mpi_type(in.scalar_type());
        MPI_Op mop = mpi_op(op, in.scalar_type());
        bool even =
            std::all_of(counts.begin(), counts.end(), [&](int c) { return c == counts[0]; });
        if (even)
          SHARDLM_MPI_CHECK(
              MPI_Reduce_scatter_block(in.data_ptr(), out.data_ptr(), counts[0], dt, mop, comm_));
        else
          SHARDLM_MPI_CHECK(
              MPI_Reduce_scatter(in.data_ptr(), out.data_ptr(), counts.data(), dt, mop, comm_));
        if (op == ReduceOp::kAvg) out.div_(size_);
        st->after();
      });
}

WorkPtr MpiGroup::all_gather_async(torch::Tensor out_user, torch::Tensor in_user,
                                   const CollectiveOptions& opts) {
  check_tensor(out_user, "all_gather");
  check_tensor(in_user, "all_gather");
  (void)count_of(out_user, "all_gather");
  std::vector<int> counts = to_int(check_split("all_gather", out_user, in_user));
  const uint64_t bytes = static_cast<uint64_t>(out_user.nbytes());
  std::string what = fmt::format("all_gather({}, {} elements)",
                                 c10::toString(out_user.scalar_type()), out_user.numel());
  std::vector<int> displs(counts.size(), 0);
  for (size_t i = 1; i < counts.size(); ++i) displs[i] = displs[i - 1] + counts[i - 1];
  // `input` may be this rank's piece of `output` itself (ZeRO's in-place gather):
  // then it stays that piece of the staged output.
  const bool in_place = in_user.data_ptr() == static_cast<const char*>(out_user.data_ptr()) +
                                                  displs[rank_] * in_user.element_size();
  auto st = std::make_shared<Staging>(stage_cpu_);
  torch::Tensor out = st->add(out_user, /*copy_in=*/in_place, true);
  torch::Tensor in =
      in_place ? out.narrow(0, displs[rank_], counts[rank_]) : st->add(in_user, true, false);
  st->issued();
  return enqueue(
      Collective::kAllGather, std::move(what), bytes, opts, [this, st, out, in, counts, displs] {
        st->before();
        if (size_ == 1) {
          if (out.data_ptr() != in.data_ptr()) out.copy_(in);
          st->after();
          return;
        }
        MPI_Datatype dt = mpi_type(in.scalar_type());
        bool even =
            std::all_of(counts.begin(), counts.end(), [&](int c) { return c == counts[0]; });
        const void* send = in.data_ptr();
        if (send == static_cast<const char*>(out.data_ptr()) + displs[rank_] * in.element_size())
          send = MPI_IN_PLACE;
        if (even)
          SHARDLM_MPI_CHECK(
              MPI_Allgather(send, counts[0], dt, out.data_ptr(), counts[0], dt, comm_));
        else
          SHARDLM_MPI_CHECK(MPI_Allgatherv(send, counts[rank_], dt, out.data_ptr(), counts.data(),
                                           displs.data(), dt, comm_));
        st->after();
      });
}

WorkPtr MpiGroup::broadcast_async(torch::Tensor user, int root, const CollectiveOptions& opts) {
  check_tensor(user, "broadcast");
  SHARDLM_CHECK(root >= 0 && root < size_, core::MpiError,
                "broadcast: root {} outside a group of {} ranks", root, size_);
  const int n = count_of(user, "broadcast");
  const uint64_t bytes = static_cast<uint64_t>(user.nbytes());
  std::string what = fmt::format("broadcast(root {}, {}, {} elements)", root,
                                 c10::toString(user.scalar_type()), n);
  auto st = std::make_shared<Staging>(stage_cpu_);
  torch::Tensor t = st->add(user, /*copy_in=*/rank_ == root, /*copy_out=*/rank_ != root);
  st->issued();
  return enqueue(Collective::kBroadcast, std::move(what), bytes, opts, [this, st, t, root, n] {
    st->before();
    if (size_ > 1)
      SHARDLM_MPI_CHECK(MPI_Bcast(t.data_ptr(), n, mpi_type(t.scalar_type()), root, comm_));
    st->after();
  });
}

WorkPtr MpiGroup::barrier_async(const CollectiveOptions& opts) {
  return enqueue(Collective::kBarrier, "barrier()", 0, opts, [this] {
    if (size_ > 1) SHARDLM_MPI_CHECK(MPI_Barrier(comm_));
  });
}

}  // namespace shardlm::parallel
