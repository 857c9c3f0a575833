// Sinks that need no server (file, stdout, fan-out, null), the hardware
// probes, and the [monitor] configuration.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "monitor/config.h"
#include "monitor/hardware.h"
#include "monitor/launch.h"
#include "monitor/schema.h"
#include "monitor/sink.h"
#include "monitor/websocket_sink.h"
#include "tests/monitor/test_util.h"

using namespace shardlm::monitor;
using json = nlohmann::json;
namespace fs = std::filesystem;
using shardlm::monitor::testing::temp_dir;

namespace {
StepMetrics a_step(int64_t s) {
  StepMetrics m;
  m.step = s;
  m.loss = 3.0 - 0.01 * s;
  m.lr = 1e-3;
  m.time.total = 0.25;
  m.tokens_per_s = 5000;
  return m;
}

// Captures published lines, for FanoutSink.
class CaptureSink : public MetricsSink {
 public:
  using MetricsSink::MetricsSink;
  void publish(std::string_view type, std::string line) override {
    types.emplace_back(type);
    lines.push_back(std::move(line));
  }
  std::vector<std::string> types, lines;
};

// A child that takes its time with each message (a file on a slow disk).
class SlowCaptureSink : public CaptureSink {
 public:
  using CaptureSink::CaptureSink;
  void publish(std::string_view type, std::string line) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    CaptureSink::publish(type, std::move(line));
  }
};
}  // namespace

TEST(SinkJsonl, AppendsOneSchemaValidLinePerMessage) {
  auto dir = temp_dir("jsonl");
  auto path = (dir / "sub" / "rank-0.jsonl").string();
  {
    JsonlSink s(path, 0);
    s.run_info("r", 1, json{{"device", "cpu"}});
    for (int i = 0; i < 3; ++i) s.step(a_step(i));
    ValidationMetrics v;
    v.step = 2;
    v.loss = 2.5;
    s.validation(v);
    Event e;
    e.kind = EventKind::kRunFinished;
    e.message = "done";
    s.event(e);
    EXPECT_EQ(s.stats().sent, 6u);
    EXPECT_EQ(s.stats().dropped, 0u);
  }
  {
    JsonlSink again(path, 0);  // appends, never truncates
    again.step(a_step(3));
  }
  std::ifstream in(path);
  std::vector<std::string> types;
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line);
    EXPECT_TRUE(protocol_validator().valid(j)) << line;
    types.push_back(j["type"]);
  }
  EXPECT_EQ(types, (std::vector<std::string>{"run_info", "step", "step", "step", "validation",
                                             "event", "step"}));
}

TEST(SinkJsonl, UnwritablePathNamesTheFile) {
  try {
    JsonlSink s("/proc/no/such/dir/m.jsonl", 0);
    FAIL() << "expected DataError";
  } catch (const shardlm::core::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("/proc/no/such/dir/m.jsonl"), std::string::npos);
  }
}

TEST(SinkStdout, HumanLinesOrJson) {
  std::FILE* f = std::tmpfile();
  StdoutSink human(1, false, f);
  human.step(a_step(7));
  Event e;
  e.kind = EventKind::kCheckpointSaved;
  e.step = 7;
  e.message = "saved step-7";
  human.event(e);
  StdoutSink raw(1, true, f);
  raw.step(a_step(8));
  std::rewind(f);
  char buf[4096] = {0};
  size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  std::string out(buf, n);
  EXPECT_NE(out.find("[rank 1] step       7 loss 2.9300"), std::string::npos) << out;
  EXPECT_NE(out.find("checkpoint_saved at step 7: saved step-7"), std::string::npos) << out;
  auto last = out.substr(out.rfind('\n', out.size() - 2) + 1);
  EXPECT_EQ(json::parse(last)["step"], 8);
}

