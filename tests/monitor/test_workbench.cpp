// The aggregator's workbench for real: an Aggregator on a loopback port, Beast
// WebSocket clients as raters and viewers, the SQLite ratings database on
// disk, generation processes (a stand-in script that speaks `shardlm generate
// --events`), /api/evals, viewer_auth and the inspect rate limit; and an
// aggregator process killed with SIGKILL in the middle of voting, after which
// every vote it had acknowledged is in the database.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "monitor/aggregator.h"
#include "monitor/ratings_store.h"
#include "tests/monitor/test_util.h"
#include "tests/monitor/ws_client.h"

using namespace shardlm::monitor;
using namespace shardlm::monitor::testing;
namespace fs = std::filesystem;

namespace {

const std::string kToken = "c0ffee0123456789abcdef0123456789";
const std::string kRating = "4a7e0123456789abcdef0123456789ab";

AggregatorConfig config_for(const fs::path& dir) {
  AggregatorConfig c;
  c.port = 0;
  c.token = kToken;
  c.rating_token = kRating;
  c.run_dir = dir.string();
  c.static_dir = (dir / "no-dashboard").string();
  c.hello_timeout_s = 2;
  c.http_timeout_s = 2;
  c.idle_timeout_s = 5;
  c.tick_s = 0.05;
  return c;
}

// Two sources and `n` pairs of them in RUN_DIR/ratings.db.
std::vector<int64_t> seed_pairs(const fs::path& dir, int n) {
  RatingsStore db((dir / "ratings.db").string());
  std::vector<int64_t> pairs;
  for (int i = 0; i < n; ++i) {
    const std::string prompt = "prompt " + std::to_string(i);
    int64_t a = db.add_sample({"step-10", 10, prompt, " early " + std::to_string(i), {}});
    int64_t b = db.add_sample({"step-20", 20, prompt, " late " + std::to_string(i), {}});
    pairs.push_back(db.add_pair("10 vs 20", a, b));
  }
  return pairs;
}

std::unique_ptr<WsClient> viewer(uint16_t port, const std::string& token, json* welcome = nullptr) {
  auto v = std::make_unique<WsClient>(port);
  v->hello_viewer(token);
  auto w = v->recv_type("welcome", 5);
  EXPECT_TRUE(w.has_value());
  if (w && welcome) *welcome = *w;
  EXPECT_TRUE(v->recv_type("history_end", 5).has_value());
  return v;
}

json rate_next(const std::string& id, const std::string& rater) {
  return {{"v", 1}, {"type", "rate_next"}, {"id", id}, {"rater", rater}};
}
json rate_vote(const std::string& id, const std::string& rater, const json& pair,
               const std::string& choice) {
  return {{"v", 1},
          {"type", "rate_vote"},
          {"id", id},
          {"rater", rater},
          {"pair", pair["id"]},
          {"shown", {pair["a"]["sample"], pair["b"]["sample"]}},
          {"choice", choice}};
}

// A GET with an optional bearer token: (status, body).
std::pair<int, std::string> get(uint16_t port, const std::string& target,
                                const std::string& bearer = "") {
  namespace http = beast::http;
  net::io_context ioc;
  beast::tcp_stream s(ioc);
  tcp::resolver r(ioc);
  s.connect(r.resolve("127.0.0.1", std::to_string(port)));
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
  http::write(s, req);
  beast::flat_buffer b;
  http::response<http::string_body> res;
  http::read(s, b, res);
  beast::error_code ec;
  s.socket().shutdown(tcp::socket::shutdown_both, ec);
  return {static_cast<int>(res.result_int()), res.body()};
}

double metric(uint16_t port, const std::string& name) {
  auto [status, body] = get(port, "/metrics", kToken);
  EXPECT_EQ(status, 200);
  auto at = body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(body.substr(at + name.size() + 2));
}

}  // namespace

