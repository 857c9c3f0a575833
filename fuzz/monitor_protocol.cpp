// Fuzz target monitor_protocol: WebSocket messages, one per input line, as
// the aggregator handles them (monitor/aggregator.cpp, WsSession::handle and
// Impl::on_producer): parse_message (JSON + the protocol's schema), then by
// type: a rank's messages into the hub's RankTracker and History (small
// bounds, so thinning runs), a viewer's control and inspect messages through
// ControlCommand::from_json and the commands' MPI byte form; the tracker's
// tick, ranks message and Prometheus text between messages. Then the same
// bytes as a metrics.jsonl that a restarted aggregator reloads (History::open).
// Only ProtocolError (for messages) or core::Error (for the file) may escape.
#include <string>
#include <vector>

#include "fuzz/fuzz_target.h"
#include "monitor/control.h"
#include "monitor/hub.h"
#include "monitor/protocol.h"

using namespace shardlm;
using nlohmann::json;

namespace {

bool producer_type(const std::string& t) {
  for (const char* a :
       {"run_info", "step", "validation", "event", "ack", "heartbeat", "bye", "inspect_result"})
    if (t == a) return true;
  return false;
}

void handle(json msg, monitor::RankTracker& tracker, monitor::History& history, double now) {
  const std::string type = msg["type"].get<std::string>();
  if (type == "hello") {
    (void)msg.value("role", std::string());
    (void)msg.value("token", std::string());
    return;
  }
  if (producer_type(type)) {
    // The aggregator takes these from a producer only with its own rank (a
    // message without one is refused; the schema lets the aggregator's own
    // events omit it).
    if (!msg.contains("rank") || !msg["rank"].is_number_integer()) return;
    for (json& m : tracker.observe(msg, now)) history.append(m);
    if (type != "heartbeat" && type != "bye" && type != "inspect_result") history.append(msg);
    return;
  }
  if (type == "control" || type == "inspect") {
    // to_json stamps the time it is called ("ts"): compare everything else
    const auto content = [](const monitor::ControlCommand& cmd) {
      json j = cmd.to_json();
      j.erase("ts");
      return j;
    };
    const monitor::ControlCommand c = monitor::ControlCommand::from_json(msg);
    const json again = content(c);
    const monitor::ControlCommand c2 = monitor::ControlCommand::from_json(c.to_json());
    SHARDLM_FUZZ_CHECK(c2.id == c.id && c2.kind == c.kind && content(c2) == again,
                       "control command changed through to_json/from_json");
    const auto decoded = monitor::decode_commands(monitor::encode_commands({c, c2}));
    SHARDLM_FUZZ_CHECK(decoded.size() == 2 && content(decoded[0]) == again,
                       "control command changed through its MPI bytes: " + again.dump() +
                           " became " +
                           (decoded.empty() ? std::string("nothing") : content(decoded[0]).dump()));
  }
}

}  // namespace

SHARDLM_FUZZ_TARGET(monitor_protocol) {
  static const bool init = [] {
    fuzz::quiet_logs();
    return true;
  }();
  (void)init;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  monitor::TrackerOptions to;
  to.pending_steps = 4;
  to.dead_after_s = 3;
  to.ranks_every_s = 2;
  monitor::RankTracker tracker(to);
  monitor::HistoryOptions ho;
  ho.max_messages = 16;
  ho.max_bytes = 4096;
  monitor::History history(ho);
  double now = 1000;
  size_t pos = 0, n = 0;
  while (pos < input.size() && n < 256) {
    size_t end = input.find('\n', pos);
    if (end == std::string_view::npos) end = input.size();
    const std::string_view line = input.substr(pos, end - pos);
    pos = end + 1;
    ++n;
    now += 0.7;
    try {
      const json msg = monitor::parse_message(line);
      handle(msg, tracker, history, now);
    } catch (const monitor::ProtocolError&) {
    }
    if (n % 4 == 0)
      for (json& m : tracker.tick(now)) history.append(m);
  }
  for (json& m : tracker.tick(now + 60)) history.append(m);
  (void)tracker.ranks_message(now);
  (void)tracker.prometheus(now);
  (void)history.snapshot();

  // The same bytes as the history file of a restarted aggregator.
  const std::string path = fuzz::scratch_file("metrics.jsonl", input);
  fuzz::expect_errors(
      [&] {
        monitor::History reloaded(ho);
        reloaded.open(path);
        json m = monitor::envelope("event");
        m["kind"] = "info";
        m["message"] = "after restart";
        reloaded.append(m);
        SHARDLM_FUZZ_CHECK(m["seq"].get<int64_t>() + 1 == reloaded.next_seq(),
                           "seq after a reload");
      },
      path);
  return 0;
}
