// The real Trainer on real data (the fixture made by make_fixture.sh, path in
// $SHARDLM_FIXTURE): the reference losses of a fixed-seed run, gradient
// accumulation, fp16 loss scaling with a forced overflow, layer-wise
// training, early stopping and the validation report, and (under mpiexec -n 2)
// the same losses on 2 ranks as on 1 for the same global batch, and both
// ranks' metrics reaching the monitor's aggregator (embedded in rank 0, or
// external with its token found in the run dir).
#include <gtest/gtest.h>
#include <mpi.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <torch/cuda.h>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/env.h"
#include "monitor/aggregator.h"
#include "parallel/process_group.h"
#include "runtime/trainer.h"
#include "tests/monitor/ws_client.h"

using namespace shardlm;
namespace fs = std::filesystem;

namespace {

std::string fixture() {
  const char* f = std::getenv("SHARDLM_FIXTURE");
  return f ? f : "";
}

// The benchmark model (4 layers, 4 heads, width 256, vocabulary 4096) at T=64
// so that tests stay fast; overrides are applied on top.
core::RunConfig config(const std::string& run_dir, std::vector<std::string> overrides) {
  std::string text = fmt::format(R"(
[train]
run_dir = "{}"
seed = 1234
steps = 20
grad_clip = 1.0
[train.schedule]
warmup_steps = 5
[optimizer]
lr = 1e-3
weight_decay = 0.1
[model]
vocab_size = 4096
context_length = 64
n_layer = 4
n_head = 4
d_model = 256
[data]
path = "{}/data"
batch_size = 8
seq_len = 64
prefetch = 2
[validation]
every = 0
batches = 4
[monitor]
jsonl = false
[log]
level = "warn"
)",
                                 run_dir, fixture());
  return core::RunConfig::parse(text, "test.toml", overrides);
}

core::Env single_env() {
  core::Env e;
  e.rank = 0;
  e.world_size = 1;
  e.cpu_threads = 1;
  return e;
}

// A run directory of this process (not collective).
// A run directory named after the test and a pid, emptied the first time this
// process names it: an earlier process with the same pid (pids wrap) may have
// left one in the temporary directory, and a run would append to its files.
std::string run_dir_of(const std::string& name, int pid, bool owner) {
  static std::set<std::string> named;
  const std::string dir =
      (fs::path(testing::TempDir()) / ("shardlm_rt_" + name + "_" + std::to_string(pid))).string();
  if (named.insert(dir).second && owner) fs::remove_all(dir);
  return dir;
}
std::string tmp_run(const std::string& name) {
  return run_dir_of(name, getpid(), true);
}
// One run directory for every rank of MPI_COMM_WORLD (collective).
std::string shared_run(const std::string& name) {
  int pid = getpid(), rank = 0;
  MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string dir = run_dir_of(name, pid, rank == 0);
  MPI_Barrier(MPI_COMM_WORLD);  // emptied before any rank uses it
  return dir;
}

runtime::TrainSummary train(const std::vector<std::string>& overrides, const std::string& name,
                            MPI_Comm comm = MPI_COMM_SELF, core::Env env = single_env()) {
  auto cfg = config(tmp_run(name), overrides);
  runtime::Trainer t(cfg, env, core::MpiComm(comm));
  EXPECT_EQ(t.run(), 0);
  return t.summary();
}

#define REQUIRE_FIXTURE() \
  if (fixture().empty()) GTEST_FAIL() << "SHARDLM_FIXTURE is not set (ctest sets it)"

}  // namespace

