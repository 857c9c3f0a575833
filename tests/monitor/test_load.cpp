// The load test of the issue (label e2e): 100 viewers and 8 producers (real
// WebSocketSinks, 50 step messages/s each) for 30 s on loopback, plus one
// viewer that stops reading. Healthy viewers must lose nothing (dense seq, every
// step), p99 delivery latency (publish() to viewer) must stay under 50 ms, memory
// must stay bounded, and the stalled viewer must slow neither viewers nor
// producers. The measured numbers are printed (and recorded in bench/RESULTS.md).
// SHARDLM_MONITOR_LOAD_SECONDS shortens the run while developing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/resource.h>
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "monitor/aggregator.h"
#include "monitor/websocket_sink.h"
#include "tests/monitor/ws_client.h"
#include "tests/sanitizer.h"

using namespace shardlm::monitor;
using namespace shardlm::monitor::testing;
namespace fs = std::filesystem;

namespace {

double steady_us() {
  using namespace std::chrono;
  return double(duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count());
}

int64_t proc_kb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  return -1;
}

// Reads a number after `"key":` in a JSON text without parsing all of it.
bool number_after(const std::string& text, const char* key, double& out) {
  auto p = text.find(key);
  if (p == std::string::npos) return false;
  out = std::strtod(text.c_str() + p + std::strlen(key), nullptr);
  return true;
}

class AsyncViewer : public std::enable_shared_from_this<AsyncViewer> {
 public:
  AsyncViewer(net::io_context& ioc, uint16_t port, bool stall)
      : ws_(net::make_strand(ioc)), port_(port), stall_(stall) {}

  void start() {
    auto& sock = beast::get_lowest_layer(ws_).socket();
    sock.open(tcp::v4());
    if (stall_) sock.set_option(net::socket_base::receive_buffer_size(4096));
    beast::get_lowest_layer(ws_).async_connect(
        tcp::endpoint(net::ip::make_address("127.0.0.1"), port_),
        [self = shared_from_this()](beast::error_code ec) {
          if (ec) return self->fail("connect " + ec.message());
          self->ws_.async_handshake("127.0.0.1", "/ws", [self](beast::error_code e) {
            if (e) return self->fail("handshake " + e.message());
            self->hello_ = R"({"v":1,"type":"hello","role":"viewer","client":"load"})";
            self->ws_.async_write(net::buffer(self->hello_), [self](beast::error_code e2, size_t) {
              if (e2) return self->fail("hello " + e2.message());
              self->read();
            });
          });
        });
  }

  void read() {
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, size_t n) {
      if (ec) {
        if (!self->stopping_) self->fail("read " + ec.message());
        return;
      }
      self->on_message(beast::buffers_to_string(self->buf_.data()));
      self->buf_.consume(n);
      if (self->stall_ && self->welcomed_) return;  // stops reading for good
      self->read();
    });
  }

  void on_message(const std::string& m) {
    const double now = steady_us();
    if (!welcomed_) {
      welcomed_ = m.find("\"type\":\"welcome\"") != std::string::npos;
      return;
    }
    double seq = -1;
    if (number_after(m, "\"seq\":", seq)) {
      if (last_seq_ >= 0 && seq != last_seq_ + 1) ++gaps_;
      last_seq_ = seq;
    }
    if (m.find("\"type\":\"step\"") != std::string::npos) {
      double sent = 0;
      if (number_after(m, "\"t_send_us\":", sent))
        latencies_ms_.push_back(float((now - sent) / 1000.0));
      ++steps_;
    }
  }

  void stop() {
    net::post(ws_.get_executor(), [self = shared_from_this()] {
      self->stopping_ = true;
      beast::error_code ec;
      beast::get_lowest_layer(self->ws_).socket().close(ec);
    });
  }

  void fail(const std::string& what) {
    std::lock_guard<std::mutex> g(error_mu_);
    error_ = what;
  }

  bool welcomed() const { return welcomed_; }
  int64_t steps() const { return steps_; }
  int64_t gaps() const { return gaps_; }
  std::vector<float>& latencies() { return latencies_ms_; }
  std::string error() {
    std::lock_guard<std::mutex> g(error_mu_);
    return error_;
  }

 private:
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buf_;
  uint16_t port_;
  bool stall_;
  std::string hello_;
  std::atomic<bool> welcomed_{false}, stopping_{false};
  std::atomic<int64_t> steps_{0}, gaps_{0};
  double last_seq_ = -1;
  std::vector<float> latencies_ms_;
  std::mutex error_mu_;
  std::string error_;
};

}  // namespace

