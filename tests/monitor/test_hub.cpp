// The aggregator's state without sockets: bounded history with thinning,
// reload after a restart (a torn last line is skipped), cross-rank
// aggregates, stragglers, dead ranks and the Prometheus text.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "monitor/hub.h"
#include "monitor/launch.h"
#include "monitor/protocol.h"
#include "monitor/schema.h"
#include "tests/monitor/test_util.h"

using namespace shardlm::monitor;
using json = nlohmann::json;
namespace fs = std::filesystem;
using shardlm::monitor::testing::temp_dir;

namespace {
json step_msg(int rank, int64_t step, double time, double loss = 2.0) {
  StepMetrics m;
  m.step = step;
  m.loss = loss;
  m.lr = 1e-3;
  m.time.total = time;
  m.tokens_per_s = 1000;
  m.grad_norm = 1.0;
  return encode_step(rank, m);
}

std::string errors_of(const json& j) {
  std::string s;
  for (auto& e : protocol_validator().errors(j)) s += e + "; ";
  return s;
}

int count_type(const std::vector<json>& v, const std::string& type) {
  int n = 0;
  for (auto& m : v) n += m["type"] == type;
  return n;
}
}  // namespace

TEST(HubHistory, SeqIsDenseAndFileKeepsEverything) {
  auto dir = temp_dir("hist");
  {
    History h;
    h.open((dir / "metrics.jsonl").string());
    for (int i = 0; i < 10; ++i) {
      json m = step_msg(0, i, 0.1);
      auto t = h.append(m);
      EXPECT_EQ(json::parse(*t)["seq"], i);
    }
    EXPECT_EQ(h.size(), 10u);
  }
  std::ifstream in(dir / "metrics.jsonl");
  int lines = 0;
  for (std::string l; std::getline(in, l);) ++lines;
  EXPECT_EQ(lines, 10);
}

TEST(HubHistory, ReloadAfterRestartContinuesSeqAndSkipsTornLine) {
  auto dir = temp_dir("reload");
  auto path = (dir / "metrics.jsonl").string();
  {
    History h;
    h.open(path);
    for (int i = 0; i < 5; ++i) {
      json m = step_msg(0, i, 0.1);
      h.append(m);
    }
  }
  {  // a crash in the middle of a write
    std::ofstream out(path, std::ios::app);
    out << "{\"v\":1,\"type\":\"step\",\"se";
  }
  History h;
  h.open(path);
  EXPECT_EQ(h.size(), 5u);
  EXPECT_EQ(h.skipped_lines(), 1u);
  EXPECT_EQ(h.next_seq(), 5);
  json m = step_msg(0, 5, 0.1);
  EXPECT_EQ(json::parse(*h.append(m))["seq"], 5);
  // The new line was not glued to the torn one: a third open reads 6 messages.
  History again;
  again.open(path);
  EXPECT_EQ(again.size(), 6u);
  EXPECT_EQ(again.skipped_lines(), 1u);
}

TEST(HubHistory, BoundedMemoryThinsStepsButKeepsEventsAndValidation) {
  HistoryOptions o;
  o.max_messages = 1000;
  o.max_bytes = size_t{1} << 30;
  History h(o);
  int events = 0;
  for (int s = 0; s < 5000; ++s) {
    for (int r = 0; r < 2; ++r) {
      json m = step_msg(r, s, 0.1);
      h.append(m);
    }
    if (s % 500 == 0) {
      Event e;
      e.kind = EventKind::kCheckpointSaved;
      e.message = "ckpt";
      e.step = s;
      json m = encode_event(0, e);
      h.append(m);
      ++events;
    }
    ASSERT_LE(h.size(), o.max_messages);
  }
  auto snap = h.snapshot();
  int kept_events = 0, rank0 = 0, rank1 = 0;
  int64_t prev_seq = -1;
  for (auto& t : snap) {
    json j = json::parse(*t);
    EXPECT_GT(j["seq"].get<int64_t>(), prev_seq);
    prev_seq = j["seq"];
    if (j["type"] == "event") ++kept_events;
    if (j["type"] == "step") (j["rank"] == 0 ? rank0 : rank1)++;
  }
  EXPECT_EQ(kept_events, events);  // never thinned
  EXPECT_EQ(rank0, rank1);         // thinning keeps both ranks of a kept step
  EXPECT_GT(h.thinned(), 0u);
  // The oldest kept step is still the first one: the whole run stays visible.
  EXPECT_EQ(json::parse(*snap.front())["step"], 0);
}

