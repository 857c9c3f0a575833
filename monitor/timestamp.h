// One timestamp for several encodings of one message (protocol.cpp's now_ts()).
#pragma once

namespace shardlm::monitor {

// While one is alive on this thread, now_ts() (and so every message encoded
// here) returns the time it took: the copies a FanoutSink hands its children
// (a file and the aggregator) are the same message, not two that straddle a
// millisecond. Nests: an inner one keeps the outer's time.
class SameTimestamp {
 public:
  SameTimestamp();
  ~SameTimestamp();
  SameTimestamp(const SameTimestamp&) = delete;
  SameTimestamp& operator=(const SameTimestamp&) = delete;

 private:
  double previous_;
};

}  // namespace shardlm::monitor
