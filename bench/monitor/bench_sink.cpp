// What one monitor call costs the training thread: encoding a step message,
// each sink's step(), the hardware probe, and the control poll. The trainer
// calls these once per step (~0.3 s on the CPU benchmark model), so the
// monitor's share of a step is (sum of these) / 0.3 s. WebSocketSink is
// measured against a live in-process aggregator on loopback, and with no
// aggregator at all (queue full, dropping the oldest).
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <filesystem>

#include "monitor/aggregator.h"
#include "monitor/hardware.h"
#include "monitor/sink.h"
#include "monitor/websocket_sink.h"

using namespace shardlm::monitor;
namespace fs = std::filesystem;

namespace {

StepMetrics typical_step() {
  StepMetrics m;
  m.step = 1000;
  m.epoch = 0;
  m.loss = 3.14159;
  m.lr = 3e-4;
  m.grad_norm = 0.92;
  m.tokens = 4096000;
  m.tokens_per_s = 13653.3;
  m.time = {0.3, 0.002, 0.1, 0.15, 0.03, 0.015, 0.003};
  m.mem.host_rss = 812000000;
  m.mem.host_available = 15000000000;
  m.mem.host_total = 24000000000;
  m.hparams.lr = 3e-4;
  m.hparams.weight_decay = 0.1;
  m.hparams.clip = 1.0;
  m.hparams.micro_batch = 8;
  m.hparams.accumulation = 4;
  return m;
}

fs::path bench_dir() {
  fs::path p = fs::temp_directory_path() / ("shardlm_bench_monitor_" + std::to_string(::getpid()));
  fs::create_directories(p);
  return p;
}

}  // namespace

static void BM_EncodeStep(benchmark::State& state) {
  StepMetrics m = typical_step();
  for (auto _ : state) {
    std::string s = dump(encode_step(0, m));
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_EncodeStep);

static void BM_NullSinkStep(benchmark::State& state) {
  NullSink sink;
  StepMetrics m = typical_step();
  for (auto _ : state) sink.step(m);
}
BENCHMARK(BM_NullSinkStep);

static void BM_JsonlSinkStep(benchmark::State& state) {
  auto dir = bench_dir();
  JsonlSink sink((dir / "rank-0.jsonl").string(), 0);
  StepMetrics m = typical_step();
  for (auto _ : state) sink.step(m);
  fs::remove_all(dir);
}
BENCHMARK(BM_JsonlSinkStep);

// Connected to an aggregator with one viewer-less history: the full rank-side cost.
static void BM_WebSocketSinkStepConnected(benchmark::State& state) {
  auto dir = bench_dir();
  AggregatorConfig cfg;
  cfg.port = 0;
  cfg.run_dir = dir.string();
  cfg.static_dir = (dir / "none").string();
  Aggregator agg(cfg);
  agg.start();
  WebSocketSinkOptions o;
  o.port = agg.port();
  o.token = agg.token();
  {
    WebSocketSink sink(o, 0);
    sink.wait_connected(5);
    StepMetrics m = typical_step();
    for (auto _ : state) sink.step(m);
    sink.flush(10);
    state.counters["dropped"] = double(sink.stats().dropped);
  }
  agg.stop();
  fs::remove_all(dir);
}
BENCHMARK(BM_WebSocketSinkStepConnected);

// No aggregator: the queue is full and every call drops the oldest message.
static void BM_WebSocketSinkStepNoAggregator(benchmark::State& state) {
  WebSocketSinkOptions o;
  o.port = 1;  // nothing listens there
  o.queue_capacity = 256;
  WebSocketSink sink(o, 0);
  StepMetrics m = typical_step();
  for (auto _ : state) sink.step(m);
  state.counters["dropped"] = double(sink.stats().dropped);
}
BENCHMARK(BM_WebSocketSinkStepNoAggregator);

static void BM_HardwareProbeFill(benchmark::State& state) {
  HardwareProbe probe(0);  // NVML when present
  StepMetrics m = typical_step();
  for (auto _ : state) probe.fill(m);
  state.counters["nvml"] = probe.has_gpu() ? 1 : 0;
}
BENCHMARK(BM_HardwareProbeFill);

static void BM_WebSocketSinkPollControl(benchmark::State& state) {
  WebSocketSinkOptions o;
  o.port = 1;
  WebSocketSink sink(o, 0);
  for (auto _ : state) benchmark::DoNotOptimize(sink.poll());
}
BENCHMARK(BM_WebSocketSinkPollControl);

BENCHMARK_MAIN();
