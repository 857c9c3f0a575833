// The workbench on the aggregator's side (workbench.h): the ratings store,
// generation processes with their output relayed line by line, and the
// evaluation reports of the run directory.
#include "monitor/workbench.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include <fmt/format.h>
#include <boost/asio.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "core/error.h"
#include "core/log.h"
#include "monitor/launch.h"
#include "monitor/protocol.h"
#include "monitor/ratings_store.h"

extern char** environ;

namespace shardlm::monitor {

namespace fs = std::filesystem;
namespace net = boost::asio;
using json = nlohmann::json;
using error_code = boost::system::error_code;

namespace {

std::string own_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("shardlm") : p.string();
}

bool is_url(const std::string& t) {
  return t.rfind("http://", 0) == 0 || t.rfind("https://", 0) == 0;
}

// "step-000650" and "step-650" name the same checkpoint: its step, for the leaderboard's marks.
std::optional<int64_t> checkpoint_step(const std::string& name) {
  const auto base = fs::path(name).filename().string();
  if (base.rfind("step-", 0) != 0 || base.size() == 5) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 5; i < base.size(); ++i) {
    if (base[i] < '0' || base[i] > '9' || v > (int64_t{1} << 55)) return std::nullopt;
    v = v * 10 + (base[i] - '0');
  }
  return v;
}

// ---- a generation process ----------------------------------------------------------------

// `shardlm generate --events ...` with its stdout on a pipe read by the io
// context, one JSON object per line; stderr is appended to RUN_DIR/workbench.log.
class Worker : public std::enable_shared_from_this<Worker> {
 public:
  using Line = std::function<void(const json&)>;
  using Exit = std::function<void(int code, bool saw_end)>;

  Worker(net::io_context& ioc, double timeout_s)
      : pipe_(ioc), timer_(ioc), reap_(ioc), timeout_s_(timeout_s) {}

  // Throws core::Error when the process cannot start.
  void start(const std::vector<std::string>& argv, const std::string& log, Line on_line,
             Exit on_exit) {
    on_line_ = std::move(on_line);
    on_exit_ = std::move(on_exit);
    int fds[2];
    SHARDLM_CHECK(::pipe2(fds, O_CLOEXEC) == 0, core::Error, "pipe: {}", std::strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    // Not the aggregator's sockets (Asio does not mark them close-on-exec).
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
    std::vector<std::string> args = argv;
    std::vector<char*> cargv;
    for (auto& a : args) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, cargv[0], &fa, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    if (rc != 0) {
      ::close(fds[0]);
      SHARDLM_FAIL(core::Error, "cannot start '{}': {}", argv[0], std::strerror(rc));
    }
    pipe_.assign(fds[0]);
    timer_.expires_after(std::chrono::milliseconds(static_cast<int64_t>(timeout_s_ * 1000)));
    timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec) return;
      core::log::warn("workbench: generation process {} ran past {} s: killed", self->pid_,
                      self->timeout_s_);
      self->kill();
    });
    read();
  }

  void kill() {
    if (pid_ > 0 && !reaped_) ::kill(pid_, SIGKILL);
  }
  pid_t pid() const {
    return pid_;
  }

 private:
  void read() {
    net::async_read_until(pipe_, buf_, '\n', [self = shared_from_this()](error_code ec, size_t n) {
      self->on_read(ec, n);
    });
  }

  void on_read(error_code ec, size_t n) {
    if (!ec) {
      std::string line(static_cast<const char*>(buf_.data().data()), n);
      buf_.consume(n);
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      json j = json::parse(line, nullptr, false);
      if (j.is_object()) {
        if (j.value("event", "") == "end") saw_end_ = true;
        if (on_line_) on_line_(j);
      } else if (!line.empty()) {
        core::log::debug("workbench: not a JSON line from generation process {}: {}", pid_, line);
      }
      return read();
    }
    // EOF (or an error): the process is ending; reap it without blocking the io thread.
    error_code ignore;
    pipe_.close(ignore);
    wait_exit(0);
  }

  void wait_exit(int tries) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == 0 && tries < 200) {  // up to 10 s after it closed its stdout
      reap_.expires_after(std::chrono::milliseconds(50));
      reap_.async_wait([self = shared_from_this(), tries](error_code ec) {
        if (!ec) self->wait_exit(tries + 1);
      });
      return;
    }
    if (r == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    reaped_ = true;
    timer_.cancel();
    int code = -1;
    if (WIFEXITED(status)) code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) code = 128 + WTERMSIG(status);
    if (on_exit_) on_exit_(code, saw_end_);
    on_line_ = nullptr;
    on_exit_ = nullptr;
  }

  net::posix::stream_descriptor pipe_;
  net::steady_timer timer_, reap_;
  net::streambuf buf_;
  double timeout_s_;
  pid_t pid_ = -1;
  bool reaped_ = false, saw_end_ = false;
  Line on_line_;
  Exit on_exit_;
};

}  // namespace