TEST(TrainerRun, ReproducesTheReferenceLosses) {
  REQUIRE_FIXTURE();
  auto s = train({}, "ref");
  ASSERT_EQ(s.losses.size(), 20u);
  std::string asset = std::string(SHARDLM_TEST_ASSETS) + "/reference_losses.json";
  if (std::getenv("SHARDLM_UPDATE_REFERENCE")) {
    nlohmann::json j = {{"what",
                         "first 20 global losses of the benchmark model at T=64, seed 1234, "
                         "on the test fixture (tests/runtime/make_fixture.sh)"},
                        {"losses", s.losses}};
    std::ofstream(asset) << j.dump(1) << "\n";
    GTEST_SKIP() << "reference written to " << asset;
  }
  std::ifstream in(asset);
  ASSERT_TRUE(in) << "missing " << asset;
  auto ref = nlohmann::json::parse(in)["losses"].get<std::vector<double>>();
  ASSERT_EQ(ref.size(), s.losses.size());
  // Bitwise on the machine that wrote it; other CPUs may round differently in
  // BLAS, so a relative 1e-4 is accepted and reported.
  int exact = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    exact += ref[i] == s.losses[i];
    EXPECT_NEAR(s.losses[i], ref[i], 1e-4 * std::abs(ref[i])) << "step " << i;
  }
  std::printf("reference losses: %d of %zu bitwise identical\n", exact, ref.size());
  // And the model learns: the loss falls far below the uniform ln(4096) = 8.3.
  EXPECT_LT(s.losses.back(), s.losses.front() - 1.0);
}

TEST(TrainerRun, AccumulationEqualsOneLargeBatch) {
  REQUIRE_FIXTURE();
  auto big = train({"train.steps=4"}, "acc1");
  auto acc = train({"train.steps=4", "data.batch_size=2", "train.accumulation=4"}, "acc4");
  ASSERT_EQ(big.losses.size(), acc.losses.size());
  for (size_t i = 0; i < big.losses.size(); ++i)
    EXPECT_NEAR(acc.losses[i], big.losses[i], 1e-5 * big.losses[i]) << "step " << i;
}

TEST(TrainerRun, Fp16ScalerSkipsTheOverflowingStepAndHalves) {
  REQUIRE_FIXTURE();
  // A scale of 2^127 makes the scaled gradients overflow: the first steps are
  // skipped and the scale halves each time until the gradients are finite.
  auto s = train({"train.steps=3", "train.precision=\"fp16\"", "loss_scaler.init_scale=1.7e38",
                  "loss_scaler.max_scale=1.7e38", "monitor.jsonl=true"},
                 "fp16");
  std::ifstream in(fs::path(tmp_run("fp16")) / "metrics" / "rank-0.jsonl");
  ASSERT_TRUE(in);
  std::vector<double> scales, skipped;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] != "step") continue;
    scales.push_back(j["loss_scale"].get<double>());
    skipped.push_back(j["extra"]["skipped_steps"].get<double>());
  }
  ASSERT_EQ(scales.size(), 3u);
  // Step 0 overflowed: skipped, scale halved (reported after the update).
  EXPECT_DOUBLE_EQ(skipped[0], 1);
  EXPECT_DOUBLE_EQ(scales[0], 1.7e38 / 2);
  // Each later step either overflowed again (halved once more, one more skip)
  // or was clean (scale kept, no skip).
  for (size_t i = 1; i < scales.size(); ++i) {
    bool halved = scales[i] == scales[i - 1] / 2;
    EXPECT_TRUE(halved || scales[i] == scales[i - 1]) << "step " << i;
    EXPECT_EQ(skipped[i], skipped[i - 1] + (halved ? 1 : 0)) << "step " << i;
  }
  for (double l : s.losses) EXPECT_TRUE(std::isfinite(l));
}

TEST(TrainerRun, LayerwiseTrainingFreezesLowerBlocks) {
  REQUIRE_FIXTURE();
  auto s = train({"train.steps=6", "train.freeze_schedule=[0, 1, 3, 4]"}, "freeze");
  EXPECT_EQ(s.losses.size(), 6u);
  for (double l : s.losses) EXPECT_TRUE(std::isfinite(l));
}

