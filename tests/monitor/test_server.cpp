// The aggregator for real: an Aggregator on a loopback port, Beast clients as
// viewers and producers, and the real WebSocketSink as a rank. Every message
// a viewer receives is checked against monitor/protocol.schema.json.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "monitor/aggregator.h"
#include "monitor/config.h"
#include "monitor/websocket_sink.h"
#include "tests/monitor/test_util.h"
#include "tests/monitor/ws_client.h"
#include "tests/sanitizer.h"

using namespace shardlm::monitor;
using namespace shardlm::monitor::testing;
namespace fs = std::filesystem;
using shardlm::monitor::testing::temp_dir;

namespace {

// Fixed, so that an aggregator restarted on the same run dir keeps it.
const std::string kToken = "5eed0123456789abcdef0123456789ab";

AggregatorConfig test_config(const fs::path& dir) {
  AggregatorConfig c;
  c.port = 0;
  c.token = kToken;
  c.run_dir = dir.string();
  c.static_dir = (dir / "no-dashboard").string();
  c.hello_timeout_s = 1;
  c.http_timeout_s = 1;
  c.idle_timeout_s = 2;
  c.tick_s = 0.05;
  return c;
}

bool wait_for(const std::function<bool()>& cond, double timeout_s = 5) {
  auto end =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000));
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

json step_msg(int rank, int64_t step, double time = 0.1) {
  StepMetrics m;
  m.step = step;
  m.loss = 3.0 - 0.001 * step;
  m.lr = 1e-3;
  m.time.total = time;
  return encode_step(rank, m);
}

json producer_hello(int rank, int world, const std::string& token) {
  json h = {
      {"v", 1}, {"type", "hello"}, {"role", "producer"}, {"rank", rank}, {"world_size", world}};
  if (!token.empty()) h["token"] = token;
  return h;
}

// A producer speaking the protocol by hand (the sink is tested separately).
std::unique_ptr<WsClient> producer(uint16_t port, int rank, int world = 2,
                                   const std::string& token = kToken) {
  auto p = std::make_unique<WsClient>(port);
  p->send(producer_hello(rank, world, token));
  auto w = p->recv_type("welcome", 5);
  EXPECT_TRUE(w.has_value());
  return p;
}

// Connects a viewer, checks welcome and returns the replayed history.
std::vector<json> join_viewer(WsClient& v, const std::string& token = "", json* welcome = nullptr) {
  v.hello_viewer(token);
  std::vector<json> history;
  auto w = v.recv(5);
  EXPECT_TRUE(w.has_value());
  if (!w) return history;
  EXPECT_EQ((*w)["type"], "welcome");
  EXPECT_EQ(schema_errors(w->dump()), "");
  if (welcome) *welcome = *w;
  while (true) {
    auto m = v.recv(5);
    EXPECT_TRUE(m.has_value());
    if (!m) break;
    EXPECT_EQ(schema_errors(m->dump()), "");
    if ((*m)["type"] == "history_end") {
      EXPECT_EQ((*m)["count"], history.size());
      break;
    }
    history.push_back(*m);
  }
  EXPECT_EQ(history.size(), (*w)["history"].get<size_t>());
  return history;
}

}  // namespace

TEST(ServerReplay, LateViewerGetsHistoryFirstThenLiveWithDenseSeq) {
  auto dir = temp_dir("replay");
  Aggregator agg(test_config(dir));
  agg.start();
  auto p0 = producer(agg.port(), 0);
  auto p1 = producer(agg.port(), 1);
  p0->send(encode_run_info(0, "run-a", 2, json{{"parameters", 1000}}));
  p1->send(encode_run_info(1, "run-a", 2, json::object()));
  for (int s = 0; s < 20; ++s) {
    p0->send(step_msg(0, s));
    p1->send(step_msg(1, s));
  }
  ASSERT_TRUE(wait_for([&] { return agg.stats().received >= 2 + 2 + 40; }));
  ASSERT_TRUE(wait_for([&] { return agg.stats().next_seq >= 2 + 40 + 20; }));  // + 20 aggregates

  WsClient late(agg.port());
  auto history = join_viewer(late);
  int steps[2] = {0, 0}, aggregates = 0;
  for (size_t i = 0; i < history.size(); ++i) {
    if (history[i]["type"] == "step") steps[history[i]["rank"].get<int>()]++;
    if (history[i]["type"] == "aggregate") ++aggregates;
    EXPECT_EQ(history[i]["seq"], i);
  }
  EXPECT_EQ(steps[0], 20);
  EXPECT_EQ(steps[1], 20);
  EXPECT_EQ(aggregates, 20);
  EXPECT_EQ(history.front()["type"], "run_info");  // then rank 0 joined (an event)
  // Then live: the next message continues the sequence.
  p0->send(step_msg(0, 20));
  auto live = late.recv_type("step", 5);
  ASSERT_TRUE(live.has_value());
  EXPECT_EQ((*live)["step"], 20);
  EXPECT_EQ((*live)["seq"], history.size());
  EXPECT_EQ(schema_errors(live->dump()), "");
}