TEST(SinkFanout, EveryChildGetsEveryMessageAndStatsAdd) {
  FanoutSink fan(0);
  auto a = std::make_shared<CaptureSink>(0);
  auto b = std::make_shared<CaptureSink>(0);
  fan.add_shared(a);
  fan.add_shared(b);
  fan.add(std::make_unique<NullSink>(0));
  fan.step(a_step(1));
  fan.run_info("r", 2, json::object());
  fan.publish("event", "{}");
  ASSERT_EQ(a->lines.size(), 3u);
  EXPECT_EQ(a->lines, b->lines);
  EXPECT_EQ(a->types, (std::vector<std::string>{"step", "run_info", "event"}));
  EXPECT_EQ(json::parse(a->lines[0])["step"], 1);
}

// Each child used to encode the message itself, each with its own clock
// reading: a file and the aggregator could record one event a millisecond
// apart (seen as this suite's flake under ASan). One timestamp per call now,
// however slow a child is; the next call takes a new one.
TEST(SinkFanout, ChildrenGetOneTimestampPerMessageEvenBehindASlowChild) {
  FanoutSink fan(0);
  auto slow = std::make_shared<SlowCaptureSink>(0);
  auto b = std::make_shared<CaptureSink>(0);
  fan.add_shared(slow);
  fan.add_shared(b);
  fan.run_info("r", 1, json::object());
  fan.step(a_step(1));
  fan.validation(ValidationMetrics{});
  Event e;
  e.message = "m";
  fan.event(e);
  ASSERT_EQ(slow->lines.size(), 4u);
  EXPECT_EQ(slow->lines, b->lines);
  EXPECT_LT(json::parse(b->lines[0])["ts"].get<double>(),
            json::parse(b->lines[3])["ts"].get<double>());
  // outside a fanout call the clock runs again
  double t0 = now_ts();
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  EXPECT_GT(now_ts(), t0);
}

TEST(SinkNull, DoesNothing) {
  NullSink s;
  s.step(a_step(1));
  s.publish("step", "x");
  EXPECT_EQ(s.stats().published, 0u);
  NullControl c;
  EXPECT_TRUE(c.poll().empty());
}

TEST(SinkHardware, HostMemoryFromProcAndNoGpuWithoutNvml) {
  auto h = read_host_memory();
  ASSERT_TRUE(h.has_value());
  EXPECT_GT(h->rss, 1 << 20);
  EXPECT_GT(h->total, h->available);
  EXPECT_GT(h->available, 0);
  HardwareProbe probe(0);
  StepMetrics m = a_step(1);
  probe.fill(m);
  EXPECT_EQ(*m.mem.host_total, h->total);
  Nvml nvml;
  if (nvml.available()) {
    // A machine with a driver: the GPU's numbers are there and valid.
    EXPECT_TRUE(m.gpu.has_value());
    EXPECT_GT(nvml.device_count(), 0);
  } else {
    EXPECT_FALSE(m.gpu.has_value());
    EXPECT_FALSE(nvml.reason().empty());
  }
  EXPECT_TRUE(protocol_validator().valid(encode_step(0, m)));
}

// The trainer hands the probe LibTorch's allocator statistics: they reach the
// step message as mem.device_* (valid under the schema); a source with nothing
// to say (a CPU run) leaves them out.
TEST(SinkHardware, DeviceAllocatorBytesFromTheCallersSource) {
  int calls = 0;
  HardwareProbe probe(-1, [&]() -> std::optional<DeviceAllocatorBytes> {
    ++calls;
    return DeviceAllocatorBytes{3 << 20, 8 << 20, 5 << 20};
  });
  StepMetrics m = a_step(1);
  probe.fill(m);
  EXPECT_EQ(calls, 1);
  auto j = encode_step(0, m);
  EXPECT_EQ(j["mem"]["device_allocated"], 3 << 20);
  EXPECT_EQ(j["mem"]["device_reserved"], 8 << 20);
  EXPECT_EQ(j["mem"]["device_peak"], 5 << 20);
  EXPECT_TRUE(protocol_validator().valid(j));
  HardwareProbe cpu(-1, [] { return std::optional<DeviceAllocatorBytes>(); });
  StepMetrics c = a_step(2);
  cpu.fill(c);
  EXPECT_FALSE(c.mem.device_allocated.has_value());
  EXPECT_FALSE(encode_step(0, c)["mem"].contains("device_peak"));
}