TEST(Workbench, RatersVoteAndEveryViewerSeesTheLeaderboardData) {
  auto dir = temp_dir("wb_rate");
  auto pairs = seed_pairs(dir, 3);
  Aggregator agg(config_for(dir));
  agg.start();
  EXPECT_EQ(agg.rating_token(), kRating);
  json w;
  auto rater = viewer(agg.port(), kRating, &w);
  EXPECT_EQ(w["control"], false);  // the rating token cannot control the run
  EXPECT_EQ(w["rate"], true);
  auto watcher = viewer(agg.port(), "");

  rater->send(rate_next("n1", "ann"));
  auto p = rater->recv_type("rate_pair", 5);
  ASSERT_TRUE(p);
  EXPECT_EQ(schema_errors(p->dump()), "");
  EXPECT_EQ((*p)["progress"], json({{"done", 0}, {"total", 3}}));
  const json pair = (*p)["pair"];
  EXPECT_EQ(pair["id"], pairs[0]);
  EXPECT_EQ(pair["prompt"], "prompt 0");
  EXPECT_FALSE(pair["a"].contains("source"));  // blind until the vote

  rater->send(rate_vote("v1", "ann", pair, "A"));
  auto ack = rater->recv_type("rate_ack", 5);
  ASSERT_TRUE(ack);
  EXPECT_EQ(schema_errors(ack->dump()), "");
  EXPECT_EQ((*ack)["ok"], true);
  EXPECT_EQ((*ack)["duplicate"], false);
  const std::string winner = (*ack)["reveal"]["a"]["source"];
  EXPECT_TRUE(winner == "step-10" || winner == "step-20");
  // On disk once acknowledged (a second connection to the file sees it).
  {
    RatingsStore reader((dir / "ratings.db").string(), true);
    auto votes = reader.votes();
    ASSERT_EQ(votes.size(), 1u);
    EXPECT_EQ(votes[0].rater, "ann");
    EXPECT_EQ(votes[0].shown_a, pair["a"]["sample"].get<int64_t>());
    EXPECT_EQ(votes[0].choice, "A");
  }
  // Every viewer hears of the vote (for the live leaderboard).
  auto update = watcher->recv_type("rate_votes", 5);
  ASSERT_TRUE(update);
  EXPECT_EQ(schema_errors(update->dump()), "");
  EXPECT_EQ((*update)["append"], true);
  ASSERT_EQ((*update)["votes"].size(), 1u);
  const json& row = (*update)["votes"][0];
  EXPECT_EQ(row["sources"], json({"step-10", "step-20"}));
  EXPECT_EQ(row["outcome"], winner == "step-10" ? "a" : "b");
  // The same vote again: the first stands.
  rater->send(rate_vote("v2", "ann", pair, "B"));
  auto dup = rater->recv_type("rate_ack", 5);
  ASSERT_TRUE(dup);
  EXPECT_EQ((*dup)["duplicate"], true);
  // The next pair for ann is another one; bob still gets the first (fewest votes first
  // among those he has not seen, and the first has one vote, so the second comes first).
  rater->send(rate_next("n2", "ann"));
  auto p2 = rater->recv_type("rate_pair", 5);
  ASSERT_TRUE(p2);
  EXPECT_EQ((*p2)["pair"]["id"], pairs[1]);
  EXPECT_EQ((*p2)["progress"]["done"], 1);
  // rate_list: all votes.
  watcher->send({{"v", 1}, {"type", "rate_list"}, {"id", "l1"}});
  auto all = watcher->recv_type("rate_votes", 5);
  ASSERT_TRUE(all);
  EXPECT_EQ((*all)["append"], false);
  EXPECT_EQ((*all)["votes"].size(), 1u);
  EXPECT_EQ((*all)["pairs"], 3);
}