// ---- the workbench ------------------------------------------------------------------------

struct Workbench::Impl : std::enable_shared_from_this<Workbench::Impl> {
  Impl(WorkbenchConfig c, net::io_context& i, Io o) : cfg(std::move(c)), ioc(i), io(std::move(o)) {}

  WorkbenchConfig cfg;
  net::io_context& ioc;
  Io io;
  std::mutex mu;  // the store, the workers
  std::unique_ptr<RatingsStore> store;
  std::set<std::shared_ptr<Worker>> workers;
  bool stopped = false;

  std::string log_path() const { return (fs::path(cfg.run_dir) / "workbench.log").string(); }

  // The store, opened on first use (a run that nobody rates gets no database). Under mu.
  RatingsStore& db() {
    if (!store)
      store = std::make_unique<RatingsStore>((fs::path(cfg.run_dir) / "ratings.db").string());
    return *store;
  }

  json vote_row(const RatingVote& v) {
    auto p = db().pair(v.pair);
    auto a = db().sample(p->sample_a), b = db().sample(p->sample_b);
    auto step = [](const RatingSample& s) { return s.step ? json(*s.step) : json(); };
    std::string outcome = v.choice;
    if (v.choice == "A" || v.choice == "B") {
      const int64_t winner = v.choice == "A" ? v.shown_a : v.shown_b;
      outcome = winner == p->sample_a ? "a" : "b";
    }
    return {{"vote", v.id},
            {"rater", v.rater},
            {"pair", v.pair},
            {"batch", p->batch},
            {"sources", {a->source, b->source}},
            {"steps", {step(*a), step(*b)}},
            {"outcome", outcome},
            {"time", v.time}};
  }

  json votes_message(const std::vector<RatingVote>& votes, bool append) {
    json m = envelope("rate_votes");
    m["append"] = append;
    m["votes"] = json::array();
    for (const auto& v : votes) m["votes"].push_back(vote_row(v));
    std::set<std::string> batches;
    const auto pairs = db().pairs();
    for (const auto& p : pairs) batches.insert(p.batch);
    m["pairs"] = pairs.size();
    m["batches"] = batches;
    return m;
  }

  // Starts one generation process; refuses (busy) past max_workers.
  void spawn(const std::vector<std::string>& argv, Worker::Line on_line, Worker::Exit on_exit) {
    std::lock_guard<std::mutex> g(mu);
    if (stopped) throw ProtocolError("busy", "the monitor is stopping");
    if (static_cast<int>(workers.size()) >= cfg.max_workers)
      throw ProtocolError("busy", fmt::format("{} generations are running already; try again when "
                                              "one has finished",
                                              workers.size()));
    auto w = std::make_shared<Worker>(ioc, cfg.worker_timeout_s);
    std::weak_ptr<Impl> weak = shared_from_this();
    auto done = [weak, w, on_exit](int code, bool end) {
      if (auto self = weak.lock()) {
        std::lock_guard<std::mutex> g(self->mu);
        self->workers.erase(w);
      }
      on_exit(code, end);
    };
    w->start(argv, log_path(), std::move(on_line), std::move(done));
    workers.insert(w);
  }
};

Workbench::Workbench(WorkbenchConfig cfg, net::io_context& ioc, Io io)
    : impl_(std::make_shared<Impl>(std::move(cfg), ioc, std::move(io))) {}

Workbench::~Workbench() {
  stop();
}

void Workbench::stop() {
  std::lock_guard<std::mutex> g(impl_->mu);
  impl_->stopped = true;
  for (auto& w : impl_->workers) w->kill();
}

