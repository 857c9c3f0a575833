// A one-line progress bar for long data jobs: percent, MB done, MB/s, tokens/s
// and ETA. On a terminal it redraws in place (at most 5 times a second);
// otherwise (logs, CI) it prints a line every 10 seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace shardlm::data {

class Progress {
 public:
  // `total_bytes` = 0 shows no percent or ETA. Disabled: prints nothing.
  Progress(std::string label, uint64_t total_bytes, bool enabled);
  ~Progress();
  void update(uint64_t bytes_done, uint64_t tokens_done);
  // Prints the final line (with the average rates) and ends it.
  void finish();
  double seconds() const;

 private:
  std::string line(double now_s) const;

  std::string label_;
  uint64_t total_, bytes_ = 0, tokens_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_;
  double last_print_ = -1e9;
};

// "1:02:03" or "4:05".
std::string format_duration(double seconds);

}  // namespace shardlm::data