TEST(Workbench, VotingNeedsATokenAndCreatingPairsTheControlToken) {
  auto dir = temp_dir("wb_auth");
  seed_pairs(dir, 1);
  Aggregator agg(config_for(dir));
  agg.start();
  json w;
  auto anon = viewer(agg.port(), "", &w);
  EXPECT_EQ(w["rate"], false);
  anon->send(rate_next("n1", "eve"));
  auto p = anon->recv_type("rate_pair", 5);  // reading pairs is open; voting is not
  ASSERT_TRUE(p);
  anon->send(rate_vote("v1", "eve", (*p)["pair"], "A"));
  std::vector<json> skipped;
  auto err = anon->recv_type("error", 5, &skipped);
  ASSERT_TRUE(err);
  EXPECT_EQ((*err)["code"], "unauthorized");
  EXPECT_EQ((*err)["ref"], "v1");
  EXPECT_TRUE(RatingsStore((dir / "ratings.db").string(), true).votes().empty());
  // A rater (rating token) may vote but not create comparisons.
  auto rater = viewer(agg.port(), kRating);
  rater->send({{"v", 1},
               {"type", "rate_create"},
               {"id", "c1"},
               {"sources", {"step-10", "step-20"}},
               {"prompts", {"x"}}});
  auto err2 = rater->recv_type("error", 5);
  ASSERT_TRUE(err2);
  EXPECT_EQ((*err2)["code"], "unauthorized");
  // Nor control the run.
  rater->send({{"v", 1}, {"type", "control"}, {"id", "c2"}, {"command", "pause"}});
  auto err3 = rater->recv_type("error", 5);
  ASSERT_TRUE(err3);
  EXPECT_EQ((*err3)["code"], "unauthorized");
  EXPECT_EQ(fs::exists(dir / "monitor.rating-token"), true);
}

TEST(Workbench, ViewerAuthRefusesWithoutATokenAndCountsIt) {
  auto dir = temp_dir("wb_viewer_auth");
  auto cfg = config_for(dir);
  cfg.viewer_auth = true;
  Aggregator agg(cfg);
  agg.start();
  // A viewer without a token: error unauthorized, then the connection closes.
  WsClient anon(agg.port());
  anon.hello_viewer("");
  auto e = anon.recv(5);
  ASSERT_TRUE(e);
  EXPECT_EQ((*e)["type"], "error");
  EXPECT_EQ((*e)["code"], "unauthorized");
  EXPECT_FALSE(anon.recv(3).has_value());
  EXPECT_TRUE(anon.closed());
  // With either token: welcome.
  viewer(agg.port(), kRating);
  viewer(agg.port(), kToken);
  // HTTP: 401 without a token, 200 with a bearer header or ?token=.
  EXPECT_EQ(get(agg.port(), "/api/health").first, 401);
  EXPECT_EQ(get(agg.port(), "/metrics").first, 401);
  EXPECT_EQ(get(agg.port(), "/api/health", "wrong-token-wrong-token").first, 401);
  EXPECT_EQ(get(agg.port(), "/api/health", kRating).first, 200);
  EXPECT_EQ(get(agg.port(), "/api/checkpoints?token=" + kToken).first, 200);
  EXPECT_EQ(get(agg.port(), "/").first, 404);  // the dashboard's files stay open (none here)
  EXPECT_EQ(metric(agg.port(), "shardlm_monitor_viewers_refused_total"), 1);
  EXPECT_EQ(metric(agg.port(), "shardlm_monitor_http_refused_total"), 3);
  EXPECT_EQ(agg.stats().viewers_refused, 1u);
}

TEST(Workbench, InspectIsRateLimitedForViewersWithoutAToken) {
  auto dir = temp_dir("wb_limit");
  auto cfg = config_for(dir);
  cfg.inspect_burst = 3;
  cfg.inspect_per_minute = 0.5;  // no refill within the test
  Aggregator agg(cfg);
  agg.start();
  auto anon = viewer(agg.port(), "");
  auto codes = [&](WsClient& v, int n, const std::string& prefix) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
      v.send({{"v", 1},
              {"type", "inspect"},
              {"id", prefix + std::to_string(i)},
              {"what", "architecture"}});
      auto e = v.recv_type("error", 5);
      out.push_back(e ? (*e)["code"].get<std::string>() : "none");
    }
    return out;
  };
  // No rank 0 here: within the budget the answer is no_producer, beyond it rate_limited.
  EXPECT_EQ(codes(*anon, 5, "a"),
            (std::vector<std::string>{"no_producer", "no_producer", "no_producer", "rate_limited",
                                      "rate_limited"}));
  auto trusted = viewer(agg.port(), kRating);
  EXPECT_EQ(codes(*trusted, 4, "t"), std::vector<std::string>(4, "no_producer"));
  EXPECT_EQ(agg.stats().inspect_limited, 2u);
  EXPECT_EQ(metric(agg.port(), "shardlm_monitor_inspect_rate_limited_total"), 2);
}