std::string run_tokenizer(const json& run_info) {
  const json cfg = run_info.is_object() ? run_info.value("config", json::object()) : json();
  auto get = [&](const char* section, const char* key) {
    if (!cfg.is_object() || !cfg.contains(section) || !cfg[section].is_object())
      return std::string();
    const json& v = cfg[section].value(key, json());
    return v.is_string() ? v.get<std::string>() : std::string();
  };
  std::error_code ec;
  if (auto t = get("train", "tokenizer"); !t.empty() && fs::is_regular_file(t, ec)) return t;
  if (auto d = get("data", "path"); !d.empty())
    for (const fs::path& p :
         {fs::path(d) / "tokenizer.json", fs::path(d).parent_path() / "tokenizer.json"})
      if (fs::is_regular_file(p, ec)) return p.string();
  return "";
}

std::vector<std::string> Workbench::worker_argv(const std::string& target, const json& args,
                                                const json& run_info) const {
  std::vector<std::string> argv = {impl_->cfg.shardlm.empty() ? own_exe() : impl_->cfg.shardlm,
                                   "generate", "--events", "--request",
                                   args.dump(-1, ' ', false, json::error_handler_t::replace)};
  if (is_url(target)) {
    argv.insert(argv.end(), {"--url", target});
    return argv;
  }
  std::string dir;
  try {
    dir = find_checkpoint(impl_->cfg.run_dir, target);
  } catch (const core::Error& e) {
    // "step-20" names step-000020 too (the trainer zero-pads).
    const auto want = checkpoint_step(target);
    for (const auto& item : list_checkpoints(impl_->cfg.run_dir))
      if (want && item["step"].is_number_integer() && item["step"].get<int64_t>() == *want)
        dir = item["path"].get<std::string>();
    if (dir.empty()) throw ProtocolError("not_found", e.message());
  }
  argv.insert(argv.end(), {"--model", dir});
  if (auto tok = run_tokenizer(run_info); !tok.empty())
    argv.insert(argv.end(), {"--tokenizer", tok});
  return argv;
}

// ---- Generate ------------------------------------------------------------------------------

void Workbench::generate(uint64_t session, const json& msg, const json& run_info) {
  const std::string id = msg["id"].get<std::string>();
  json args = msg.value("args", json::object());
  const std::string target = args.value("target", std::string());
  args.erase("target");
  auto argv = worker_argv(target, args, run_info);
  auto io = impl_->io;
  auto answer = [io, session, id](bool ok, bool partial, const json& data, const std::string& why) {
    json r = envelope("inspect_result");
    r["id"] = id;
    r["what"] = "generate";
    r["ok"] = ok;
    if (partial) r["partial"] = true;
    if (!why.empty()) r["message"] = why;
    if (data.is_object()) r["data"] = data;
    io.send(session, r);
  };
  auto finished = std::make_shared<bool>(false);
  const std::string log = impl_->log_path();
  impl_->spawn(
      argv,
      [answer, finished, target](const json& line) {
        const std::string ev = line.value("event", "");
        json data = line;
        data["target"] = target;
        if (ev == "token") {
          answer(true, true, data, "");
        } else if (ev == "done") {
          *finished = true;
          answer(true, false, data, "");
        } else if (ev == "error") {
          *finished = true;
          answer(false, false, json(), line.value("message", std::string("generation failed")));
        }
      },
      [answer, finished, log](int code, bool) {
        if (!*finished)
          answer(false, false, json(),
                 fmt::format("the generation process exited with code {} before it finished "
                             "(see {})",
                             code, log));
      });
}

// ---- Rate ------------------------------------------------------------------------------------

void Workbench::rate_next(uint64_t session, const json& msg) {
  const std::string rater = msg["rater"].get<std::string>();
  const std::string batch = msg.value("batch", std::string());
  json r = envelope("rate_pair");
  r["id"] = msg["id"];
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    RatingsStore& db = impl_->db();
    const auto next = db.next_pair(rater, batch);
    r["progress"] = {{"done", db.votes_by(rater, batch)},
                     {"total", static_cast<int64_t>(db.pairs(batch).size())}};
    if (!next) {
      r["pair"] = nullptr;
    } else {
      auto a = db.sample(next->sample_a), b = db.sample(next->sample_b);
      if (RatingsStore::swapped_for(rater, next->id)) std::swap(a, b);
      r["pair"] = {{"id", next->id},
                   {"batch", next->batch},
                   {"prompt", a->prompt},
                   {"a", {{"sample", a->id}, {"text", a->text}}},
                   {"b", {{"sample", b->id}, {"text", b->text}}}};
    }
  }
  impl_->io.send(session, r);
}

