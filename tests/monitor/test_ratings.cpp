// The ratings database (monitor/ratings_store.h) on a real SQLite file: the
// schema, vote checks with the error each bad vote gets, the order in which a
// rater is shown pairs, a second process reading while one writes (WAL), and a
// writer killed with SIGKILL mid-stream losing none of the votes it had
// reported as stored.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "monitor/ratings_store.h"
#include "test_util.h"

namespace shardlm::monitor {
namespace {

namespace fs = std::filesystem;
using testing::temp_dir;

struct Fixture {
  fs::path dir;
  std::string db;
  int64_t a = 0, b = 0, c = 0, p1 = 0, p2 = 0;
};

Fixture make(const std::string& name) {
  Fixture f;
  f.dir = temp_dir(name);
  f.db = (f.dir / "ratings.db").string();
  RatingsStore s(f.db);
  f.a = s.add_sample({"step-200", 200, "Once upon", " a time", {{"strategy", "greedy"}}});
  f.b = s.add_sample({"step-400", 400, "Once upon", " a hill", {}});
  f.c = s.add_sample({"step-400", 400, "The river", " flows", {}});
  int64_t d = s.add_sample({"step-200", 200, "The river", " was", {}});
  f.p1 = s.add_pair("200 vs 400", f.a, f.b);
  f.p2 = s.add_pair("200 vs 400", d, f.c);
  return f;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const core::DataError& e) {
    return e.message();
  }
  return "";
}

TEST(Ratings, StoresSamplesPairsAndVotes) {
  auto f = make("store");
  RatingsStore s(f.db);
  auto sa = s.sample(f.a);
  ASSERT_TRUE(sa);
  EXPECT_EQ(sa->source, "step-200");
  EXPECT_EQ(sa->step, 200);
  EXPECT_EQ(sa->options["strategy"], "greedy");
  EXPECT_EQ(s.pairs().size(), 2u);
  EXPECT_EQ(s.pairs("other").size(), 0u);

  VoteResult r = s.vote({"alice", f.p1, f.b, f.a, "A"});
  EXPECT_GT(r.id, 0);
  EXPECT_FALSE(r.duplicate);
  // The same rater on the same pair again: refused as a duplicate, the first vote kept.
  VoteResult again = s.vote({"alice", f.p1, f.a, f.b, "B"});
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.id, r.id);
  s.vote({"bob", f.p1, f.a, f.b, "tie"});
  auto votes = s.votes();
  ASSERT_EQ(votes.size(), 2u);
  EXPECT_EQ(votes[0].rater, "alice");
  EXPECT_EQ(votes[0].choice, "A");
  EXPECT_EQ(votes[0].shown_a, f.b);
  EXPECT_GT(votes[0].time, 1.7e9);
  EXPECT_EQ(s.votes_by("alice"), 1);

  // The export names the sources in the order shown and who won.
  auto rows = s.export_votes();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["shown"], nlohmann::json({"step-400", "step-200"}));
  EXPECT_EQ(rows[0]["winner"], "step-400");
  EXPECT_EQ(rows[0]["steps"], nlohmann::json({400, 200}));
  EXPECT_EQ(rows[0]["prompt"], "Once upon");
  EXPECT_EQ(rows[1]["winner"], "tie");
  // WAL journal: the log file exists next to the database.
  EXPECT_TRUE(fs::exists(f.db + "-wal"));
}