// Generation from a checkpoint runs a process per request whose JSON lines come
// back as inspect_result messages. The process here is a script that speaks
// `shardlm generate --events` (the real one is driven by the browser test).
TEST(Workbench, GenerationProcessLinesStreamToTheViewer) {
  auto dir = temp_dir("wb_gen");
  fs::create_directories(dir / "checkpoints/step-000020");
  const fs::path script = dir / "fake-shardlm.sh";
  {
    std::ofstream s(script);
    s << "#!/bin/sh\n"
         "# argv: generate --events --request JSON --model DIR\n"
         "echo \"$@\" > \"$(dirname \"$0\")/argv.txt\"\n"
         "echo '{\"event\":\"token\",\"prompt\":0,\"index\":0,\"id\":5,\"text\":\" a\","
         "\"delta\":\" a\",\"logprob\":-0.5,\"top\":[{\"id\":5,\"text\":\" "
         "a\",\"logprob\":-0.5}]}'\n"
         "echo 'not json: ignored'\n"
         "echo '{\"event\":\"token\",\"prompt\":0,\"index\":1,\"id\":6,\"text\":\" b\","
         "\"delta\":\" b\",\"logprob\":-1.5,\"top\":[]}'\n"
         "echo '{\"event\":\"done\",\"prompt\":0,\"text\":\" a b\",\"tokens\":[5,6],"
         "\"finish_reason\":\"length\",\"seconds\":0.01}'\n"
         "echo '{\"event\":\"end\"}'\n";
  }
  fs::permissions(script, fs::perms::owner_all);
  auto cfg = config_for(dir);
  cfg.shardlm = script.string();
  Aggregator agg(cfg);
  agg.start();
  auto v = viewer(agg.port(), kToken);
  v->send({{"v", 1},
           {"type", "inspect"},
           {"id", "g1"},
           {"what", "generate"},
           {"args",
            {{"target", "step-20"}, {"prompt", "Once"}, {"options", {{"max_new_tokens", 2}}}}}});
  std::vector<json> got;
  for (int i = 0; i < 3; ++i) {
    auto m = v->recv_type("inspect_result", 10);
    ASSERT_TRUE(m) << "answer " << i;
    EXPECT_EQ(schema_errors(m->dump()), "");
    got.push_back(*m);
  }
  EXPECT_EQ(got[0]["partial"], true);
  EXPECT_EQ(got[0]["data"]["text"], " a");
  EXPECT_EQ(got[0]["data"]["target"], "step-20");
  EXPECT_FALSE(got[0].contains("rank"));  // the aggregator answered
  EXPECT_EQ(got[1]["data"]["index"], 1);
  EXPECT_FALSE(got[2].contains("partial"));
  EXPECT_EQ(got[2]["ok"], true);
  EXPECT_EQ(got[2]["data"]["text"], " a b");
  std::ifstream argv_file(dir / "argv.txt");
  std::string argv((std::istreambuf_iterator<char>(argv_file)), {});
  EXPECT_NE(argv.find("generate --events --request"), std::string::npos) << argv;
  EXPECT_NE(argv.find("--model " + (dir / "checkpoints/step-000020").string()), std::string::npos)
      << argv;
  // An unknown checkpoint: not_found, no process.
  v->send({{"v", 1},
           {"type", "inspect"},
           {"id", "g2"},
           {"what", "generate"},
           {"args", {{"target", "step-99"}, {"prompt", "Once"}}}});
  auto e = v->recv_type("error", 5);
  ASSERT_TRUE(e);
  EXPECT_EQ((*e)["code"], "not_found");
  EXPECT_EQ((*e)["ref"], "g2");
  // A process that dies without an answer: ok false, naming the exit code.
  {
    std::ofstream s(script, std::ios::trunc);
    s << "#!/bin/sh\nexit 3\n";
  }
  v->send({{"v", 1},
           {"type", "inspect"},
           {"id", "g3"},
           {"what", "generate"},
           {"args", {{"target", "step-20"}, {"prompt", "Once"}}}});
  auto fail = v->recv_type("inspect_result", 10);
  ASSERT_TRUE(fail);
  EXPECT_EQ((*fail)["ok"], false);
  EXPECT_NE((*fail)["message"].get<std::string>().find("exited with code 3"), std::string::npos);
}