void Workbench::rate_vote(uint64_t session, const json& msg) {
  RatingVote v;
  v.rater = msg["rater"].get<std::string>();
  v.pair = msg["pair"].get<int64_t>();
  v.shown_a = msg["shown"][0].get<int64_t>();
  v.shown_b = msg["shown"][1].get<int64_t>();
  v.choice = msg["choice"].get<std::string>();
  v.client = fmt::format("session {}", session);
  json ack = envelope("rate_ack");
  ack["id"] = msg["id"];
  ack["pair"] = v.pair;
  json update;
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    RatingsStore& db = impl_->db();
    VoteResult r;
    try {
      r = db.vote(v);  // committed and fsync'ed: only now is it acknowledged
    } catch (const core::DataError& e) {
      throw ProtocolError("bad_message", e.message());
    }
    auto sample_json = [&](int64_t id) {
      auto s = db.sample(id);
      return json{
          {"sample", id}, {"source", s->source}, {"step", s->step ? json(*s->step) : json()}};
    };
    ack["ok"] = true;
    ack["vote"] = r.id;
    ack["duplicate"] = r.duplicate;
    ack["choice"] = v.choice;
    ack["reveal"] = {{"a", sample_json(v.shown_a)}, {"b", sample_json(v.shown_b)}};
    if (!r.duplicate) {
      v.id = r.id;
      update = impl_->votes_message({v}, true);
    }
  }
  impl_->io.send(session, ack);
  if (update.is_object()) impl_->io.broadcast(update);
}

void Workbench::rate_votes(uint64_t session, const json& msg) {
  json m;
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    m = impl_->votes_message(impl_->db().votes(), false);
  }
  if (msg.contains("id")) m["id"] = msg["id"];
  impl_->io.send(session, m);
}

void Workbench::rate_create(uint64_t session, const json& msg, const json& run_info) {
  const std::string id = msg["id"].get<std::string>();
  const auto sources = msg["sources"].get<std::vector<std::string>>();
  const auto prompts = msg["prompts"].get<std::vector<std::string>>();
  if (sources[0] == sources[1])
    throw ProtocolError("bad_message", "a comparison needs two different sources");
  json options = msg.value("options", json::object());
  std::string batch = msg.value("batch", std::string());
  if (batch.empty()) batch = sources[0] + " vs " + sources[1];
  // Every process gets all prompts; both must finish before any pair exists.
  struct Job {  // filled by two processes' handlers, which may run on two io threads
    std::mutex mu;
    // Sized with (), not {}: `std::vector<json>{2}` is ONE json holding 2 (json
    // converts from int), and opts[1] was written past its end (the monitor
    // died with a corrupted heap when a comparison was created).
    std::vector<std::vector<std::string>> texts = std::vector<std::vector<std::string>>(2);
    std::vector<json> opts = std::vector<json>(2);
    int pending = 2;
    bool failed = false;
    std::string why;
  };
  auto job = std::make_shared<Job>();
  for (int s = 0; s < 2; ++s) job->texts[s].assign(prompts.size(), std::string());
  std::vector<std::vector<std::string>> argvs;
  for (int s = 0; s < 2; ++s) {
    json args = {{"prompts", prompts}, {"options", options}, {"top", 0}};
    argvs.push_back(worker_argv(sources[s], args, run_info));
  }
  std::weak_ptr<Impl> weak = impl_;
  auto io = impl_->io;
  auto finish = [weak, io, session, id, job, sources, prompts, batch, options]() {
    json r = envelope("rate_created");
    r["id"] = id;
    r["batch"] = batch;
    auto self = weak.lock();
    if (!self || job->failed) {
      r["ok"] = false;
      r["message"] = job->why.empty() ? "the monitor stopped" : job->why;
      return io.send(session, r);
    }
    int64_t made = 0;
    try {
      std::lock_guard<std::mutex> g(self->mu);
      RatingsStore& db = self->db();
      for (size_t p = 0; p < prompts.size(); ++p) {
        int64_t ids[2];
        for (int s = 0; s < 2; ++s)
          ids[s] =
              db.add_sample({sources[s], checkpoint_step(sources[s]), prompts[p], job->texts[s][p],
                             job->opts[s].is_object() ? job->opts[s] : options});
        db.add_pair(batch, ids[0], ids[1]);
        ++made;
      }
      r["ok"] = true;
      r["pairs"] = made;
      json update = self->votes_message({}, true);
      io.send(session, r);
      io.broadcast(update);
      return;
    } catch (const core::Error& e) {
      r["ok"] = false;
      r["message"] = e.message();
    }
    io.send(session, r);
  };
  const std::string log = impl_->log_path();
  for (int s = 0; s < 2; ++s) {
    impl_->spawn(
        argvs[s],
        [job, s](const json& line) {
          std::lock_guard<std::mutex> g(job->mu);
          const std::string ev = line.value("event", "");
          if (ev == "done") {
            const size_t p = line.value("prompt", size_t{0});
            if (p < job->texts[s].size()) job->texts[s][p] = line.value("text", std::string());
            if (line.contains("config")) job->opts[s] = line["config"];
          } else if (ev == "error") {
            job->failed = true;
            job->why = line.value("message", std::string("generation failed"));
          }
        },
        [job, s, finish, log, sources](int code, bool end) {
          bool last = false;
          {
            std::lock_guard<std::mutex> g(job->mu);
            if (!end && !job->failed) {
              job->failed = true;
              job->why = fmt::format("generating from {} failed (exit code {}; see {})", sources[s],
                                     code, log);
            }
            last = --job->pending == 0;
          }
          if (last) finish();
        });
  }
}

