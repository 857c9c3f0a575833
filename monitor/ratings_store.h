// Blind pairwise human ratings in one SQLite database (RUN_DIR/ratings.db):
// the samples people compare, the pairs they are shown, and one row per vote.
// The aggregator writes it (the dashboard's Rate tab); `shardlm eval ratings
// --db` reads it and exports JSONL. docs/workbench.md describes the workflow.
//
//   RatingsStore db("runs/a/ratings.db");                   // creates the tables
//   int64_t a = db.add_sample({"step-200", 200, prompt, text_a});
//   int64_t b = db.add_sample({"step-400", 400, prompt, text_b});
//   int64_t p = db.add_pair("step-200 vs step-400", a, b);
//   auto next = db.next_pair("alice");                      // fewest votes first
//   db.vote({"alice", p, a, b, "A"});                       // on disk when it returns
//
// Durability: WAL journal with synchronous=FULL, so a vote is in the log and
// fsync'ed when vote() returns (the aggregator acknowledges only then): a
// SIGKILL or a power cut loses no acknowledged vote. Several processes may read
// while one writes (WAL); writers wait up to busy_timeout_ms for each other.
// One object is not thread-safe: the aggregator calls it under a mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shardlm::monitor {

struct RatingSample {
  std::string source;           // what produced it: "step-200", a model label, a serve URL
  std::optional<int64_t> step;  // the training step, for checkpoints of this run
  std::string prompt, text;
  nlohmann::json options = nlohmann::json::object();  // how it was generated
  int64_t id = 0;                                     // set by add_sample()
  double created = 0;
};

struct RatingPair {
  int64_t id = 0;
  std::string batch;  // the comparison it belongs to ("step-200 vs step-400")
  int64_t sample_a = 0, sample_b = 0;
  double created = 0;
};

// Choices, as the rater saw the pair: A (left) better, B better, tie, both bad,
// skip (seen, no opinion: asked no more, counted nowhere).
inline const std::vector<std::string>& rating_choices() {
  static const std::vector<std::string> c = {"A", "B", "tie", "both_bad", "skip"};
  return c;
}

struct RatingVote {
  std::string rater;
  int64_t pair = 0;
  int64_t shown_a = 0, shown_b = 0;  // sample ids in the order shown (A, B)
  std::string choice;                // one of rating_choices()
  double time = 0;                   // seconds since the epoch; 0 = now
  std::string client;                // free text (the dashboard session), may be empty
  int64_t id = 0;                    // set by vote()
};

struct VoteResult {
  int64_t id = 0;          // the vote's row
  bool duplicate = false;  // the rater had voted on this pair already: that vote is kept
};

class RatingsStore {
 public:
  // Opens `path` (created with its tables unless read_only). Throws
  // core::DataError naming the file and SQLite's message when it cannot be
  // opened or is not a ratings database.
  explicit RatingsStore(const std::string& path, bool read_only = false,
                        int busy_timeout_ms = 5000);
  ~RatingsStore();
  RatingsStore(const RatingsStore&) = delete;
  RatingsStore& operator=(const RatingsStore&) = delete;

  const std::string& path() const { return path_; }

  int64_t add_sample(RatingSample s);
  // Throws core::DataError when a sample does not exist or a == b.
  int64_t add_pair(const std::string& batch, int64_t sample_a, int64_t sample_b);

  // Checks and stores one vote in its own transaction, committed (fsync'ed)
  // before it returns. Throws core::DataError naming the problem: an unknown
  // pair, shown samples that are not the pair's two, a choice outside
  // rating_choices(), an empty or over-long (64 bytes) rater name.
  VoteResult vote(RatingVote v);

  // The pair `rater` should see next: not yet voted on by them, fewest
  // (non-skip) votes first, then oldest; `batch` "" = any. nullopt when done.
  std::optional<RatingPair> next_pair(const std::string& rater, const std::string& batch = "");
  // Whether `rater` sees sample_b on the left (a stable hash of rater and pair).
  static bool swapped_for(const std::string& rater, int64_t pair);

  std::optional<RatingPair> pair(int64_t id);
  std::optional<RatingSample> sample(int64_t id);
  std::vector<RatingSample> samples();
  std::vector<RatingPair> pairs(const std::string& batch = "");
  std::vector<RatingVote> votes();  // in the order they were cast
  int64_t votes_by(const std::string& rater, const std::string& batch = "");

  // One JSON object per vote, in the order cast, with what a reader needs
  // without the database: {"kind":"pair","id","pair","batch","rater","time",
  // "choice","shown":[source A, source B],"samples":[id A, id B],"steps":[..],
  // "winner","prompt","texts":[A, B]} ("winner": a source, "tie", "both_bad"
  // or "skip"). `shardlm eval ratings --ratings` reads these lines.
  std::vector<nlohmann::json> export_votes();

 private:
  struct Db;
  std::unique_ptr<Db> db_;
  std::string path_;
};

}  // namespace shardlm::monitor