TEST(ServerReplay, RestartReloadsMetricsJsonlAndContinuesSeq) {
  auto dir = temp_dir("restart");
  int64_t before = 0;
  {
    Aggregator a(test_config(dir));
    a.start();
    auto p = producer(a.port(), 0, 1);
    for (int s = 0; s < 5; ++s) p->send(step_msg(0, s));
    ASSERT_TRUE(wait_for([&] { return a.stats().received >= 6; }));
    before = a.stats().next_seq;
  }
  Aggregator b(test_config(dir));
  b.start();
  WsClient v(b.port());
  auto history = join_viewer(v);
  ASSERT_EQ(static_cast<int64_t>(history.size()), before);
  int steps = 0;
  for (auto& m : history) steps += m["type"] == "step";
  EXPECT_EQ(steps, 5);
  auto p = producer(b.port(), 0, 1);
  p->send(step_msg(0, 5));
  auto live = v.recv_type("step", 5);
  ASSERT_TRUE(live.has_value());
  EXPECT_GE((*live)["seq"].get<int64_t>(), before);
}

TEST(ServerControl, WithoutTokenRefusedWithTokenForwardedToRank0AndAcked) {
  auto dir = temp_dir("control");
  Aggregator agg(test_config(dir));
  agg.start();
  // The token file: the right content, readable by the owner only.
  std::ifstream tf(dir / "monitor.token");
  std::string file_token;
  tf >> file_token;
  EXPECT_EQ(file_token, agg.token());
  EXPECT_EQ(fs::status(dir / "monitor.token").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);

  WebSocketSinkOptions o;
  o.port = agg.port();
  o.world_size = 1;
  o.token = agg.token();
  WebSocketSink rank0(o, 0);
  ASSERT_TRUE(rank0.wait_connected(5));
  ASSERT_TRUE(wait_for([&] { return agg.stats().producers == 1; }));

  json set_lr = {{"v", 1},
                 {"type", "control"},
                 {"id", "c-1"},
                 {"command", "set_lr"},
                 {"args", {{"lr", 5e-4}}}};
  {  // read-only viewer: refused, nothing reaches rank 0
    WsClient ro(agg.port());
    json w;
    join_viewer(ro, "", &w);
    EXPECT_FALSE(w["control"].get<bool>());
    ro.send(set_lr);
    auto err = ro.recv_type("error", 5);
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ((*err)["code"], "unauthorized");
    EXPECT_EQ((*err)["ref"], "c-1");
    auto st = ro.recv_type("command_status", 5);
    ASSERT_TRUE(st.has_value());
    EXPECT_EQ((*st)["status"], "refused");
    json wrong = set_lr;
    wrong["token"] = std::string(agg.token().size(), '0');
    ro.send(wrong);
    EXPECT_EQ((*ro.recv_type("error", 5))["code"], "unauthorized");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(rank0.poll().empty());

  WsClient rw(agg.port());
  json w;
  join_viewer(rw, agg.token(), &w);
  EXPECT_TRUE(w["control"].get<bool>());
  rw.send(set_lr);
  auto st = rw.recv_type("command_status", 5);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ((*st)["status"], "forwarded");
  std::vector<ControlCommand> got;
  ASSERT_TRUE(wait_for([&] {
    for (auto& c : rank0.poll()) got.push_back(c);
    return !got.empty();
  }));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kind, ControlKind::kSetLr);
  EXPECT_DOUBLE_EQ(got[0].value, 5e-4);
  EXPECT_EQ(got[0].id, "c-1");
  rank0.ack(got[0], 17);
  auto ack = rw.recv_type("ack", 5);
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ((*ack)["id"], "c-1");
  EXPECT_EQ((*ack)["step"], 17);
  EXPECT_EQ((*ack)["command"], "set_lr");
  EXPECT_TRUE((*ack)["ok"].get<bool>());
  EXPECT_EQ(schema_errors(ack->dump()), "");

  // The token may also travel in the control message itself.
  WsClient other(agg.port());
  join_viewer(other);
  json pause = {
      {"v", 1}, {"type", "control"}, {"id", "p-1"}, {"command", "pause"}, {"token", agg.token()}};
  other.send(pause);
  EXPECT_EQ((*other.recv_type("command_status", 5))["status"], "forwarded");
  ASSERT_TRUE(wait_for([&] {
    for (auto& c : rank0.poll()) got.push_back(c);
    return got.size() == 2;
  }));
  EXPECT_EQ(got[1].kind, ControlKind::kPause);

  // Without rank 0 a command cannot be delivered, and says so.
  rank0.close(2);
  ASSERT_TRUE(wait_for([&] { return agg.stats().producers == 0; }));
  rw.send(set_lr);
  auto err = rw.recv_type("error", 5);
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ((*err)["code"], "no_producer");
}