TEST(SinkConfig, ReadsTheMonitorSectionAndRejectsBadValues) {
  using shardlm::core::RunConfig;
  auto rc = RunConfig::parse(
      "[monitor]\nurl = \"ws://10.0.0.2:9000/ws\"\nevery = 5\nembedded = true\n", "run.toml");
  auto c = rc.get<MonitorConfig>("monitor");
  EXPECT_EQ(c.every, 5);
  EXPECT_TRUE(c.embedded);
  auto a = c.aggregator("/tmp/x");
  EXPECT_EQ(a.run_dir, "/tmp/x");
  EXPECT_EQ(a.port, 8765);
  EXPECT_TRUE(a.producer_auth);  // on unless switched off
  EXPECT_FALSE(RunConfig::parse("[monitor]\nproducer_auth = false\n", "run.toml")
                   .get<MonitorConfig>("monitor")
                   .aggregator(".")
                   .producer_auth);
  auto bad = RunConfig::parse("[monitor]\nurl = \"http://x\"\n", "run.toml");
  try {
    bad.get<MonitorConfig>("monitor");
    FAIL();
  } catch (const shardlm::core::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("monitor.url"), std::string::npos) << e.what();
  }
  EXPECT_THROW(RunConfig::parse("[monitor]\nevery = 0\n", "r.toml").get<MonitorConfig>("monitor"),
               shardlm::core::ConfigError);
  WebSocketSinkOptions o;
  o.set_url("ws://[::1]:8080");
  EXPECT_EQ(o.host, "::1");
  EXPECT_EQ(o.port, 8080);
  EXPECT_EQ(o.path, "/ws");
}

TEST(SinkConfig, OpenMonitorWithoutAggregatorGivesFileSinksAndNoControl) {
  auto dir = temp_dir("open");
  MonitorConfig c;
  c.stdout_lines = false;
  auto m = open_monitor(c, 3, 4, dir.string(), "r");
  m.sink->step(a_step(1));
  EXPECT_TRUE(fs::exists(dir / "metrics" / "rank-3.jsonl"));
  EXPECT_TRUE(m.control->poll().empty());
  EXPECT_FALSE(m.embedded);
  c.jsonl = false;
  auto none = open_monitor(c, 0, 1, dir.string(), "r");
  EXPECT_NE(dynamic_cast<NullSink*>(none.sink.get()), nullptr);
}

// Where the ranks' token comes from, in order: monitor.token, a fresh one
// (embedded), $SHARDLM_MONITOR_TOKEN, RUN_DIR/monitor.token, none.
TEST(SinkConfig, ResolveProducerTokenPrefersConfigThenEmbeddedThenEnvThenRunDirFile) {
  auto dir = temp_dir("token");
  ::unsetenv(kMonitorTokenEnv);
  MonitorConfig c;
  c.url = "ws://127.0.0.1:9/ws";
  shardlm::core::MpiComm self(MPI_COMM_SELF);
  EXPECT_EQ(resolve_producer_token(c, dir.string(), self), "");
  std::ofstream(dir / "monitor.token") << "from-file-0123\n";
  EXPECT_EQ(resolve_producer_token(c, dir.string(), self), "from-file-0123");
  ::setenv(kMonitorTokenEnv, "from-env", 1);
  EXPECT_EQ(resolve_producer_token(c, dir.string(), self), "from-env");
  c.embedded = true;
  auto fresh = resolve_producer_token(c, dir.string(), self);
  EXPECT_EQ(fresh.size(), 32u);
  EXPECT_NE(fresh, resolve_producer_token(c, dir.string(), self));
  c.token = "from-config";
  EXPECT_EQ(resolve_producer_token(c, dir.string(), self), "from-config");
  ::unsetenv(kMonitorTokenEnv);
}