TEST(TrainerRun, EarlyStoppingAndValidationReport) {
  REQUIRE_FIXTURE();
  // A learning rate of 0 never improves: patience 2 stops after 3 validations.
  auto s = train({"train.steps=50", "optimizer.lr=0.0", "validation.every=2",
                  "validation.early_stopping.enabled=true", "validation.early_stopping.patience=2"},
                 "early");
  EXPECT_TRUE(s.early_stopped);
  EXPECT_EQ(s.steps_done, 6);
  auto report =
      nlohmann::json::parse(std::ifstream(fs::path(tmp_run("early")) / "validation_report.json"));
  EXPECT_TRUE(report["early_stopped"].get<bool>());
  // Steps 2, 4 and 6, each once (the final validation does not repeat step 6).
  ASSERT_EQ(report["validations"].size(), 3u);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(report["validations"][i]["step"].get<int64_t>(), 2 * (i + 1));
  double loss = report["validations"][0]["loss"].get<double>();
  EXPECT_NEAR(report["validations"][0]["perplexity"].get<double>(), std::exp(loss),
              1e-6 * std::exp(loss));
  EXPECT_TRUE(fs::exists(fs::path(tmp_run("early")) / "validation_report.txt"));
}

TEST(TrainerRun, BadConfigNamesTheKey) {
  REQUIRE_FIXTURE();
  auto cfg = config(tmp_run("bad"), {"train.stepz=3"});
  try {
    runtime::Trainer t(cfg, single_env(), core::MpiComm(MPI_COMM_SELF));
    FAIL() << "no error";
  } catch (const core::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.stepz"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("train.steps"), std::string::npos) << e.what();
  }
}