TEST(ServerRobustness, MalformedBinaryOversizedAndHalfOpenConnectionsDoNotStopTheServer) {
  auto dir = temp_dir("fuzz");
  auto cfg = test_config(dir);
  cfg.max_errors = 1000;
  Aggregator agg(cfg);
  agg.start();
  const uint16_t port = agg.port();

  {  // malformed before hello: answered, connection stays usable
    WsClient c(port);
    c.send_text("{this is not json");
    EXPECT_EQ((*c.recv(5))["code"], "bad_json");
    c.send(step_msg(0, 1));
    EXPECT_EQ((*c.recv(5))["code"], "hello_required");
    c.send_text("{\"v\":1,\"type\":\"step\"}");
    EXPECT_EQ((*c.recv(5))["code"], "bad_message");
    c.send_binary(std::string("\x00\x01\x02", 3));
    EXPECT_EQ((*c.recv(5))["code"], "binary_frame");
    c.send_text("{\"v\":1,\"type\":\"hello\",\"role\":\"viewer\",\"extra\":1}");
    auto e = c.recv(5);
    EXPECT_EQ((*e)["code"], "bad_message");
    EXPECT_EQ(schema_errors(e->dump()), "");
    EXPECT_EQ(join_viewer(c).size(), 0u);
    c.send(step_msg(0, 1));  // a viewer may not publish
    EXPECT_EQ((*c.recv(5))["code"], "not_allowed");
  }
  {  // random mutations of valid messages: every one gets an error or is accepted, none crashes
    std::mt19937 rng(42);
    auto prod = producer(port, 0, 1);
    std::string base = step_msg(0, 3).dump();
    int answered = 0;
    for (int i = 0; i < 300; ++i) {
      std::string m = base;
      int edits = 1 + rng() % 4;
      for (int k = 0; k < edits; ++k) m[rng() % m.size()] = static_cast<char>(32 + rng() % 95);
      prod->send_text(m);
    }
    prod->send({{"v", 1}, {"type", "bye"}, {"ts", 1.0}, {"rank", 0}});
    while (auto r = prod->recv(1.0)) {
      EXPECT_EQ((*r)["type"], "error");
      EXPECT_EQ(schema_errors(r->dump()), "");
      ++answered;
    }
    EXPECT_GT(answered, 100);
  }
  {  // oversized before hello: closed with 1009, others unaffected
    WsClient big(port);
    try {
      big.send_text(std::string(200 * 1024, 'x'));
    } catch (const boost::system::system_error& e) {
      // The server may close at its read limit before the client has written
      // the whole frame: the client then sees EPIPE or a reset.
      EXPECT_TRUE(e.code() == net::error::broken_pipe || e.code() == net::error::connection_reset)
          << e.what();
    }
    EXPECT_FALSE(big.recv(5).has_value());
    EXPECT_TRUE(big.closed());
  }
  {  // half-open TCP (never sends a byte) and a partial HTTP request: closed by the timeouts
    net::io_context ioc;
    tcp::socket idle(ioc), partial(ioc);
    idle.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    partial.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    net::write(partial, net::buffer(std::string("GET /metrics HTTP/1.1\r\nHost: x\r\n")));
    auto t0 = std::chrono::steady_clock::now();
    char b[16];
    boost::system::error_code ec;
    idle.read_some(net::buffer(b), ec);  // blocks until the server closes it
    EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset) << ec.message();
    partial.read_some(net::buffer(b), ec);
    EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset) << ec.message();
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(waited, 5.0);
  }
  {  // a WebSocket that never says hello is told so and closed
    WsClient mute(port);
    auto e = mute.recv(5);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ((*e)["code"], "hello_required");
    EXPECT_FALSE(mute.recv(5).has_value());
  }
  {  // too many errors: closed
    auto strict_cfg = test_config(temp_dir("strict"));
    strict_cfg.max_errors = 3;
    Aggregator strict(strict_cfg);
    strict.start();
    WsClient c(strict.port());
    try {
      for (int i = 0; i < 10; ++i) c.send_text("nope");
    } catch (const boost::system::system_error&) {
      // the server may already have closed it: that is the point
    }
    int errors = 0;
    while (c.recv(2)) ++errors;
    EXPECT_LE(errors, 4);
    EXPECT_TRUE(c.closed());
  }
  // After all of that the server still serves viewers and HTTP.
  WsClient ok(port);
  join_viewer(ok);
  auto [status, body] = http_get(port, "/api/health");
  EXPECT_EQ(status, 200);
  EXPECT_TRUE(json::parse(body)["ok"].get<bool>());
  EXPECT_GT(agg.stats().errors, 100u);
}

