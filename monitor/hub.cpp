// History and rank tracking of the aggregator (hub.h).
#include "monitor/hub.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <functional>

#include <fmt/format.h>

#include "core/error.h"
#include "core/log.h"
#include "monitor/protocol.h"

namespace shardlm::monitor {

using json = nlohmann::json;

// ---- History -----------------------------------------------------------------------

namespace {
constexpr size_t kEntryOverhead = 64;  // deque slot, control block, string header

bool thinnable_type(const std::string& t) {
  return t == "step" || t == "aggregate" || t == "ranks";
}
}  // namespace

History::History(HistoryOptions o) : opt_(o) {}

History::~History() {
  if (file_) std::fclose(file_);
}

void History::open(const std::string& path) {
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  bool torn_tail = false;
  {
    std::ifstream in(path, std::ios::binary);
    std::string line;
    while (in && std::getline(in, line)) {
      torn_tail = in.eof();  // the last line had no newline
      if (line.empty()) continue;
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("type") || !j["type"].is_string()) {
        ++skipped_;
        continue;
      }
      if (j.contains("seq") && j["seq"].is_number_integer())
        next_seq_ = std::max(next_seq_, j["seq"].get<int64_t>());
      else
        j["seq"] = next_seq_;
      next_seq_ = j["seq"].get<int64_t>() + 1;
      keep(std::make_shared<const std::string>(dump(j)), j);
    }
  }
  if (skipped_ > 0) core::log::warn("{}: skipped {} unreadable line(s)", path, skipped_);
  file_ = std::fopen(path.c_str(), "ab");
  SHARDLM_CHECK(file_ != nullptr, core::DataError, "{}: cannot open for appending: {}", path,
                std::strerror(errno));
  if (torn_tail) std::fputc('\n', file_);  // never glue a new message to a torn one
}

void History::keep(SharedText text, const json& msg) {
  const std::string& type = msg["type"].get_ref<const std::string&>();
  int64_t step =
      msg.contains("step") && msg["step"].is_number_integer() ? msg["step"].get<int64_t>() : -1;
  bytes_ += text->size() + kEntryOverhead;
  entries_.push_back(Entry{std::move(text), step, thinnable_type(type)});
  enforce_bounds();
}

SharedText History::append(json& msg) {
  msg["seq"] = next_seq_++;
  auto text = std::make_shared<const std::string>(dump(msg));
  if (file_) {
    if (std::fwrite(text->data(), 1, text->size(), file_) != text->size() ||
        std::fputc('\n', file_) == EOF || std::fflush(file_) != 0)
      ++write_errors_;
  }
  keep(text, msg);
  return text;
}

void History::enforce_bounds() {
  while (entries_.size() > opt_.max_messages || bytes_ > opt_.max_bytes) {
    // Steps are any int64 a rank sends: stop doubling before the stride
    // overflows (fuzz_monitor_protocol sent step 2^62); past that, the oldest
    // entries go below.
    if (stride_ <= std::numeric_limits<int64_t>::max() / 2) stride_ *= 2;
    const size_t half = entries_.size() / 2;
    std::deque<Entry> kept;
    size_t dropped = 0;
    for (size_t i = 0; i < entries_.size(); ++i) {
      Entry& e = entries_[i];
      if (i < half && e.thinnable && (e.step < 0 || e.step % stride_ != 0)) {
        bytes_ -= e.text->size() + kEntryOverhead;
        ++dropped;
        continue;
      }
      kept.push_back(std::move(e));
    }
    entries_.swap(kept);
    thinned_ += dropped;
    if (dropped == 0) {  // nothing left to thin: forget the oldest
      while (!entries_.empty() &&
             (entries_.size() > opt_.max_messages || bytes_ > opt_.max_bytes)) {
        bytes_ -= entries_.front().text->size() + kEntryOverhead;
        entries_.pop_front();
        ++thinned_;
      }
      break;
    }
  }
}

std::vector<SharedText> History::snapshot() const {
  std::vector<SharedText> out;
  out.reserve(entries_.size());
  for (auto& e : entries_) out.push_back(e.text);
  return out;
}

// ---- RankTracker ------------------------------------------------------------------