// Under mpiexec -n 2: 2 ranks x batch 4 see the same global batches as 1 rank x 8.
TEST(TrainerMpi, TwoRanksMatchOneRank) {
  REQUIRE_FIXTURE();
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  ASSERT_EQ(world, 2);
  std::vector<double> ref(5, 0.0);
  if (rank == 0) ref = train({"train.steps=5"}, "mpi1").losses;
  MPI_Bcast(ref.data(), 5, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  core::Env env = core::Env::detect();
  env.cpu_threads = 1;
  auto cfg = config(shared_run("mpi2"), {"train.steps=5", "data.batch_size=4"});
  runtime::Trainer t(cfg, env, core::MpiComm(MPI_COMM_WORLD));
  ASSERT_EQ(t.run(), 0);
  const auto& got = t.summary().losses;
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(got[i], ref[i], 1e-5 * ref[i]) << "step " << i;
}

// ---- monitor --------------------------------------------------------------------------------

namespace {
// A TCP port that was free a moment ago (rank 0 picks it, every rank gets it).
int free_port() {
  int port = 0;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port = ntohs(a.sin_port);
    if (fd >= 0) ::close(fd);
  }
  MPI_Bcast(&port, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return port;
}

// The steps of each rank in RUN_DIR/metrics.jsonl (the aggregator's history),
// once every rank's last step is there (waits at most 10 s).
std::map<int, std::set<int64_t>> aggregated_steps(const std::string& run_dir, int64_t last) {
  std::map<int, std::set<int64_t>> steps;
  for (int tries = 0; tries < 200; ++tries) {
    steps.clear();
    std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.value("type", "") == "step")
        steps[j["rank"].get<int>()].insert(j["step"].get<int64_t>());
    }
    if (steps[0].count(last) && steps[1].count(last)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return steps;
}
}  // namespace

// monitor.embedded: rank 0 starts the aggregator with a token it broadcasts,
// so rank 1's sink is accepted too.
TEST(TrainerMpi, EmbeddedMonitorReceivesBothRanksMetrics) {
  REQUIRE_FIXTURE();
  core::Env env = core::Env::detect();
  env.cpu_threads = 1;
  const std::string dir = shared_run("embedded");
  auto cfg = config(dir, {"train.steps=3", "data.batch_size=4", "monitor.embedded=true",
                          fmt::format("monitor.port={}", free_port()), "monitor.heartbeat_s=0.2"});
  runtime::Trainer t(cfg, env, core::MpiComm(MPI_COMM_WORLD));
  ASSERT_EQ(t.run(), 0);
  MPI_Barrier(MPI_COMM_WORLD);  // every rank flushed; rank 0's aggregator is still up
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    auto steps = aggregated_steps(dir, 2);
    EXPECT_EQ(steps[0], (std::set<int64_t>{0, 1, 2}));
    EXPECT_EQ(steps[1], (std::set<int64_t>{0, 1, 2}));
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// An aggregator for run `dir` on rank 0 (a free port, no static files); every
// rank learns its port.
std::unique_ptr<monitor::Aggregator> aggregator_on_rank0(const std::string& dir, int* port) {
  std::unique_ptr<monitor::Aggregator> agg;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  *port = 0;
  if (rank == 0) {
    monitor::AggregatorConfig ac;
    ac.port = 0;
    ac.run_dir = dir;
    ac.static_dir = dir + "/none";
    agg = std::make_unique<monitor::Aggregator>(ac);
    agg->start();
    *port = agg->port();
  }
  MPI_Bcast(port, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return agg;
}

// `shardlm monitor --run-dir D` (here in-process on rank 0) writes D/monitor.token;
// a run with train.run_dir = D and monitor.url finds it there (rank 0 reads it and
// broadcasts it), so both ranks are accepted without monitor.token.
TEST(TrainerMpi, ExternalMonitorTokenFromTheRunDir) {
  REQUIRE_FIXTURE();
  core::Env env = core::Env::detect();
  env.cpu_threads = 1;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const std::string dir = shared_run("external");
  int port = 0;
  std::unique_ptr<monitor::Aggregator> agg = aggregator_on_rank0(dir, &port);
  {
    auto cfg = config(dir, {"train.steps=3", "data.batch_size=4",
                            fmt::format("monitor.url=\"ws://127.0.0.1:{}/ws\"", port)});
    runtime::Trainer t(cfg, env, core::MpiComm(MPI_COMM_WORLD));
    ASSERT_EQ(t.run(), 0);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    auto steps = aggregated_steps(dir, 2);
    EXPECT_EQ(steps[0], (std::set<int64_t>{0, 1, 2}));
    EXPECT_EQ(steps[1], (std::set<int64_t>{0, 1, 2}));
    EXPECT_EQ(agg->stats().producers_refused, 0u);
  }
}

// The Generate tab on a live run: rank 0 generates from the current weights
// between steps (sampling, greedy and beam, tokens streamed), every rank takes
// part, and the run's losses are bitwise those of the same run without it:
// generation must not touch the weights, the optimizer, dropout's RNG (the
// model uses dropout here) or the data order.
TEST(TrainerMpi, LiveGenerationLeavesTrainingBitwiseIdentical) {
  REQUIRE_FIXTURE();
  core::Env env = core::Env::detect();
  env.cpu_threads = 1;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int64_t kSteps = 24;
  auto run = [&](const std::string& name, bool generate, std::vector<nlohmann::json>* done) {
    const std::string dir = shared_run(name);
    int port = 0;
    std::unique_ptr<monitor::Aggregator> agg = aggregator_on_rank0(dir, &port);
    // A viewer on rank 0 asks for three generations at steps 1, 3 and 5 and
    // collects what comes back.
    std::thread viewer;
    if (rank == 0 && generate) {
      viewer = std::thread([port, token = agg->token(), done] {
        monitor::testing::WsClient v(static_cast<uint16_t>(port));
        v.hello_viewer(token);
        const std::vector<std::pair<int64_t, nlohmann::json>> asks = {
            {1, {{"strategy", "sample"}, {"temperature", 0.9}, {"max_new_tokens", 6}}},
            {3, {{"strategy", "greedy"}, {"max_new_tokens", 6}}},
            {5, {{"strategy", "beam"}, {"num_beams", 2}, {"max_new_tokens", 4}}}};
        size_t next = 0;
        std::map<std::string, int> streamed;
        // One read until the deadline: a read that times out closes WsClient's
        // stream, and the trainer takes seconds to set up before its first message.
        const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(240);
        while (done->size() < asks.size()) {
          const double left =
              std::chrono::duration<double>(end - std::chrono::steady_clock::now()).count();
          if (left <= 0) break;
          auto m = v.recv(left);
          if (!m) break;
          if ((*m)["type"] == "step" && (*m)["rank"] == 0 && next < asks.size() &&
              (*m)["step"].get<int64_t>() >= asks[next].first) {
            v.send({{"v", 1},
                    {"type", "inspect"},
                    {"id", "g" + std::to_string(next)},
                    {"what", "generate"},
                    {"args",
                     {{"prompt", "The king said"}, {"options", asks[next].second}, {"top", 3}}}});
            ++next;
          }
          if ((*m)["type"] == "inspect_result") {
            const std::string id = (*m)["id"];
            if (m->value("partial", false)) {
              ++streamed[id];
            } else {
              nlohmann::json d = *m;
              d["streamed"] = streamed[id];
              done->push_back(d);
            }
          }
        }
      });
    }
    auto cfg = config(dir, {fmt::format("train.steps={}", kSteps), "data.batch_size=4",
                            "model.dropout=0.1", "train.schedule.total_steps=24",
                            fmt::format("monitor.url=\"ws://127.0.0.1:{}/ws\"", port)});
    runtime::TrainSummary summary;
    {
      runtime::Trainer t(cfg, env, core::MpiComm(MPI_COMM_WORLD));
      EXPECT_EQ(t.run(), 0);
      summary = t.summary();
    }
    if (viewer.joinable()) viewer.join();
    MPI_Barrier(MPI_COMM_WORLD);
    return summary.losses;
  };
  std::vector<nlohmann::json> done, none;
  const auto with = run("gen_live", true, &done);
  const auto without = run("gen_none", false, &none);
  ASSERT_EQ(with.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(without.size(), with.size());
  for (size_t i = 0; i < with.size(); ++i)
    EXPECT_EQ(with[i], without[i]) << "step " << i << ": generation changed training";
  if (rank == 0) {
    ASSERT_EQ(done.size(), 3u) << "the live run did not answer every generation";
    for (const auto& d : done) {
      ASSERT_EQ(d["ok"], true) << d.dump();
      const auto& data = d["data"];
      EXPECT_EQ(data["event"], "done");
      EXPECT_EQ(data["target"], "live");
      EXPECT_GE(data["step"].get<int64_t>(), 1);
      EXPECT_LT(data["step"].get<int64_t>(), kSteps);
      EXPECT_EQ(d["streamed"].get<size_t>(), data["tokens"].size()) << "every token streamed";
      EXPECT_GT(data["tokens"].size(), 0u);
    }
  }
}

// ---- checkpoints ------------------------------------------------------------------------

namespace {
// Runs `steps` steps (of a 20-step schedule) in `dir`, resuming when asked.
runtime::TrainSummary run_in(const std::string& dir, int64_t steps, bool resume,
                             std::vector<std::string> extra = {}, MPI_Comm comm = MPI_COMM_SELF,
                             core::Env env = single_env()) {
  std::vector<std::string> o = {fmt::format("train.steps={}", steps),
                                "train.schedule.total_steps=20", "ckpt.save_final=true",
                                "ckpt.async=false", "model.dropout=0.1"};
  if (resume) o.push_back("ckpt.resume=\"latest\"");
  o.insert(o.end(), extra.begin(), extra.end());
  auto cfg = config(dir, o);
  runtime::Trainer t(cfg, env, core::MpiComm(comm));
  EXPECT_EQ(t.run(), 0);
  return t.summary();
}

core::Env env_of(MPI_Comm comm) {
  core::Env e;
  MPI_Comm_rank(comm, &e.rank);
  MPI_Comm_size(comm, &e.world_size);
  e.local_rank = e.rank;
  e.local_size = e.world_size;
  e.cpu_threads = 1;
  return e;
}
}  // namespace

TEST(TrainerCkpt, ResumeIsBitwiseIdentical) {
  REQUIRE_FIXTURE();
  // Dropout on: the RNG state must come back too.
  auto straight = run_in(tmp_run("straight"), 20, false);
  std::string dir = tmp_run("resumed");
  run_in(dir, 10, false);
  auto resumed = run_in(dir, 20, true);
  ASSERT_EQ(resumed.losses.size(), 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(resumed.losses[i], straight.losses[i]) << "step " << i;
}

TEST(TrainerCkpt, CheckpointOfAnotherModelIsRefused) {
  REQUIRE_FIXTURE();
  std::string dir = tmp_run("othermodel");
  run_in(dir, 2, false);
  try {
    run_in(dir, 4, true, {"model.n_layer=3"});
    FAIL() << "no error";
  } catch (const core::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("model.n_layer"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("step-000002"), std::string::npos) << e.what();
  }
}

// 2 ranks, ZeRO-3 with CPU offload: save at 10, resume with layer streaming
// (parameter shards offloaded too), bitwise equal to the run that never stopped.
TEST(TrainerCkptMpi, Zero3OffloadResumeIsBitwise) {
  REQUIRE_FIXTURE();
  core::Env env = env_of(MPI_COMM_WORLD);
  std::vector<std::string> z3 = {"parallel.zero_stage=3", "parallel.cpu_offload=true",
                                 "data.batch_size=4"};
  std::string a = shared_run("z3straight"), b = shared_run("z3resumed");
  auto straight = run_in(a, 20, false, z3, MPI_COMM_WORLD, env);
  run_in(b, 10, false, z3, MPI_COMM_WORLD, env);
  std::vector<std::string> streamed = z3;
  streamed.push_back("parallel.offload_params=true");
  auto resumed = run_in(b, 20, true, streamed, MPI_COMM_WORLD, env);
  ASSERT_EQ(resumed.losses.size(), 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(resumed.losses[i], straight.losses[i]) << "step " << i;
}

// Saved by 4 ranks (ZeRO-2), resumed by 2 (ZeRO-3) and by 1 (ZeRO-0): the next
// losses match the run that never stopped.
TEST(TrainerReshardMpi, FourRanksToTwoAndOne) {
  REQUIRE_FIXTURE();
  int rank = 0, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  ASSERT_EQ(world, 4);
  std::string base = shared_run("reshard");
  // Global batch 8 everywhere: 4 x 2, 2 x 4, 1 x 8. No dropout: only the
  // arithmetic of other shard boundaries may differ.
  auto four = [&](const std::string& dir, int64_t steps) {
    return run_in(dir, steps, false,
                  {"parallel.zero_stage=2", "data.batch_size=2", "model.dropout=0.0"},
                  MPI_COMM_WORLD, env_of(MPI_COMM_WORLD));
  };
  auto straight = four(base + "_straight", 20);
  four(base + "_saved", 10);
  MPI_Barrier(MPI_COMM_WORLD);
  // The saved run copied for each resumer (they write new checkpoints into it).
  if (rank == 0) {
    fs::copy(base + "_saved", base + "_two", fs::copy_options::recursive);
    fs::copy(base + "_saved", base + "_one", fs::copy_options::recursive);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Comm two;
  MPI_Comm_split(MPI_COMM_WORLD, rank < 2 ? 0 : MPI_UNDEFINED, rank, &two);
  if (two != MPI_COMM_NULL) {
    auto s = run_in(base + "_two", 20, true,
                    {"parallel.zero_stage=3", "data.batch_size=4", "model.dropout=0.0"}, two,
                    env_of(two));
    ASSERT_EQ(s.losses.size(), 20u);
    for (size_t i = 10; i < 20; ++i)
      EXPECT_NEAR(s.losses[i], straight.losses[i], 1e-5 * straight.losses[i])
          << "2 ranks, step " << i;
    MPI_Comm_free(&two);
  }
  if (rank == 0) {
    auto s = run_in(base + "_one", 20, true, {"data.batch_size=8", "model.dropout=0.0"});
    ASSERT_EQ(s.losses.size(), 20u);
    for (size_t i = 10; i < 20; ++i)
      EXPECT_NEAR(s.losses[i], straight.losses[i], 1e-5 * straight.losses[i])
          << "1 rank, step " << i;
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// ---- every collective on the group's device -------------------------------------------

namespace {

// A ProcessGroup that forwards every collective to the group the run chose and
// records what it was handed: the kind of each call and every tensor whose
// device is not the group's (NcclGroup refuses those; MpiGroup would stage them).
class RecordingGroup final : public parallel::ProcessGroup {
 public:
  explicit RecordingGroup(std::shared_ptr<parallel::ProcessGroup> inner)
      : ProcessGroup(inner->rank(), inner->size(), inner->options(), inner->device()),
        inner_(std::move(inner)) {}
  std::string backend() const override { return "recording+" + inner_->backend(); }

  parallel::WorkPtr all_reduce_async(torch::Tensor t, parallel::ReduceOp op,
                                     const parallel::CollectiveOptions& o) override {
    note("all_reduce", {t});
    return inner_->all_reduce_async(t, op, o);
  }
  parallel::WorkPtr reduce_scatter_async(torch::Tensor out, torch::Tensor in, parallel::ReduceOp op,
                                         const parallel::CollectiveOptions& o) override {
    note("reduce_scatter", {out, in});
    return inner_->reduce_scatter_async(out, in, op, o);
  }
  parallel::WorkPtr all_gather_async(torch::Tensor out, torch::Tensor in,
                                     const parallel::CollectiveOptions& o) override {
    note("all_gather", {out, in});
    return inner_->all_gather_async(out, in, o);
  }
  parallel::WorkPtr broadcast_async(torch::Tensor t, int root,
                                    const parallel::CollectiveOptions& o) override {
    note("broadcast", {t});
    return inner_->broadcast_async(t, root, o);
  }
  parallel::WorkPtr barrier_async(const parallel::CollectiveOptions& o) override {
    note("barrier", {});
    return inner_->barrier_async(o);
  }

  std::map<std::string, int> calls;
  std::vector<std::string> foreign;  // "kind: device" of every tensor not on device()

 private:
  void note(const std::string& kind, std::initializer_list<torch::Tensor> ts) {
    ++calls[kind];
    for (const auto& t : ts)
      if (t.device() != device()) foreign.push_back(kind + ": " + t.device().str());
  }
  std::shared_ptr<parallel::ProcessGroup> inner_;
};

}  // namespace

// Every tensor the Trainer, validation, the loss scaler, checkpointing, control
// and resume hand to the process group lives on the group's device. On a GPU
// machine SHARDLM_TEST_DEVICE=cuda runs the same on CUDA (2 ranks sharing one
// device: the MPI group, staging through the host).
TEST(TrainerMpi, EveryCollectiveIsOnTheGroupsDevice) {
  REQUIRE_FIXTURE();
  const char* dev = std::getenv("SHARDLM_TEST_DEVICE");
  const std::string device = dev && *dev ? dev : "cpu";
  if (device != "cpu" && !torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  core::Env env = env_of(MPI_COMM_WORLD);
  std::string dir = shared_run("recording_" + device);
  std::vector<std::shared_ptr<RecordingGroup>> seen;
  auto record = [&seen](std::shared_ptr<parallel::ProcessGroup> g) {
    auto r = std::make_shared<RecordingGroup>(std::move(g));
    seen.push_back(r);
    return std::shared_ptr<parallel::ProcessGroup>(r);
  };
  for (bool resume : {false, true}) {
    auto cfg =
        config(dir, {"train.steps=" + std::string(resume ? "8" : "6"),
                     "train.device=\"" + device + "\"", "train.precision=\"fp16\"",
                     "parallel.zero_stage=2", "data.batch_size=4", "validation.every=2",
                     "ckpt.every=3", resume ? "ckpt.resume=\"latest\"" : "ckpt.resume=\"\""});
    runtime::Trainer t(cfg, env, core::MpiComm(MPI_COMM_WORLD), record);
    EXPECT_EQ(t.run(), 0);
  }
  ASSERT_EQ(seen.size(), 2u);
  for (const auto& g : seen) {
    EXPECT_EQ(g->device().str(), device == "cpu" ? "cpu" : g->device().str());
    EXPECT_TRUE(g->foreign.empty()) << g->foreign.size() << " tensors off the group's device, e.g. "
                                    << (g->foreign.empty() ? "" : g->foreign.front());
    // The token counts, losses, validation sums, the scaler's flag and the
    // agreement on controls (all_reduce); ZeRO-2 (reduce_scatter, all_gather);
    // the initial parameters and strings (broadcast).
    for (const char* kind : {"all_reduce", "reduce_scatter", "all_gather", "broadcast"})
      EXPECT_GT(g->calls[kind], 0) << kind;
  }
  MPI_Barrier(MPI_COMM_WORLD);
}