TEST(Workbench, EvaluationReportsOverHttp) {
  auto dir = temp_dir("wb_evals");
  fs::create_directories(dir / "eval");
  std::ofstream(dir / "eval/run.json") << R"({"model":"m","label":"a","suite":"s","tasks":[]})";
  std::ofstream(dir / "eval/cmp.json") << R"({"suite":"s","models":[],"comparisons":[]})";
  std::ofstream(dir / "eval/notes.txt") << "not a report";
  Aggregator agg(config_for(dir));
  agg.start();
  auto [status, body] = get(agg.port(), "/api/evals");
  ASSERT_EQ(status, 200);
  json list = json::parse(body);
  ASSERT_EQ(list["items"].size(), 2u);
  EXPECT_EQ(list["items"][0]["name"], "cmp.json");
  EXPECT_EQ(list["items"][0]["kind"], "compare");
  EXPECT_EQ(list["items"][1]["kind"], "run");
  auto [s2, report] = get(agg.port(), "/api/evals/run.json");
  EXPECT_EQ(s2, 200);
  EXPECT_EQ(json::parse(report)["label"], "a");
  EXPECT_EQ(get(agg.port(), "/api/evals/none.json").first, 404);
  EXPECT_EQ(get(agg.port(), "/api/evals/..%2Fmonitor.token").first, 400);
  EXPECT_EQ(get(agg.port(), "/api/evals/notes.txt").first, 400);
}

// The aggregator in a process of its own (forked before any thread of this test
// starts), two raters voting as fast as acknowledgements come, and SIGKILL in
// the middle: every vote acknowledged before the kill is in the database.
TEST(Workbench, SigkillDuringVotingLosesNoAcknowledgedVote) {
  auto dir = temp_dir("wb_kill");
  seed_pairs(dir, 60);
  int port_pipe[2];
  ASSERT_EQ(::pipe(port_pipe), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(port_pipe[0]);
    Aggregator agg(config_for(dir));
    agg.start();
    uint16_t port = agg.port();
    if (::write(port_pipe[1], &port, sizeof port) != sizeof port) ::_exit(2);
    agg.wait();
    ::_exit(0);
  }
  ::close(port_pipe[1]);
  uint16_t port = 0;
  ASSERT_EQ(::read(port_pipe[0], &port, sizeof port), static_cast<ssize_t>(sizeof port));
  ::close(port_pipe[0]);

  std::set<int64_t> acked;
  std::mutex mu;
  std::atomic<int> total{0};
  auto vote_loop = [&](const std::string& rater) {
    try {
      auto v = viewer(port, kRating);
      for (int i = 0;; ++i) {
        v->send(rate_next("n" + std::to_string(i), rater));
        auto p = v->recv_type("rate_pair", 5);
        if (!p || (*p)["pair"].is_null()) return;
        v->send(rate_vote("v" + std::to_string(i), rater, (*p)["pair"], i % 3 ? "A" : "tie"));
        auto ack = v->recv_type("rate_ack", 5);
        if (!ack) return;  // the aggregator is gone
        if ((*ack)["ok"] == true) {
          std::lock_guard<std::mutex> g(mu);
          acked.insert((*ack)["vote"].get<int64_t>());
          ++total;
        }
      }
    } catch (const std::exception&) {
      // the connection broke when the aggregator died
    }
  };
  std::thread a(vote_loop, "ann"), b(vote_loop, "bob");
  ASSERT_TRUE([&] {
    for (int i = 0; i < 1000 && total < 30; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return total >= 30;
  }()) << "votes were not acknowledged";
  ::kill(pid, SIGKILL);
  a.join();
  b.join();
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  ASSERT_GE(acked.size(), 30u);
  EXPECT_LT(acked.size(), 120u) << "voting finished before the kill: the test proves nothing";
  RatingsStore db((dir / "ratings.db").string());
  std::set<int64_t> stored;
  for (const auto& v : db.votes()) stored.insert(v.id);
  for (int64_t id : acked)
    EXPECT_TRUE(stored.count(id)) << "acknowledged vote " << id << " was lost";
}