namespace {

json stat(std::vector<double> v, bool with_median, bool with_sum) {
  json s = json::object();
  std::vector<double> f;
  for (double x : v)
    if (std::isfinite(x)) f.push_back(x);
  if (f.empty()) {
    s["mean"] = s["min"] = s["max"] = nullptr;
    if (with_median) s["median"] = nullptr;
    if (with_sum) s["sum"] = nullptr;
    return s;
  }
  double sum = 0;
  for (double x : f) sum += x;
  std::sort(f.begin(), f.end());
  s["mean"] = sum / f.size();
  s["min"] = f.front();
  s["max"] = f.back();
  if (with_median) {
    size_t n = f.size();
    s["median"] = n % 2 ? f[n / 2] : 0.5 * (f[n / 2 - 1] + f[n / 2]);
  }
  if (with_sum) s["sum"] = sum;
  return s;
}

std::optional<double> opt_number(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

json aggregator_event(const char* kind, const std::string& message, int rank) {
  json e = envelope("event");
  e["kind"] = kind;
  e["message"] = message;
  e["data"] = json{{"rank", rank}};
  return e;
}

}  // namespace

RankTracker::RankTracker(TrackerOptions o) : opt_(o) {}

int RankTracker::world_size() const {
  int w = world_size_;
  if (!ranks_.empty()) w = std::max(w, ranks_.rbegin()->first + 1);
  return w;
}

bool RankTracker::expected(int rank) const {
  auto it = ranks_.find(rank);
  if (it == ranks_.end()) return rank < world_size_;  // announced, not yet heard from
  return it->second.state == "alive";
}

std::vector<int> RankTracker::expected_ranks() const {
  std::vector<int> out;
  for (int r = 0; r < world_size(); ++r)
    if (expected(r)) out.push_back(r);
  return out;
}

json RankTracker::aggregate(int64_t step, const std::map<int, Sample>& bucket, bool complete,
                            std::vector<json>& out, double now) {
  std::vector<double> loss, time, tps, gn;
  for (auto& [r, s] : bucket) {
    loss.push_back(s.loss);
    time.push_back(s.step_time);
    if (s.tokens_per_s) tps.push_back(*s.tokens_per_s);
    if (s.grad_norm) gn.push_back(*s.grad_norm);
  }
  json a = envelope("aggregate");
  a["step"] = step;
  a["ranks"] = static_cast<int>(bucket.size());
  a["world_size"] = std::max(world_size(), 1);
  a["complete"] = complete;
  a["loss"] = stat(loss, false, false);
  json st = stat(time, true, false);
  a["step_time"] = st;
  if (!tps.empty()) a["tokens_per_s"] = stat(tps, false, true);
  if (!gn.empty()) a["grad_norm"] = stat(gn, false, false);
  const Sample& first = bucket.begin()->second;
  if (first.lr) a["lr"] = real(*first.lr);
  json stragglers = json::array();
  bool changed = false;
  if (bucket.size() >= 2 && st["median"].is_number()) {
    const double limit = st["median"].get<double>() * (1.0 + opt_.straggler_fraction);
    for (auto& [r, s] : bucket) {
      bool slow = s.step_time > limit;
      if (slow) stragglers.push_back(r);
      Rank& R = ranks_[r];
      if (slow != R.straggler) {
        R.straggler = slow;
        changed = true;
        if (slow)
          out.push_back(aggregator_event(
              "straggler",
              fmt::format(
                  "rank {} took {:.3f} s at step {}, more than {:.0f}% above the median {:.3f} s",
                  r, s.step_time, step, opt_.straggler_fraction * 100, st["median"].get<double>()),
              r));
      }
    }
  }
  a["stragglers"] = stragglers;
  out.push_back(a);
  if (changed) out.push_back(ranks_message(now));
  last_aggregated_ = std::max(last_aggregated_, step);
  return a;
}

std::vector<json> RankTracker::settle(double now, bool force_oldest) {
  std::vector<json> out;
  while (!buckets_.empty()) {
    auto it = buckets_.begin();
    bool complete = true;
    for (int r : expected_ranks()) complete = complete && it->second.count(r);
    if (complete || buckets_.size() > opt_.pending_steps || force_oldest) {
      aggregate(it->first, it->second, complete, out, now);
      buckets_.erase(it);
      force_oldest = false;
      continue;
    }
    break;
  }
  return out;
}

std::vector<json> RankTracker::observe(const json& msg, double now) {
  std::vector<json> out;
  if (!msg.contains("rank")) return out;
  const int r = msg["rank"].get<int>();
  const std::string& type = msg["type"].get_ref<const std::string&>();
  bool changed = false;
  auto found = ranks_.find(r);
  if (found == ranks_.end() || (found->second.state != "alive" && type != "bye")) {
    bool back = found != ranks_.end();
    Rank& R = ranks_[r];
    R.state = "alive";
    out.push_back(aggregator_event(
        "rank_joined", back ? fmt::format("rank {} is back", r) : fmt::format("rank {} joined", r),
        r));
    changed = true;
  }
  Rank& R = ranks_[r];
  R.last_seen = now;
  world_size_ = std::max(world_size_, r + 1);
  if (type == "run_info") {
    world_size_ = std::max(world_size_, msg["world_size"].get<int>());
    std::string run_id = msg["run_id"].get<std::string>();
    if (r == 0 && run_id != run_id_) {
      // A new run (or a resume): steps may go back. Not when this is the first
      // run this tracker hears of: after an aggregator restart the ranks
      // reconnect in any order, and the steps the others resent first belong
      // to this same run (dropping them left each such step waiting for a rank
      // that had already sent it, and the aggregates stalled for pending_steps).
      if (!run_id_.empty()) {
        buckets_.clear();
        last_aggregated_ = -1;
      }
      run_id_ = run_id;
    }
  } else if (type == "heartbeat") {
    if (msg.contains("step")) R.step = msg["step"].get<int64_t>();
    R.idle_s = opt_number(msg, "idle_s");
    if (msg.contains("dropped")) R.dropped = msg["dropped"].get<int64_t>();
  } else if (type == "step") {
    const int64_t step = msg["step"].get<int64_t>();
    R.step = step;
    R.idle_s = 0.0;
    R.loss = opt_number(msg, "loss");
    R.lr = opt_number(msg, "lr");
    R.grad_norm = opt_number(msg, "grad_norm");
    R.tokens_per_s = opt_number(msg, "tokens_per_s");
    R.step_time = msg["time"]["total"].get<double>();
    R.mem = msg.value("mem", json());
    R.gpu = msg.value("gpu", json());
    if (step > last_aggregated_) {
      Sample s{R.loss.value_or(NAN), *R.step_time, R.tokens_per_s, R.grad_norm, R.lr};
      buckets_[step][r] = s;
    }
  } else if (type == "validation") {
    R.val_loss = opt_number(msg, "loss");
  } else if (type == "bye") {
    if (R.state != "finished") changed = true;
    R.state = "finished";
    R.straggler = false;
  }
  for (auto& m : settle(now, false)) out.push_back(std::move(m));
  if (changed) {
    out.push_back(ranks_message(now));
    last_ranks_msg_ = now;
  }
  return out;
}

std::vector<json> RankTracker::tick(double now) {
  std::vector<json> out;
  bool changed = false;
  for (auto& [r, R] : ranks_) {
    if (R.state == "alive" && now - R.last_seen > opt_.dead_after_s) {
      R.state = "dead";
      R.straggler = false;
      changed = true;
      out.push_back(aggregator_event(
          "rank_lost", fmt::format("rank {}: no message for {:.1f} s", r, now - R.last_seen), r));
    }
  }
  for (auto& m : settle(now, false)) out.push_back(std::move(m));
  if (!ranks_.empty() && (changed || now - last_ranks_msg_ >= opt_.ranks_every_s)) {
    out.push_back(ranks_message(now));
    last_ranks_msg_ = now;
  }
  return out;
}

json RankTracker::ranks_message(double now) const {
  json m = envelope("ranks");
  m["world_size"] = world_size();
  json arr = json::array();
  for (auto& [r, R] : ranks_) {
    json x;
    x["rank"] = r;
    x["state"] = R.state;
    if (R.step) x["step"] = *R.step;
    x["last_seen_s"] = std::max(0.0, now - R.last_seen);
    if (R.idle_s && *R.idle_s >= 0) x["idle_s"] = *R.idle_s;
    if (R.step_time) x["step_time"] = *R.step_time;
    x["straggler"] = R.straggler;
    if (R.dropped && *R.dropped >= 0) x["dropped"] = *R.dropped;
    arr.push_back(std::move(x));
  }
  m["ranks"] = std::move(arr);
  return m;
}

namespace {
void gauge(std::string& out, const char* name, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, help, name);
}
void sample(std::string& out, const char* name, int rank, double v) {
  if (!std::isfinite(v)) return;
  out += fmt::format("{}{{rank=\"{}\"}} {}\n", name, rank, v);
}
}  // namespace