TEST(HubTracker, AggregateWhenEveryRankReportedWithStatsAndStraggler) {
  TrackerOptions o;
  o.straggler_fraction = 0.2;
  RankTracker t(o);
  std::vector<json> out;
  for (int r = 0; r < 3; ++r) {
    json ri = encode_run_info(r, "run", 3, json::object());
    for (auto& m : t.observe(ri, 0.0)) out.push_back(m);
  }
  EXPECT_EQ(count_type(out, "aggregate"), 0);
  out.clear();
  for (auto& m : t.observe(step_msg(0, 1, 1.0, 2.0), 1.0)) out.push_back(m);
  for (auto& m : t.observe(step_msg(1, 1, 1.1, 3.0), 1.0)) out.push_back(m);
  EXPECT_EQ(count_type(out, "aggregate"), 0);  // rank 2 has not reported step 1
  for (auto& m : t.observe(step_msg(2, 1, 2.0, 4.0), 1.0)) out.push_back(m);
  ASSERT_EQ(count_type(out, "aggregate"), 1);
  json a;
  for (auto& m : out) {
    EXPECT_EQ(errors_of(m), "") << m.dump();
    if (m["type"] == "aggregate") a = m;
  }
  EXPECT_TRUE(a["complete"].get<bool>());
  EXPECT_EQ(a["ranks"], 3);
  EXPECT_DOUBLE_EQ(a["loss"]["mean"].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(a["loss"]["min"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(a["step_time"]["median"].get<double>(), 1.1);
  EXPECT_DOUBLE_EQ(a["tokens_per_s"]["sum"].get<double>(), 3000);
  EXPECT_EQ(a["stragglers"], json::array({2}));  // 2.0 > 1.1 * 1.2
  EXPECT_EQ(count_type(out, "event"), 1);        // the straggler event
  std::string prom = t.prometheus(1.0);
  EXPECT_NE(prom.find("shardlm_rank_straggler{rank=\"2\"} 1"), std::string::npos) << prom;
  EXPECT_NE(prom.find("shardlm_loss{rank=\"1\"} 3"), std::string::npos) << prom;
}

TEST(HubTracker, DeadRankIsDeclaredAndNoLongerAwaited) {
  TrackerOptions o;
  o.dead_after_s = 5;
  RankTracker t(o);
  t.observe(encode_run_info(0, "run", 2, json::object()), 0.0);
  t.observe(encode_run_info(1, "run", 2, json::object()), 0.0);
  auto out = t.observe(step_msg(0, 7, 0.5), 1.0);
  EXPECT_EQ(count_type(out, "aggregate"), 0);
  t.observe(json{{"v", 1}, {"type", "heartbeat"}, {"ts", 1.0}, {"rank", 0}}, 4.0);
  out = t.tick(4.0);
  EXPECT_EQ(count_type(out, "event"), 0);
  out = t.tick(6.5);  // rank 1 silent since 0.0, rank 0 heard at 4.0
  ASSERT_EQ(count_type(out, "event"), 1);
  json lost;
  for (auto& m : out)
    if (m["type"] == "event") lost = m;
  EXPECT_EQ(lost["kind"], "rank_lost");
  EXPECT_EQ(lost["data"]["rank"], 1);
  EXPECT_EQ(count_type(out, "aggregate"), 1);  // step 7 no longer waits for rank 1
  json ranks = t.ranks_message(6.5);
  EXPECT_EQ(errors_of(ranks), "");
  EXPECT_EQ(ranks["ranks"][1]["state"], "dead");
  EXPECT_EQ(ranks["ranks"][0]["state"], "alive");
  // It comes back: rank_joined, alive again.
  out = t.observe(step_msg(1, 8, 0.5), 7.0);
  EXPECT_EQ(count_type(out, "event"), 1);
  EXPECT_EQ(t.ranks_message(7.0)["ranks"][1]["state"], "alive");
}

// A restarted aggregator: rank 1 reconnects first and resends its queued
// steps, then rank 0 (whose run_info is the first this tracker hears of the
// run). Every step is aggregated from both ranks as soon as both sent it.
TEST(HubTracker, RanksReconnectingInAnyOrderAfterARestartKeepTheirSteps) {
  RankTracker t{TrackerOptions{}};
  std::vector<json> out;
  const auto feed = [&](const json& m) {
    for (auto& x : t.observe(m, 1.0)) out.push_back(x);
  };
  feed(encode_run_info(1, "run-a", 2, json::object()));
  for (int s = 33; s <= 36; ++s) feed(step_msg(1, s, 0.5));
  EXPECT_EQ(count_type(out, "aggregate"), 0);  // rank 0 not heard from yet
  feed(encode_run_info(0, "run-a", 2, json::object()));
  for (int s = 33; s <= 36; ++s) feed(step_msg(0, s, 0.5));
  std::vector<json> aggs;
  for (auto& m : out)
    if (m["type"] == "aggregate") aggs.push_back(m);
  ASSERT_EQ(aggs.size(), 4u);
  for (size_t i = 0; i < aggs.size(); ++i) {
    EXPECT_EQ(aggs[i]["step"], 33 + static_cast<int>(i));
    EXPECT_TRUE(aggs[i]["complete"].get<bool>()) << aggs[i].dump();
    EXPECT_EQ(aggs[i]["ranks"], 2);
  }
  // A later new run (a resume with another run id) still starts afresh: its
  // steps may go back.
  out.clear();
  feed(encode_run_info(0, "run-b", 2, json::object()));
  feed(encode_run_info(1, "run-b", 2, json::object()));
  feed(step_msg(0, 24, 0.5));
  feed(step_msg(1, 24, 0.5));
  ASSERT_EQ(count_type(out, "aggregate"), 1);
}

TEST(HubTracker, PendingWindowEmitsPartialAggregates) {
  TrackerOptions o;
  o.pending_steps = 4;
  RankTracker t(o);
  t.observe(encode_run_info(0, "run", 2, json::object()), 0.0);
  int partial = 0;
  for (int s = 0; s < 10; ++s)
    for (auto& m : t.observe(step_msg(0, s, 0.1), 1.0))
      if (m["type"] == "aggregate") {
        EXPECT_FALSE(m["complete"].get<bool>());
        ++partial;
      }
  EXPECT_EQ(partial, 10 - 4);
}

TEST(HubCheckpoints, ListsStepDirectoriesWithManifests) {
  auto dir = temp_dir("ckpt");
  fs::create_directories(dir / "checkpoints/step-20");
  fs::create_directories(dir / "checkpoints/step-3");
  fs::create_directories(dir / "checkpoints/other");
  std::ofstream(dir / "checkpoints/step-20/manifest.json") << R"({"step":20,"world_size":2})";
  std::ofstream(dir / "checkpoints/step-3/manifest.json") << "{torn";
  json items = list_checkpoints(dir.string());
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0]["name"], "step-3");
  EXPECT_EQ(items[0]["step"], 3);
  EXPECT_TRUE(items[0]["manifest"].is_null());
  EXPECT_EQ(items[1]["manifest"]["world_size"], 2);
  json msg = envelope("checkpoints");
  msg["run_dir"] = dir.string();
  msg["items"] = items;
  EXPECT_EQ(errors_of(msg), "");
  EXPECT_EQ(find_checkpoint(dir.string(), "step-20"),
            fs::canonical(dir / "checkpoints/step-20").string());
  EXPECT_THROW(find_checkpoint(dir.string(), "step-99"), shardlm::core::CheckpointError);
  EXPECT_THROW(find_checkpoint(dir.string(), "../../etc"), shardlm::core::CheckpointError);
  EXPECT_THROW(find_checkpoint(dir.string(), "/etc"), shardlm::core::CheckpointError);
}

TEST(HubLauncher, ExpandsPlaceholdersWithoutAShellAndReportsExit) {
  auto dir = temp_dir("launch");
  RunLauncher l("mpirun -n 2 prog --config {config} --out={run_dir}/x {resume_args}", dir.string());
  auto argv = l.argv("a b;rm -rf x.toml", "ck");
  ASSERT_EQ(argv.size(), 9u);
  EXPECT_EQ(argv[5], "a b;rm -rf x.toml");  // one word, whatever it contains
  EXPECT_EQ(argv[6], "--out=" + dir.string() + "/x");
  EXPECT_EQ(argv[7], "--resume");
  EXPECT_EQ(argv[8], "ck");
  EXPECT_EQ(l.argv("c", "").size(), 7u);  // no resume: the placeholder vanishes

  std::ofstream(dir / "run.sh") << "echo started\nsleep 0.5\nexit 7\n";
  RunLauncher t("/bin/sh {config}", dir.string());
  pid_t pid = t.start((dir / "run.sh").string());
  EXPECT_GT(pid, 0);
  EXPECT_THROW(t.start("again.sh"), shardlm::core::Error);  // one run at a time
  std::optional<int> rc;
  for (int i = 0; i < 500 && !rc; ++i) {
    rc = t.poll();
    if (!rc) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(rc.has_value());
  EXPECT_EQ(*rc, 7);
  std::ifstream log(t.log_path());
  std::string line;
  std::getline(log, line);
  EXPECT_EQ(line, "started");
  RunLauncher none("", dir.string());
  EXPECT_THROW(none.start("x"), shardlm::core::ConfigError);
}