// ---- Evaluate --------------------------------------------------------------------------------

std::optional<std::pair<int, std::string>> Workbench::http_get(const std::string& target) {
  const std::string prefix = "/api/evals";
  if (target.rfind(prefix, 0) != 0) return std::nullopt;
  const fs::path dir = fs::path(impl_->cfg.run_dir) / "eval";
  std::error_code ec;
  if (target == prefix || target == prefix + "/") {
    json items = json::array();
    if (fs::is_directory(dir, ec)) {
      for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (!e.is_regular_file(ec) || e.path().extension() != ".json") continue;
        std::ifstream in(e.path());
        json j = json::parse(in, nullptr, false);
        json item = {{"name", e.path().filename().string()},
                     {"bytes", static_cast<int64_t>(e.file_size(ec))}};
        auto mtime = fs::last_write_time(e.path(), ec);
        item["mtime"] =
            std::chrono::duration<double>(mtime.time_since_epoch() -
                                          fs::file_time_type::clock::now().time_since_epoch() +
                                          std::chrono::system_clock::now().time_since_epoch())
                .count();
        // eval compare: {"models": [...], "comparisons"}; eval run: {"model", "tasks"}.
        item["kind"] = !j.is_object()              ? "unreadable"
                       : j.contains("comparisons") ? "compare"
                       : j.contains("tasks")       ? "run"
                                                   : "other";
        if (j.is_object()) item["suite"] = j.value("suite", json());
        items.push_back(item);
      }
    }
    std::sort(items.begin(), items.end(),
              [](const json& a, const json& b) { return a["name"] < b["name"]; });
    return std::make_pair(
        200, dump(json{{"run_dir", impl_->cfg.run_dir}, {"dir", dir.string()}, {"items", items}}));
  }
  const std::string name = target.substr(prefix.size() + 1);
  if (name.empty() || name.find('/') != std::string::npos || name.find("..") != std::string::npos ||
      fs::path(name).extension() != ".json")
    return std::make_pair(400, dump(json{{"error", "expected /api/evals/NAME.json"}}));
  std::ifstream in(dir / name, std::ios::binary);
  if (!in)
    return std::make_pair(404, dump(json{{"error", "no report " + name + " in " + dir.string()}}));
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return std::make_pair(200, std::move(body));
}

}  // namespace shardlm::monitor
