// A process-wide pool of worker threads for data/ (encode_batch, training
// counts). Threads persist between calls, so per-thread state (the tokenizer's
// piece caches, PCRE2 match data) stays warm, and no call pays for starting
// threads. One job at a time: a second caller waits for the first to finish.
#pragma once

#include <cstddef>
#include <functional>

namespace shardlm::data {

// Number of threads meant by a user's setting: n > 0 as is, 0 = all cores.
size_t resolve_threads(int n);

// Runs fn(t) for t in [0, threads) concurrently, t = 0 on the calling thread,
// and returns when all have returned. The first exception thrown by any fn is
// rethrown here. fn must not call parallel_run itself.
void parallel_run(size_t threads, const std::function<void(size_t)>& fn);

}  // namespace shardlm::data