TEST(MonitorLoad, HundredViewersEightProducersFiftyHzThirtySeconds) {
  const int seconds = std::getenv("SHARDLM_MONITOR_LOAD_SECONDS")
                          ? std::atoi(std::getenv("SHARDLM_MONITOR_LOAD_SECONDS"))
                          : 30;
  const int kViewers = 100, kProducers = 8, kHz = 50;
  const int64_t expected_steps = int64_t(kProducers) * kHz * seconds;
  fs::path dir = fs::temp_directory_path() / ("shardlm_load_" + std::to_string(::getpid()));
  fs::remove_all(dir);

  AggregatorConfig cfg;
  cfg.port = 0;
  cfg.run_dir = dir.string();
  cfg.static_dir = (dir / "none").string();
  cfg.threads = 2;
  cfg.viewer_queue = 4096;
  Aggregator agg(cfg);
  agg.start();
  const int64_t rss_start_kb = proc_kb("VmRSS");
  auto cpu_seconds = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  };
  double load_start[1] = {0};
  getloadavg(load_start, 1);

  net::io_context client_ioc;
  auto guard = net::make_work_guard(client_ioc);
  std::vector<std::thread> client_threads;
  for (int i = 0; i < 2; ++i) client_threads.emplace_back([&] { client_ioc.run(); });
  std::vector<std::shared_ptr<AsyncViewer>> viewers;
  for (int i = 0; i < kViewers; ++i)
    viewers.push_back(std::make_shared<AsyncViewer>(client_ioc, agg.port(), false));
  auto stalled = std::make_shared<AsyncViewer>(client_ioc, agg.port(), true);
  for (auto& v : viewers) v->start();
  stalled->start();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (agg.stats().viewers < kViewers + 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(agg.stats().viewers, uint64_t(kViewers + 1)) << viewers[0]->error();

  // Producers: real rank sinks, each publishing from its own "training" thread.
  std::vector<std::unique_ptr<WebSocketSink>> sinks;
  for (int r = 0; r < kProducers; ++r) {
    WebSocketSinkOptions o;
    o.port = agg.port();
    o.world_size = kProducers;
    o.run_id = "load";
    o.token = agg.token();
    sinks.push_back(std::make_unique<WebSocketSink>(o, r));
  }
  for (auto& s : sinks) ASSERT_TRUE(s->wait_connected(10));
  std::vector<double> max_publish_us(kProducers, 0), total_publish_us(kProducers, 0);
  std::vector<std::thread> producers;
  const auto t0 = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  const double cpu0 = cpu_seconds();
  for (int r = 0; r < kProducers; ++r) {
    producers.emplace_back([&, r] {
      StepMetrics m;
      m.lr = 3e-4;
      m.tokens_per_s = 10000;
      m.grad_norm = 1.0;
      for (int64_t s = 0; s < int64_t(kHz) * seconds; ++s) {
        std::this_thread::sleep_until(t0 + std::chrono::microseconds(s * 1000000 / kHz));
        m.step = s;
        m.loss = 4.0 - 1e-4 * s;
        m.time.total = 1.0 / kHz;
        const double a = steady_us();
        m.extra["t_send_us"] = a;
        sinks[r]->step(m);
        const double d = steady_us() - a;
        max_publish_us[r] = std::max(max_publish_us[r], d);
        total_publish_us[r] += d;
      }
    });
  }
  for (auto& t : producers) t.join();
  for (auto& s : sinks) s->flush(10);
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  auto all_done = [&] {
    for (auto& v : viewers)
      if (v->steps() < expected_steps) return false;
    return true;
  };
  while (!all_done() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const double cpu_used = cpu_seconds() - cpu0;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t rss_peak_kb = proc_kb("VmHWM");
  const int64_t rss_end_kb = proc_kb("VmRSS");
  AggregatorStats st = agg.stats();
  uint64_t sink_dropped = 0;
  for (auto& s : sinks) sink_dropped += s->stats().dropped;

  for (auto& v : viewers) v->stop();
  stalled->stop();
  guard.reset();
  for (auto& t : client_threads) t.join();

  std::vector<float> lat;
  int64_t min_steps = expected_steps, gaps = 0;
  for (auto& v : viewers) {
    min_steps = std::min(min_steps, v->steps());
    gaps += v->gaps();
    lat.insert(lat.end(), v->latencies().begin(), v->latencies().end());
  }
  ASSERT_FALSE(lat.empty());
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) { return lat[std::min(lat.size() - 1, size_t(p * lat.size()))]; };
  double max_pub = *std::max_element(max_publish_us.begin(), max_publish_us.end());
  double mean_pub = 0;
  for (double t : total_publish_us) mean_pub += t;
  mean_pub /= double(expected_steps);
  std::printf(
      "monitor load: %d viewers + 1 stalled, %d producers x %d msg/s x %d s = %lld steps\n"
      "  delivered to every healthy viewer: min %lld steps, %lld seq gaps\n"
      "  latency publish->viewer: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms (%zu "
      "samples)\n"
      "  publish() on the training thread: mean %.1f us, max %.1f us; sink drops %llu\n"
      "  aggregator: broadcast %llu msgs, dropped for the stalled viewer %llu, max viewer queue "
      "%llu, "
      "history %llu msgs / %.1f MiB\n"
      "  process RSS: start %.1f MiB, end %.1f MiB, peak %.1f MiB\n"
      "  process CPU (server + 101 clients + 8 sinks): %.2f cores over %.1f s; machine load "
      "average %.1f at start, "
      "%u cores\n",
      kViewers, kProducers, kHz, seconds, (long long)expected_steps, (long long)min_steps,
      (long long)gaps, pct(0.5), pct(0.99), pct(0.999), lat.back(), lat.size(), mean_pub, max_pub,
      (unsigned long long)sink_dropped, (unsigned long long)st.broadcast,
      (unsigned long long)st.viewer_dropped, (unsigned long long)st.max_viewer_queue,
      (unsigned long long)st.history_messages, st.history_bytes / 1048576.0, rss_start_kb / 1024.0,
      rss_end_kb / 1024.0, rss_peak_kb / 1024.0, cpu_used / wall, wall, load_start[0],
      std::thread::hardware_concurrency());

  EXPECT_EQ(min_steps, expected_steps);  // no lost messages for healthy viewers
  EXPECT_EQ(gaps, 0);
  EXPECT_EQ(sink_dropped, 0u);  // producers were never held up
  // p99 delivery latency: a goal for a machine that gives this process its cores. On a
  // shared machine already busier than its core count (load average at the start, other
  // jobs included) the process is starved (see the CPU line above) and the number says
  // more about the neighbours than about the server: it is printed, not judged.
  const double cores = std::max(1u, std::thread::hardware_concurrency());
  if (shardlm::testing::kSanitizerBuild)
    std::printf("  p99 latency goal (< 50 ms) not judged: sanitizer build\n");
  else if (load_start[0] < cores)
    EXPECT_LT(pct(0.99), 50.0);
  else
    std::printf("  p99 latency goal (< 50 ms) not judged: load average %.1f on %.0f cores\n",
                load_start[0], cores);
  // The stalled viewer's queue stays within its bound (whether it overflowed depends on the
  // kernel's socket buffers; ServerSlowViewer forces the overflow and checks it).
  EXPECT_LE(st.max_viewer_queue, cfg.viewer_queue);
  EXPECT_LE(st.history_bytes, cfg.history.max_bytes);
  // Bounded memory: the whole process (server, 101 clients, 8 sinks) grows by less
  // than the history's worth plus the queues' bound.
  if (!shardlm::testing::kSanitizerBuild)  // ASan's quarantine keeps what was freed
    EXPECT_LT(rss_peak_kb - rss_start_kb, 512 * 1024);
  fs::remove_all(dir);
}