TEST(ServerSlowViewer, AViewerThatStopsReadingSlowsNobodyAndLosesItsOldest) {
  auto dir = temp_dir("slow");
  auto cfg = test_config(dir);
  cfg.viewer_queue = 2048;  // a second of slack for a healthy viewer on a busy machine
  cfg.idle_timeout_s =
      60;  // else the unanswered pings close the stalled viewer: also right, not tested here
  Aggregator agg(cfg);
  agg.start();
  // The slow viewer: a tiny receive buffer, says hello, never reads again.
  net::io_context ioc;
  websocket::stream<beast::tcp_stream> slow(ioc);
  beast::get_lowest_layer(slow).socket().open(tcp::v4());
  beast::get_lowest_layer(slow).socket().set_option(net::socket_base::receive_buffer_size(4096));
  beast::get_lowest_layer(slow).connect(
      tcp::endpoint(net::ip::make_address("127.0.0.1"), agg.port()));
  slow.handshake("127.0.0.1", "/ws");
  slow.write(net::buffer(std::string(R"({"v":1,"type":"hello","role":"viewer"})")));

  WsClient fast(agg.port());
  join_viewer(fast);
  ASSERT_TRUE(wait_for([&] { return agg.stats().viewers == 2; }));
  auto p = producer(agg.port(), 0, 1);
  const int n = 2000;
  std::atomic<int> received{0};
  std::thread reader([&] {
    int64_t last = -1;
    while (received < n) {
      auto m = fast.recv_text(10);
      if (!m) break;
      if (m->find("\"type\":\"step\"") == std::string::npos) continue;
      auto at = m->find("\"step\":");
      int64_t step = std::strtoll(m->c_str() + at + 7, nullptr, 10);
      if (step != last + 1) {  // nothing lost, in order
        ADD_FAILURE() << "step " << step << " after " << last;
        break;
      }
      last = step;
      ++received;
    }
  });
  auto t0 = std::chrono::steady_clock::now();
  json padded = step_msg(0, 0);
  // ~10 kB per message, so that the stalled viewer's socket buffers fill and its queue overflows.
  for (int k = 0; k < 400; ++k) padded["extra"]["metric_" + std::to_string(k)] = 0.001 * k;
  for (int s = 0; s < n; ++s) {
    padded["step"] = s;
    p->send(padded);
    // 1000 steps/s (+1000 aggregates): far above a training run's rate.
    std::this_thread::sleep_until(t0 + std::chrono::microseconds(1000 * (s + 1)));
  }
  double send_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  reader.join();
  EXPECT_EQ(received.load(), n);
  auto st = agg.stats();
  EXPECT_GT(st.viewer_dropped, 0u)
      << "max queue " << st.max_viewer_queue;  // the slow viewer lost its oldest
  EXPECT_LE(st.max_viewer_queue, 2048u);       // and its queue never grew past the bound
  // the producer was never held up (it serialises ~10 kB of JSON per step: CPU-bound)
  EXPECT_LT(send_s, (1.5 * n * 0.001 + 1) * shardlm::testing::kTimeScale);
  EXPECT_EQ(st.viewers, 2u);
}

TEST(ServerSink, WebSocketSinkDropsOldestWhileDownThenDeliversAndReconnects) {
  auto dir = temp_dir("sinkdrop");
  uint16_t port;
  {
    Aggregator probe(test_config(temp_dir("probe")));
    probe.start();
    port = probe.port();
  }
  WebSocketSinkOptions o;
  o.port = port;
  o.token = kToken;
  o.queue_capacity = 10;
  o.reconnect_min_s = 0.05;
  o.reconnect_max_s = 0.2;
  WebSocketSink sink(o, 0);
  sink.run_info("run-x", 1, json{{"device", "cpu"}});
  StepMetrics m;
  m.lr = 1e-3;
  m.time.total = 0.1;
  auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < 25; ++s) {
    m.step = s;
    sink.step(m);
  }
  double publish_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(publish_s, 0.5 * shardlm::testing::kTimeScale);  // never waits for the network
  auto s1 = sink.stats();
  EXPECT_FALSE(s1.connected);
  EXPECT_EQ(s1.published, 25u);
  EXPECT_EQ(s1.dropped, 15u);
  EXPECT_EQ(s1.queued, 10u);

  auto cfg = test_config(dir);
  cfg.port = port;
  auto agg = std::make_unique<Aggregator>(cfg);
  agg->start();
  ASSERT_TRUE(sink.wait_connected(5));
  sink.flush(5);
  ASSERT_TRUE(wait_for([&] { return agg->stats().received >= 12; }));
  WsClient v(agg->port());
  auto history = join_viewer(v);
  std::vector<int64_t> steps;
  int run_infos = 0;
  for (auto& h : history) {
    if (h["type"] == "step") steps.push_back(h["step"]);
    run_infos += h["type"] == "run_info";
  }
  std::vector<int64_t> newest;
  for (int s = 15; s < 25; ++s) newest.push_back(s);
  EXPECT_EQ(steps, newest);  // the oldest 15 were dropped, the newest 10 delivered in order
  EXPECT_EQ(run_infos, 1);   // run_info is kept aside and sent after hello

  // The aggregator restarts: the sink reconnects by itself, and run_info is not repeated.
  agg.reset();
  ASSERT_TRUE(wait_for([&] { return !sink.stats().connected; }));
  agg = std::make_unique<Aggregator>(cfg);
  agg->start();
  ASSERT_TRUE(sink.wait_connected(5));
  m.step = 25;
  sink.step(m);
  sink.flush(5);
  EXPECT_GE(sink.stats().reconnects, 1u);
  WsClient v2(agg->port());
  auto again = join_viewer(v2);
  ASSERT_TRUE(
      wait_for([&] { return agg->stats().next_seq > static_cast<int64_t>(again.size()); }) ||
      !again.empty());
  run_infos = 0;
  for (auto& h : again) run_infos += h["type"] == "run_info";
  EXPECT_EQ(run_infos, 1);
}

