// The aggregator's state without any networking, so that it can be tested
// directly: the run's history (bounded in memory, appended to metrics.jsonl,
// reloaded after a restart) and the per-rank tracker (cross-rank aggregates,
// stragglers, dead ranks, Prometheus gauges). aggregator.cpp calls both under
// one mutex; neither is thread-safe by itself.
#pragma once

#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shardlm::monitor {

using SharedText = std::shared_ptr<const std::string>;

// ---- history -----------------------------------------------------------------------

struct HistoryOptions {
  size_t max_messages = 200000;
  size_t max_bytes = size_t{128} << 20;
};

// Every kept message, in order, with a strictly increasing `seq`. When the
// memory bounds are reached the oldest half is thinned: step-like messages
// (step, aggregate, ranks) of every other step are dropped there, and
// run_info, validation, events and acks are kept; the file keeps everything.
class History {
 public:
  explicit History(HistoryOptions o = {});
  ~History();
  History(const History&) = delete;
  History& operator=(const History&) = delete;

  // Loads `path` (a metrics.jsonl of an earlier aggregator of this run dir; lines
  // that do not parse, such as a torn last line, are skipped and counted) and
  // appends every later message to it. Throws core::DataError when it cannot be
  // opened for appending.
  void open(const std::string& path);
  // Sets msg["seq"], keeps it and appends it to the file; returns its text.
  SharedText append(nlohmann::json& msg);
  // What a late viewer is sent: every kept message, oldest first.
  std::vector<SharedText> snapshot() const;

  size_t size() const { return entries_.size(); }
  size_t bytes() const { return bytes_; }
  int64_t next_seq() const { return next_seq_; }
  uint64_t thinned() const { return thinned_; }        // dropped from memory by thinning
  uint64_t skipped_lines() const { return skipped_; }  // unreadable lines met by open()
  uint64_t write_errors() const { return write_errors_; }

 private:
  struct Entry {
    SharedText text;
    int64_t step;  // -1 when the message has none
    bool thinnable;
  };
  void keep(SharedText text, const nlohmann::json& msg);
  void enforce_bounds();

  HistoryOptions opt_;
  std::deque<Entry> entries_;
  size_t bytes_ = 0;
  int64_t next_seq_ = 0;
  int64_t stride_ = 1;
  uint64_t thinned_ = 0, skipped_ = 0, write_errors_ = 0;
  std::FILE* file_ = nullptr;
};

// ---- ranks -------------------------------------------------------------------------

struct TrackerOptions {
  double straggler_fraction = 0.2;  // slower than the median step time by more than this
  double dead_after_s = 10;         // no message for this long: dead
  double ranks_every_s = 5;         // a `ranks` message at least this often
  size_t pending_steps = 16;        // steps waiting for every rank before a partial aggregate
};

class RankTracker {
 public:
  explicit RankTracker(TrackerOptions o = {});
  // A message from a producer (already schema-checked), at steady time `now`
  // (seconds). Returns the messages it causes: aggregate, ranks, events.
  std::vector<nlohmann::json> observe(const nlohmann::json& msg, double now);
  // Called about once a second: dead ranks, the periodic `ranks` message, and
  // aggregates that no longer wait for a dead rank.
  std::vector<nlohmann::json> tick(double now);
  nlohmann::json ranks_message(double now) const;
  // Prometheus text exposition of the per-rank gauges.
  std::string prometheus(double now) const;
  int world_size() const;
  size_t rank_count() const { return ranks_.size(); }

 private:
  struct Sample {
    double loss, step_time;
    std::optional<double> tokens_per_s, grad_norm, lr;
  };
  struct Rank {
    std::string state = "alive";  // alive | dead | finished
    double last_seen = 0;
    std::optional<int64_t> step;
    std::optional<double> idle_s, step_time, loss, lr, grad_norm, tokens_per_s, val_loss;
    std::optional<int64_t> dropped;
    nlohmann::json mem, gpu;  // the last step's objects
    bool straggler = false;
  };
  std::vector<nlohmann::json> settle(double now, bool force_oldest);
  nlohmann::json aggregate(int64_t step, const std::map<int, Sample>& bucket, bool complete,
                           std::vector<nlohmann::json>& out, double now);
  bool expected(int rank) const;
  std::vector<int> expected_ranks() const;

  TrackerOptions opt_;
  int world_size_ = 0;
  std::map<int, Rank> ranks_;
  std::map<int64_t, std::map<int, Sample>> buckets_;
  int64_t last_aggregated_ = -1;
  std::string run_id_;
  double last_ranks_msg_ = -1e300;
};

}  // namespace shardlm::monitor