std::string RankTracker::prometheus(double now) const {
  std::string out;
  gauge(out, "shardlm_world_size", "Ranks in the run.");
  out += fmt::format("shardlm_world_size {}\n", world_size());
  struct G {
    const char* name;
    const char* help;
    std::function<std::optional<double>(const Rank&)> get;
  };
  auto from_json = [](const json& obj, const char* key) -> std::optional<double> {
    if (!obj.is_object()) return std::nullopt;
    return opt_number(obj, key);
  };
  const G gauges[] = {
      {"shardlm_rank_up", "1 while the rank is alive.",
       [](const Rank& R) { return std::optional<double>(R.state == "alive" ? 1 : 0); }},
      {"shardlm_rank_straggler", "1 while the rank is a straggler.",
       [](const Rank& R) { return std::optional<double>(R.straggler ? 1 : 0); }},
      {"shardlm_last_seen_seconds", "Seconds since the rank's last message.",
       [now](const Rank& R) { return std::optional<double>(now - R.last_seen); }},
      {"shardlm_step", "Last step reported.",
       [](const Rank& R) {
         return R.step ? std::optional<double>(double(*R.step)) : std::nullopt;
       }},
      {"shardlm_loss", "Training loss at the last step.", [](const Rank& R) { return R.loss; }},
      {"shardlm_learning_rate", "Learning rate at the last step.",
       [](const Rank& R) { return R.lr; }},
      {"shardlm_grad_norm", "Gradient norm at the last step.",
       [](const Rank& R) { return R.grad_norm; }},
      {"shardlm_tokens_per_second", "Tokens per second of the rank.",
       [](const Rank& R) { return R.tokens_per_s; }},
      {"shardlm_step_time_seconds", "Duration of the last step.",
       [](const Rank& R) { return R.step_time; }},
      {"shardlm_validation_loss", "Last validation loss.",
       [](const Rank& R) { return R.val_loss; }},
      {"shardlm_host_rss_bytes", "Resident memory of the rank's process.",
       [from_json](const Rank& R) { return from_json(R.mem, "host_rss"); }},
      {"shardlm_host_available_bytes", "Available memory of the rank's host.",
       [from_json](const Rank& R) { return from_json(R.mem, "host_available"); }},
      {"shardlm_device_allocated_bytes", "Device memory allocated by the framework.",
       [from_json](const Rank& R) { return from_json(R.mem, "device_allocated"); }},
      {"shardlm_gpu_utilization_percent", "GPU utilisation (NVML).",
       [from_json](const Rank& R) { return from_json(R.gpu, "util"); }},
      {"shardlm_gpu_temperature_celsius", "GPU temperature (NVML).",
       [from_json](const Rank& R) { return from_json(R.gpu, "temp_c"); }},
      {"shardlm_gpu_power_watts", "GPU power draw (NVML).",
       [from_json](const Rank& R) { return from_json(R.gpu, "power_w"); }},
      {"shardlm_gpu_memory_used_bytes", "GPU memory used (NVML).",
       [from_json](const Rank& R) { return from_json(R.gpu, "mem_used"); }},
      {"shardlm_sink_dropped", "Messages the rank's sink dropped.",
       [](const Rank& R) {
         return R.dropped ? std::optional<double>(double(*R.dropped)) : std::nullopt;
       }},
  };
  for (auto& g : gauges) {
    std::string lines;
    for (auto& [r, R] : ranks_)
      if (auto v = g.get(R)) sample(lines, g.name, r, *v);
    if (lines.empty()) continue;
    gauge(out, g.name, g.help);
    out += lines;
  }
  return out;
}

}  // namespace shardlm::monitor