// An aggregator that accepts a rank and then says nothing (hung, or not an
// aggregator at all) must not hold the sink: after welcome_timeout_s it gives
// up on that connection and reconnects; what was published meanwhile queues and
// is delivered by the next connection that does say welcome.
TEST(ServerSink, SilentAggregatorIsGivenUpOnAfterTheWelcomeTimeout) {
  namespace net = boost::asio;
  namespace beast = boost::beast;
  namespace websocket = beast::websocket;
  net::io_context ioc;
  net::ip::tcp::acceptor acceptor(ioc, {net::ip::make_address("127.0.0.1"), 0});
  const uint16_t port = acceptor.local_endpoint().port();
  std::atomic<int> hellos{0};
  std::vector<std::string> delivered;  // types of what the second connection read
  std::mutex mu;
  std::thread fake([&] {
    // 1st connection: the handshake and hello are read, nothing is ever answered.
    websocket::stream<net::ip::tcp::socket> silent(ioc);
    acceptor.accept(silent.next_layer());
    silent.accept();
    beast::flat_buffer b1;
    silent.read(b1);
    ++hellos;
    // 2nd connection: welcome, then read until the sink says bye or leaves.
    websocket::stream<net::ip::tcp::socket> good(ioc);
    acceptor.accept(good.next_layer());
    good.accept();
    beast::flat_buffer b2;
    good.read(b2);
    ++hellos;
    json w = envelope("welcome");
    w["role"] = "producer";
    w["control"] = true;
    w["protocol"] = kProtocolVersion;
    w["server"] = "fake";
    w["history"] = 0;
    w["session"] = 1;
    w["run_dir"] = "";
    good.write(net::buffer(dump(w)));
    beast::error_code ec;
    for (;;) {
      beast::flat_buffer b;
      good.read(b, ec);
      if (ec) break;
      const json m = json::parse(beast::buffers_to_string(b.data()));
      std::lock_guard<std::mutex> g(mu);
      delivered.push_back(m["type"].get<std::string>());
      if (m["type"] == "bye") break;
    }
  });

  WebSocketSinkOptions o;
  o.port = port;
  o.welcome_timeout_s = 0.5;
  o.reconnect_min_s = 0.05;
  o.reconnect_max_s = 0.1;
  const auto t0 = std::chrono::steady_clock::now();
  {
    WebSocketSink sink(o, 0);
    StepMetrics m;
    m.lr = 1e-3;
    m.time.total = 0.1;
    for (int s = 0; s < 3; ++s) {
      m.step = s;
      sink.step(m);
    }
    ASSERT_TRUE(wait_for([&] { return hellos.load() >= 1; }));
    EXPECT_FALSE(sink.stats().connected);  // hello sent, no welcome: not connected
    ASSERT_TRUE(sink.wait_connected(5)) << "the sink never gave up on the silent aggregator";
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GE(waited, 0.5);                                 // it did wait for the welcome first
    EXPECT_LT(waited, 3.0 * shardlm::testing::kTimeScale);  // and then reconnected at once
    sink.flush(5);
    EXPECT_EQ(sink.stats().dropped, 0u);
  }  // close: bye
  fake.join();
  std::lock_guard<std::mutex> g(mu);
  EXPECT_EQ(std::count(delivered.begin(), delivered.end(), "step"), 3)
      << "the steps published while the aggregator was silent were lost";
  EXPECT_EQ(hellos.load(), 2);
}