TEST(Ratings, BadVotesNameTheProblem) {
  auto f = make("bad");
  RatingsStore s(f.db);
  EXPECT_NE(error_of([&] {
              s.vote({"alice", 999, f.a, f.b, "A"});
            }).find("no pair 999"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              s.vote({"alice", f.p1, f.a, f.c, "A"});
            }).find("holds samples"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              s.vote({"alice", f.p1, f.a, f.b, "maybe"});
            }).find("'maybe'"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              s.vote({"", f.p1, f.a, f.b, "A"});
            }).find("rater name"),
            std::string::npos);
  EXPECT_NE(error_of([&] { s.add_pair("x", f.a, f.a); }).find("two different samples"),
            std::string::npos);
  EXPECT_TRUE(s.votes().empty());
  // A file that is not a ratings database is refused by name.
  const std::string other = (f.dir / "other.db").string();
  { std::ofstream(other) << "not sqlite at all, just text that is long enough to be read"; }
  std::string e = error_of([&] { RatingsStore bad(other); });
  EXPECT_NE(e.find(other), std::string::npos) << e;
  EXPECT_NE(error_of([&] { RatingsStore missing((f.dir / "none.db").string(), true); }), "");
}

TEST(Ratings, NextPairSkipsWhatTheRaterDidAndPrefersFewVotes) {
  auto f = make("next");
  RatingsStore s(f.db);
  auto n = s.next_pair("alice");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->id, f.p1);  // both have no votes: the oldest
  s.vote({"bob", f.p1, f.a, f.b, "A"});
  n = s.next_pair("alice");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->id, f.p2);  // p1 has a vote now
  s.vote({"alice", f.p2, n->sample_a, n->sample_b, "skip"});
  n = s.next_pair("alice");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->id, f.p1);
  s.vote({"alice", f.p1, f.a, f.b, "both_bad"});
  EXPECT_FALSE(s.next_pair("alice"));
  EXPECT_FALSE(s.next_pair("carol", "no such batch"));
  // The A/B order is a property of (rater, pair): the same every time it is asked.
  EXPECT_EQ(RatingsStore::swapped_for("alice", f.p1), RatingsStore::swapped_for("alice", f.p1));
  int swapped = 0;
  for (int p = 0; p < 200; ++p) swapped += RatingsStore::swapped_for("alice", p);
  EXPECT_GT(swapped, 60);  // both orders occur
  EXPECT_LT(swapped, 140);
}

TEST(Ratings, AReaderSeesCommittedVotesWhileAWriterHoldsTheDatabase) {
  auto f = make("wal");
  RatingsStore writer(f.db);
  writer.vote({"alice", f.p1, f.a, f.b, "A"});
  RatingsStore reader(f.db, /*read_only=*/true);
  EXPECT_EQ(reader.votes().size(), 1u);
  writer.vote({"bob", f.p1, f.a, f.b, "B"});
  EXPECT_EQ(reader.votes().size(), 2u);
}

// A writer process reports each vote id once vote() returned, then is killed
// with SIGKILL at an arbitrary point: every reported vote is in the database.
TEST(Ratings, SigkillLosesNoReportedVote) {
  auto f = make("kill");
  {
    RatingsStore s(f.db);
    for (int i = 0; i < 100; ++i) s.add_pair("many", f.a, f.b);
  }
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    RatingsStore s(f.db);
    for (int i = 0;; ++i) {
      auto p = s.next_pair("writer", "many");
      if (!p) break;
      VoteResult r = s.vote({"writer", p->id, p->sample_a, p->sample_b, i % 2 ? "A" : "B"});
      int64_t id = r.id;
      if (::write(fds[1], &id, sizeof id) != sizeof id) break;
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::set<int64_t> reported;
  int64_t id = 0;
  while (reported.size() < 40 && ::read(fds[0], &id, sizeof id) == sizeof id) reported.insert(id);
  ::kill(pid, SIGKILL);
  while (::read(fds[0], &id, sizeof id) == sizeof id) reported.insert(id);  // already in the pipe
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer finished before it was killed";
  ASSERT_GE(reported.size(), 40u);
  RatingsStore after(f.db);  // recovers from the WAL
  std::set<int64_t> stored;
  for (const auto& v : after.votes()) stored.insert(v.id);
  for (int64_t r : reported) EXPECT_TRUE(stored.count(r)) << "vote " << r << " was lost";
}

}  // namespace
}  // namespace shardlm::monitor
