// The persistent worker pool behind parallel_run (see thread_pool.h).
#include "data/thread_pool.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace shardlm::data {

size_t resolve_threads(int n) {
  return n > 0 ? static_cast<size_t>(n) : std::max(1u, std::thread::hardware_concurrency());
}

namespace {

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  void run(size_t threads, const std::function<void(size_t)>& fn) {
    if (threads <= 1) {
      fn(0);
      return;
    }
    std::lock_guard<std::mutex> one_job(job_mu_);
    std::unique_lock<std::mutex> lk(mu_);
    while (workers_.size() < threads - 1) {
      const size_t index = workers_.size() + 1;
      workers_.emplace_back([this, index] { loop(index); });
    }
    job_ = &fn;
    job_threads_ = threads;
    pending_ = threads - 1;
    error_ = nullptr;
    ++generation_;
    lk.unlock();
    wake_.notify_all();
    call(fn, 0);
    lk.lock();
    done_.wait(lk, [&] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void call(const std::function<void(size_t)>& fn, size_t t) {
    try {
      fn(t);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void loop(size_t index) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      wake_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (index >= job_threads_) continue;  // this job needs fewer threads
      const auto* fn = job_;
      lk.unlock();
      call(*fn, index);
      lk.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex job_mu_;  // one job at a time
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(size_t)>* job_ = nullptr;
  size_t job_threads_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

void parallel_run(size_t threads, const std::function<void(size_t)>& fn) {
  pool().run(threads, fn);
}

}  // namespace shardlm::data