TEST(ServerHttp, MetricsCheckpointsAndStaticFiles) {
  auto dir = temp_dir("http");
  fs::create_directories(dir / "dist/assets");
  std::ofstream(dir / "dist/index.html") << "<!doctype html><title>dash</title>";
  std::ofstream(dir / "dist/assets/app.js") << "console.log(1)";
  fs::create_directories(dir / "checkpoints/step-5");
  std::ofstream(dir / "checkpoints/step-5/manifest.json") << R"({"step":5})";
  auto cfg = test_config(dir);
  cfg.static_dir = (dir / "dist").string();
  Aggregator agg(cfg);
  agg.start();
  auto p = producer(agg.port(), 0, 1);
  p->send(step_msg(0, 9, 0.25));
  ASSERT_TRUE(wait_for([&] { return agg.stats().received >= 2; }));

  auto [st, metrics] = http_get(agg.port(), "/metrics");
  EXPECT_EQ(st, 200);
  EXPECT_NE(metrics.find("shardlm_step{rank=\"0\"} 9"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("shardlm_step_time_seconds{rank=\"0\"} 0.25"), std::string::npos);
  EXPECT_NE(metrics.find("# TYPE shardlm_monitor_messages_received_total counter"),
            std::string::npos);
  auto [cs, ckpts] = http_get(agg.port(), "/api/checkpoints");
  EXPECT_EQ(cs, 200);
  EXPECT_EQ(json::parse(ckpts)["items"][0]["manifest"]["step"], 5);
  EXPECT_EQ(schema_errors(ckpts), "");
  EXPECT_EQ(http_get(agg.port(), "/").second, "<!doctype html><title>dash</title>");
  EXPECT_EQ(http_get(agg.port(), "/assets/app.js").second, "console.log(1)");
  EXPECT_EQ(http_get(agg.port(), "/runs/3").first, 200);  // client-side route: the app
  EXPECT_EQ(http_get(agg.port(), "/assets/missing.js").first, 404);
  EXPECT_EQ(http_get(agg.port(), "/../../etc/passwd").first, 400);

  WsClient v(agg.port());
  join_viewer(v);
  v.send({{"v", 1}, {"type", "list_checkpoints"}, {"id", "q"}});
  auto c = v.recv_type("checkpoints", 5);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ((*c)["id"], "q");
  EXPECT_EQ((*c)["items"].size(), 1u);
}

TEST(ServerRanks, DeadRankIsReportedToViewers) {
  auto dir = temp_dir("dead");
  auto cfg = test_config(dir);
  cfg.tracker.dead_after_s = 0.3;
  Aggregator agg(cfg);
  agg.start();
  WsClient v(agg.port());
  join_viewer(v);
  {
    auto p = producer(agg.port(), 1, 2);
    p->send(step_msg(1, 0));
  }  // rank 1 vanishes without bye
  auto lost = v.recv_type("event", 5);
  while (lost && (*lost)["kind"] != "rank_lost") lost = v.recv_type("event", 5);
  ASSERT_TRUE(lost.has_value());
  EXPECT_EQ((*lost)["data"]["rank"], 1);
  auto ranks = v.recv_type("ranks", 5);
  ASSERT_TRUE(ranks.has_value());
  EXPECT_EQ((*ranks)["ranks"][0]["state"], "dead");
}

TEST(ServerLaunch, StartRunSpawnsTheConfiguredCommandAndReportsItsExit) {
  auto dir = temp_dir("launch");
  auto cfg = test_config(dir);
  cfg.launch_command = "/bin/sh {config}";
  Aggregator agg(cfg);
  agg.start();
  // The spawned run gets the token for its ranks in its environment.
  std::ofstream(dir / "run.sh") << "printf %s \"$SHARDLM_MONITOR_TOKEN\" > \""
                                << (dir / "env.txt").string() << "\"\nexit 3\n";
  WsClient v(agg.port());
  json w;
  join_viewer(v, agg.token(), &w);
  EXPECT_TRUE(w["can_launch"].get<bool>());
  v.send({{"v", 1},
          {"type", "control"},
          {"id", "s1"},
          {"command", "start_run"},
          {"args", {{"config", (dir / "run.sh").string()}}}});
  auto st = v.recv_type("command_status", 5);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ((*st)["status"], "done") << st->dump();
  EXPECT_GT((*st)["data"]["pid"].get<int>(), 0);
  std::vector<json> seen;
  auto ev = v.recv_type("event", 5, &seen);
  while (ev && (*ev)["kind"] != "run_exited") ev = v.recv_type("event", 5, &seen);
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ((*ev)["data"]["exit_code"], 3);
  std::string env_token;
  std::ifstream(dir / "env.txt") >> env_token;
  EXPECT_EQ(env_token, agg.token());
  v.send({{"v", 1},
          {"type", "control"},
          {"id", "r1"},
          {"command", "resume_from"},
          {"args", {{"checkpoint", "step-404"}}}});
  auto fail = v.recv_type("command_status", 5);
  ASSERT_TRUE(fail.has_value());
  EXPECT_EQ((*fail)["status"], "failed");
}

TEST(ServerEmbedded, RankZeroStartsTheAggregatorAndItsSinkReachesIt) {
  auto dir = temp_dir("embedded");
  MonitorConfig mc;
  mc.embedded = true;
  mc.port = 0;
  mc.stdout_lines = false;
  mc.static_dir = (dir / "none").string();
  auto m = open_monitor(mc, 0, 1, dir.string(), "emb");
  ASSERT_TRUE(m.embedded);
  m.sink->run_info("emb", 1, json::object());
  StepMetrics s;
  s.step = 1;
  s.time.total = 0.2;
  m.sink->step(s);
  ASSERT_TRUE(wait_for([&] { return m.embedded->stats().next_seq >= 3; }));
  WsClient v(m.embedded->port());
  auto h = join_viewer(v);
  bool saw_step = false;
  for (auto& x : h) saw_step = saw_step || (x["type"] == "step" && x["rank"] == 0);
  EXPECT_TRUE(saw_step);
  EXPECT_TRUE(fs::exists(dir / "metrics" / "rank-0.jsonl"));
  EXPECT_TRUE(fs::exists(dir / "metrics.jsonl"));
}

// A producer without the right token is refused before anything it sends counts:
// no step reaches a viewer or metrics.jsonl, and it does not become rank 0 (so
// it receives no commands).
TEST(ServerAuth, ProducerWithWrongOrMissingTokenIsRefusedAndClosed) {
  auto dir = temp_dir("auth");
  Aggregator agg(test_config(dir));
  agg.start();
  WsClient v(agg.port());
  join_viewer(v, agg.token());
  for (std::string token : {std::string(), std::string(kToken.size(), 'f'), kToken + "x"}) {
    WsClient p(agg.port());
    p.send(producer_hello(0, 1, token));
    p.send(step_msg(0, 666));  // pipelined right behind hello: must not be read
    auto e = p.recv(5);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ((*e)["type"], "error");
    EXPECT_EQ((*e)["code"], "unauthorized");
    EXPECT_EQ(schema_errors(e->dump()), "");
    EXPECT_FALSE(p.recv(5).has_value());
    EXPECT_TRUE(p.closed());  // closed by the aggregator, not a timeout
    EXPECT_NE(p.last_error(), beast::error_code());
  }
  auto st = agg.stats();
  EXPECT_EQ(st.producers_refused, 3u);
  EXPECT_EQ(st.producers, 0u);
  EXPECT_NE(
      http_get(agg.port(), "/metrics").second.find("shardlm_monitor_producers_refused_total 3"),
      std::string::npos);
  // Nobody is rank 0: a command has no one to go to.
  v.send({{"v", 1}, {"type", "control"}, {"id", "c-1"}, {"command", "pause"}});
  auto err = v.recv_type("error", 5);
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ((*err)["code"], "no_producer");

  // The right token works, and its step is the first one a viewer sees.
  auto good = producer(agg.port(), 0, 1);
  good->send(step_msg(0, 7));
  auto step = v.recv_type("step", 5);
  ASSERT_TRUE(step.has_value());
  EXPECT_EQ((*step)["step"], 7);
  ASSERT_TRUE(wait_for([&] { return agg.stats().producers == 1; }));
  std::ifstream in(dir / "metrics.jsonl");
  std::string line, all;
  while (std::getline(in, line)) all += line + "\n";
  EXPECT_EQ(all.find("666"), std::string::npos);
  EXPECT_NE(all.find("\"step\":7"), std::string::npos);
}

// A restarted aggregator keeps the run dir's token, so that running ranks stay accepted.
TEST(ServerAuth, RestartKeepsTheTokenOfTheRunDir) {
  auto dir = temp_dir("keeptoken");
  auto cfg = test_config(dir);
  cfg.token = "";
  std::string first;
  {
    Aggregator a(cfg);
    a.start();
    first = a.token();
    EXPECT_EQ(first.size(), 32u);
  }
  Aggregator b(cfg);
  b.start();
  EXPECT_EQ(b.token(), first);
  producer(b.port(), 0, 1, first);
  EXPECT_EQ(b.stats().producers_refused, 0u);
}

TEST(ServerAuth, ProducerAuthOffAcceptsProducersWithoutToken) {
  auto dir = temp_dir("noauth");
  auto cfg = test_config(dir);
  cfg.producer_auth = false;
  Aggregator agg(cfg);
  agg.start();
  WsClient v(agg.port());
  join_viewer(v);
  auto p = producer(agg.port(), 0, 1, "");
  p->send(step_msg(0, 3));
  auto step = v.recv_type("step", 5);
  ASSERT_TRUE(step.has_value());
  EXPECT_EQ((*step)["step"], 3);
  EXPECT_EQ(agg.stats().producers_refused, 0u);
}

// The real sink with a wrong token: never counts as connected, delivers nothing,
// keeps retrying (each try refused); with the right token it delivers its queue.
TEST(ServerAuth, SinkWithWrongTokenSendsNothingAndRightTokenDelivers) {
  auto dir = temp_dir("sinkauth");
  Aggregator agg(test_config(dir));
  agg.start();
  WebSocketSinkOptions o;
  o.port = agg.port();
  o.reconnect_min_s = 0.02;
  o.reconnect_max_s = 0.05;
  o.token = "not-the-token";
  auto publish = [](WebSocketSink& sink, const std::string& run_id, int64_t step) {
    sink.run_info(run_id, 1, json::object());
    StepMetrics m;
    m.step = step;
    m.time.total = 0.1;
    sink.step(m);
  };
  {
    WebSocketSink bad(o, 0);
    publish(bad, "bad", 1);
    ASSERT_TRUE(wait_for([&] { return agg.stats().producers_refused >= 2; }));
    EXPECT_FALSE(bad.wait_connected(0.2));
    EXPECT_EQ(bad.stats().sent, 0u);
    bad.close(0.1);
  }
  o.token = agg.token();
  WebSocketSink good(o, 0);
  publish(good, "good", 2);
  ASSERT_TRUE(good.wait_connected(5));
  good.flush(5);
  ASSERT_TRUE(wait_for([&] { return agg.stats().next_seq >= 2; }));
  WsClient v(agg.port());
  std::vector<std::string> kept;  // the refused sink's run_info and step 1 are not there
  for (auto& h : join_viewer(v))
    if (h["type"] == "run_info" || h["type"] == "step")
      kept.push_back(h["type"] == "step" ? "step " + h["step"].dump()
                                         : "run_info " + h["run_id"].get<std::string>());
  EXPECT_EQ(kept, (std::vector<std::string>{"run_info good", "step 2"}));
}

// Under mpiexec -n 2, the trainer's side of control as runtime/ will do it: rank 0
// starts the aggregator in-process (monitor.embedded), both ranks report steps, a
// viewer sets the LR, pauses and resumes; rank 0 polls, broadcast_commands() gives
// every rank the same commands at the same step boundary, rank 0 acknowledges.
TEST(MonitorMpi, TwoRanksApplyViewerCommandsAtTheSameStep) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 2) GTEST_SKIP() << "needs mpiexec -n 2";
  char dir_buf[512] = {0};
  if (rank == 0) std::snprintf(dir_buf, sizeof(dir_buf), "%s", temp_dir("mpi").c_str());
  MPI_Bcast(dir_buf, sizeof(dir_buf), MPI_CHAR, 0, MPI_COMM_WORLD);
  MonitorConfig mc;
  mc.stdout_lines = false;
  mc.jsonl = false;
  mc.heartbeat_s = 0.2;
  int port = 0;
  // As the trainer does: rank 0 makes the token, rank 1 needs it to be accepted;
  // rank 0's aggregator takes any free port and open_monitor tells rank 1 which.
  mc.embedded = true;
  mc.port = 0;
  mc.static_dir = std::string(dir_buf) + "/none";
  shardlm::core::MpiComm world(MPI_COMM_WORLD);
  mc.token = resolve_producer_token(mc, dir_buf, world);
  EXPECT_EQ(mc.token.size(), 32u);
  Monitor mon = open_monitor(mc, rank, 2, dir_buf, "mpi-run", &world);
  EXPECT_EQ(mon.embedded != nullptr, rank == 0);
  if (rank == 0) {
    port = mon.embedded->port();
    EXPECT_NE(port, 0);
    EXPECT_EQ(mon.embedded->token(), mc.token);  // the aggregator uses the broadcast token
  }
  mon.sink->run_info("mpi-run", 2, json::object());

  // Rank 0's viewer: a dashboard with the token.
  std::atomic<int> viewer_done{0};
  std::map<std::string, int64_t> acked;
  std::vector<json> steps_seen;
  std::string viewer_error;
  std::thread viewer;
  if (rank == 0) {
    viewer = std::thread([&] {
      try {
        auto fail = [&](const std::string& e) {
          viewer_error = e;
          viewer_done = 1;
        };
        WsClient v(port);
        join_viewer(v, mon.embedded->token());
        auto wait_for_msg = [&](const std::function<bool(const json&)>& pred) {
          for (int i = 0; i < 2000; ++i) {
            auto m = v.recv(5);
            if (!m) return false;
            if ((*m)["type"] == "step") steps_seen.push_back(*m);
            if ((*m)["type"] == "ack") acked[(*m)["id"]] = (*m)["step"];
            if (pred(*m)) return true;
          }
          return false;
        };
        auto step_from = [](int r, int64_t min_step) {
          return [r, min_step](const json& m) {
            return m["type"] == "step" && m["rank"] == r && m["step"] >= min_step;
          };
        };
        auto ack_of = [](const std::string& id) {
          return [id](const json& m) { return m["type"] == "ack" && m["id"] == id; };
        };
        auto control = [&](const std::string& id, const std::string& cmd, json args) {
          json c = {{"v", 1}, {"type", "control"}, {"id", id}, {"command", cmd}};
          if (!args.is_null()) c["args"] = args;
          v.send(c);
        };
        if (!wait_for_msg(step_from(0, 3)) || !wait_for_msg(step_from(1, 3)))
          return fail("no steps from both ranks");
        control("lr-1", "set_lr", {{"lr", 0.5}});
        if (!wait_for_msg(ack_of("lr-1"))) return fail("no ack for set_lr");
        control("p-1", "pause", nullptr);
        if (!wait_for_msg(ack_of("p-1"))) return fail("no ack for pause");
        // While paused no rank runs a step at or after the acknowledged one. Rank 0's own
        // messages are ordered after its acks on its connection; rank 1's order with
        // respect to rank 0's ack is checked through the applied steps below.
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        control("r-1", "resume", nullptr);
        if (!wait_for_msg(ack_of("r-1"))) return fail("no ack for resume");
        for (auto& st : steps_seen)
          if (st["rank"] == 0 && st["step"] >= acked["p-1"])
            return fail("rank 0 ran a step while paused: " + st.dump());
        if (!wait_for_msg(step_from(0, acked["p-1"] + 2)) ||
            !wait_for_msg(step_from(1, acked["p-1"] + 2)))
          return fail("no steps after resume");
        viewer_done = 1;
      } catch (const std::exception& e) {
        viewer_error = e.what();
        viewer_done = 1;
      }
    });
  }

  // The training loop of both ranks.
  std::map<std::string, int64_t> applied;  // command id -> step at which this rank applied it
  int64_t step = 0;
  double lr = 1e-3;
  bool paused = false;
  StepMetrics m;
  m.time.total = 0.01;
  for (int iter = 0; iter < 3000; ++iter) {
    auto cmds =
        broadcast_commands(rank == 0 ? mon.control->poll() : std::vector<ControlCommand>{}, world);
    for (auto& c : cmds) {
      if (c.kind == ControlKind::kSetLr) lr = c.value;
      if (c.kind == ControlKind::kPause) paused = true;
      if (c.kind == ControlKind::kResume) paused = false;
      applied[c.id] = step;
      if (rank == 0) mon.control->ack(c, step);
    }
    int done = viewer_done.load();
    MPI_Bcast(&done, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (done) break;
    if (!paused) {
      m.step = step++;
      m.lr = lr;
      m.loss = 1.0;
      mon.sink->step(m);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (rank == 0) viewer.join();
  EXPECT_EQ(viewer_error, "");
  // Every rank applied each command at the same step, the one rank 0 acknowledged.
  int64_t mine[3] = {applied.count("lr-1") ? applied["lr-1"] : -1,
                     applied.count("p-1") ? applied["p-1"] : -1,
                     applied.count("r-1") ? applied["r-1"] : -1};
  int64_t all[6];
  MPI_Allgather(mine, 3, MPI_INT64_T, all, 3, MPI_INT64_T, MPI_COMM_WORLD);
  for (int k = 0; k < 3; ++k) {
    EXPECT_GE(all[k], 0);
    EXPECT_EQ(all[k], all[3 + k]) << "command " << k;
  }
  if (rank == 0) {
    EXPECT_EQ(acked["lr-1"], all[0]);
    EXPECT_EQ(acked["p-1"], all[1]);
    EXPECT_EQ(acked["r-1"], all[1]);  // resumed where it paused
    int before = 0, after = 0;
    for (auto& s : steps_seen) {
      const bool changed = s["step"].get<int64_t>() >= acked["lr-1"];
      EXPECT_DOUBLE_EQ(s["lr"].get<double>(), changed ? 0.5 : 1e-3) << s.dump();
      (changed ? after : before)++;
    }
    EXPECT_GT(before, 0);
    EXPECT_GT(after, 0);
  }
  mon.sink->flush(2);
  MPI_Barrier(MPI_COMM_WORLD);
}
