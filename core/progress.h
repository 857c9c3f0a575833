/// @file
/// The one progress line of every long job (training steps, corpus
/// preparation, tokenizer training): label, a bar, done/total, the caller's
/// fields, and the ETA, all in one format:
///
///   [##########..........] tokenise  52.3%  12.4/23.7 MB | 3.1 MB/s | 1.2M tok/s | ETA 0:04
///
/// On a terminal it redraws in place (at most 5 times a second); otherwise
/// (logs, CI) it prints plain lines, at most one every `plain_every_s` seconds
/// (0: every update). ETA: remaining / rate, the rate smoothed exponentially
/// over the updates (steady for step times, exact for constant work).
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace shardlm::core {

/// One progress line (see the file comment).
class ProgressBar {
 public:
  /// What the line shows and where.
  struct Options {
    std::string label;          ///< "" = none
    double total = 0;           ///< 0: no bar, percent or ETA
    bool enabled = true;        ///< false: prints nothing
    std::FILE* out = stderr;    ///< where it prints
    double plain_every_s = 10;  ///< off a terminal: seconds between lines (0 = every update)
    int tty = -1;               ///< -1: ask isatty(out); 0 / 1: as given (tests)
  };
  /// Starts the clock.
  explicit ProgressBar(Options o);
  /// Ends an open line.
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  /// `done` of total; `fields` is shown after the counts ("loss 3.2 | lr 1e-3").
  void update(double done, const std::string& fields = "");
  /// A line that is not overwritten (validation results, events).
  void message(const std::string& text);
  /// The last line (rates over the whole job), then a newline.
  void finish(const std::string& fields = "");
  /// Seconds since construction.
  double seconds() const;
  /// The whole line for `done` (what update prints), for tests.
  std::string line(double done, const std::string& fields) const;

  /// "1:02:03", "4:05", or "?" when unknown.
  static std::string format_duration(double seconds);
  /// 1.23G, 4.56M, 7.8k, 12.
  static std::string si(double v);

 private:
  void print(const std::string& text, bool final);

  Options o_;
  bool tty_;
  bool line_open_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_;
  double last_print_ = -1e9;
  double last_done_ = 0, last_t_ = 0, rate_ = 0;  // the smoothed rate (done per second)
};

}  // namespace shardlm::core
