// Watchdog side channel (see watchdog.h for the protocol).
#include "parallel/watchdog.h"

#include <array>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "core/env.h"
#include "core/mpi_check.h"

namespace shardlm::parallel {

namespace {
constexpr int kTagQuery = 7101;                       // int64[2]: nonce, seq
constexpr int kTagReply = 7102;                       // int64[4]: nonce, called, started, completed
constexpr int kTagNotice = 7103;                      // char[]: the report text
constexpr int kTagAck = 7104;                         // int64[1]: 1
constexpr auto kPoll = std::chrono::milliseconds(2);  // while investigating or aborting
// The listener's idle poll: each pass probes MPI twice (driving MPI's progress
// engine), and every group of every rank has a listener; at 2 ms they cost a
// training run of small steps a fifth of its CPU. A deadline is seconds long.
constexpr auto kListenPoll = std::chrono::milliseconds(20);
// After printing a notice, a rank waits this long for the reporter's MPI_Abort
// before aborting by itself (the reporter may have died).
constexpr auto kNoticeDeadline = std::chrono::seconds(10);

using Clock = std::chrono::steady_clock;

std::string join_ranks(const std::vector<int>& r) {
  std::string s;
  for (size_t i = 0; i < r.size(); ++i) s += (i ? ", " : "") + std::to_string(r[i]);
  return s;
}
}  // namespace

// ---- report ----------------------------------------------------------------------

std::vector<int> WatchdogReport::not_arrived() const {
  std::vector<int> out;
  for (const RankProgress& p : ranks)
    if (!p.answered || p.called < seq) out.push_back(p.rank);
  return out;
}

std::string WatchdogReport::text() const {
  std::string s = fmt::format(
      "watchdog: collective #{} {} of group '{}' did not complete within {} ms on rank {}; ", seq,
      collective, group, waited_ms, reporter);
  std::vector<int> missing = not_arrived();
  if (!missing.empty()) {
    s += fmt::format("ranks not arrived: {}", join_ranks(missing));
  } else {
    std::vector<int> inside;
    for (const RankProgress& p : ranks)
      if (p.completed < seq) inside.push_back(p.rank);
    s += fmt::format("ranks not arrived: none (every rank called it; not completed on ranks {})",
                     join_ranks(inside));
  }
  s += " | progress:";
  for (const RankProgress& p : ranks) {
    if (p.answered)
      s += fmt::format(" r{} called #{} started #{} done #{};", p.rank, p.called, p.started,
                       p.completed);
    else
      s += fmt::format(" r{} no answer;", p.rank);
  }
  return s;
}

// ---- lifetime --------------------------------------------------------------------

Watchdog::Watchdog(MPI_Comm comm, std::string group_name) : group_(std::move(group_name)) {
  SHARDLM_MPI_CHECK(MPI_Comm_dup(comm, &side_));
  SHARDLM_MPI_CHECK(MPI_Comm_rank(side_, &rank_));
  SHARDLM_MPI_CHECK(MPI_Comm_size(side_, &size_));
  if (size_ > 1) listener_ = std::thread([this] { listen(); });
}

Watchdog::~Watchdog() {
  stop_.store(true);
  if (listener_.joinable()) listener_.join();
  if (side_ != MPI_COMM_NULL && core::MpiSession::active()) MPI_Comm_free(&side_);
}

// ---- listener --------------------------------------------------------------------

void Watchdog::listen() {
  while (!stop_.load()) {
    if (serve_once()) continue;
    check_deadline();
    if (Clock::now() > notice_deadline_) {
      std::fprintf(stderr,
                   "[shardlm watchdog] rank %d: the reporting rank did not abort; aborting\n",
                   rank_);
      std::fflush(stderr);
      core::MpiSession::abort(kWatchdogExitCode);
    }
    std::this_thread::sleep_for(kListenPoll);
  }
}

bool Watchdog::serve_once() {
  int flag = 0;
  MPI_Status st;
  if (MPI_Iprobe(MPI_ANY_SOURCE, kTagQuery, side_, &flag, &st) == MPI_SUCCESS && flag) {
    answer_query(st.MPI_SOURCE);
    return true;
  }
  if (MPI_Iprobe(MPI_ANY_SOURCE, kTagNotice, side_, &flag, &st) == MPI_SUCCESS && flag) {
    answer_notice(st.MPI_SOURCE);
    if (notice_deadline_ == Clock::time_point::max())
      notice_deadline_ = Clock::now() + kNoticeDeadline;
    return true;
  }
  return false;
}

void Watchdog::arm(int64_t seq, std::string what, std::chrono::milliseconds timeout,
                   TimeoutHandler on_timeout) {
  std::lock_guard<std::mutex> lock(armed_mu_);
  armed_ = Armed{seq, std::move(what), timeout, Clock::now() + timeout, std::move(on_timeout)};
}

void Watchdog::disarm() {
  std::lock_guard<std::mutex> lock(armed_mu_);
  armed_ = Armed{};
}

void Watchdog::check_deadline() {
  Armed fired;
  {
    std::lock_guard<std::mutex> lock(armed_mu_);
    if (armed_.seq == 0 || Clock::now() < armed_.deadline) return;
    fired = std::move(armed_);
    armed_ = Armed{};  // fires once
  }
  try {
    WatchdogReport rep = investigate(fired.what, fired.seq, fired.timeout);
    if (fired.on_timeout)
      fired.on_timeout(rep);
    else
      abort_job(rep);
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "[shardlm watchdog] rank %d: collective #%lld timed out and the "
                 "investigation failed: %s\n",
                 rank_, static_cast<long long>(fired.seq), e.what());
    std::fflush(stderr);
    core::MpiSession::abort(kWatchdogExitCode);
  }
}

void Watchdog::answer_query(int source) {
  int64_t q[2] = {0, 0};
  MPI_Recv(q, 2, MPI_INT64_T, source, kTagQuery, side_, MPI_STATUS_IGNORE);
  int64_t r[4] = {q[0], called_.load(), started_.load(), completed_.load()};
  MPI_Send(r, 4, MPI_INT64_T, source, kTagReply, side_);  // small: sent eagerly
}

void Watchdog::answer_notice(int source) {
  MPI_Status st;
  MPI_Probe(source, kTagNotice, side_, &st);
  int len = 0;
  MPI_Get_count(&st, MPI_CHAR, &len);
  std::string text(static_cast<size_t>(len), '\0');
  MPI_Recv(text.data(), len, MPI_CHAR, source, kTagNotice, side_, MPI_STATUS_IGNORE);
  if (!aborting_.exchange(true)) {
    std::fprintf(stderr, "[shardlm watchdog] rank %d (notified by rank %d): %s\n", rank_, source,
                 text.c_str());
    std::fflush(stderr);
  }
  int64_t ack = 1;
  MPI_Send(&ack, 1, MPI_INT64_T, source, kTagAck, side_);
}

// ---- reporter --------------------------------------------------------------------

WatchdogReport Watchdog::investigate(const std::string& what, int64_t seq,
                                     std::chrono::milliseconds waited,
                                     std::chrono::milliseconds grace) {
  WatchdogReport rep;
  rep.group = group_;
  rep.collective = what;
  rep.seq = seq;
  rep.reporter = rank_;
  rep.waited_ms = waited.count();
  rep.ranks.resize(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r) rep.ranks[r].rank = r;
  rep.ranks[rank_] = {rank_, true, called_.load(), started_.load(), completed_.load()};

  // A nonce per investigation: a late answer to an earlier one is skipped.
  const int64_t nonce = (static_cast<int64_t>(rank_) << 40) + (++nonce_);
  std::vector<std::array<int64_t, 4>> buf(static_cast<size_t>(size_));
  std::vector<MPI_Request> req(static_cast<size_t>(size_), MPI_REQUEST_NULL);
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    int64_t q[2] = {nonce, seq};
    SHARDLM_MPI_CHECK(MPI_Send(q, 2, MPI_INT64_T, r, kTagQuery, side_));
    SHARDLM_MPI_CHECK(MPI_Irecv(buf[r].data(), 4, MPI_INT64_T, r, kTagReply, side_, &req[r]));
  }
  const auto deadline = Clock::now() + grace;
  int pending = size_ - 1;
  while (pending > 0 && Clock::now() < deadline) {
    for (int r = 0; r < size_; ++r) {
      if (req[r] == MPI_REQUEST_NULL) continue;
      int done = 0;
      SHARDLM_MPI_CHECK(MPI_Test(&req[r], &done, MPI_STATUS_IGNORE));
      if (!done) continue;
      if (buf[r][0] != nonce) {  // stale answer: listen again
        SHARDLM_MPI_CHECK(MPI_Irecv(buf[r].data(), 4, MPI_INT64_T, r, kTagReply, side_, &req[r]));
        continue;
      }
      rep.ranks[r] = {r, true, buf[r][1], buf[r][2], buf[r][3]};
      --pending;
    }
    // Other ranks may be investigating at the same moment: keep answering them.
    if (pending > 0 && !serve_once()) std::this_thread::sleep_for(kPoll);
  }
  for (MPI_Request& q : req) {
    if (q == MPI_REQUEST_NULL) continue;
    MPI_Cancel(&q);
    MPI_Request_free(&q);
  }
  return rep;
}

void Watchdog::abort_job(const WatchdogReport& report, std::chrono::milliseconds grace) {
  const std::string text = report.text();
  if (!aborting_.exchange(true)) {
    std::fprintf(stderr, "[shardlm watchdog] rank %d: %s\n", rank_, text.c_str());
    std::fflush(stderr);
  }
  // Tell every other rank, so that each prints the same report, and wait
  // (bounded) until they did before taking the job down. A rank that did not
  // answer the investigation (stopped, hung, unreachable) will not acknowledge
  // either: it is told, but not waited for.
  std::vector<MPI_Request> sends, acks;
  std::vector<int64_t> ackbuf(static_cast<size_t>(size_), 0);
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    MPI_Request s, a;
    MPI_Isend(text.data(), static_cast<int>(text.size()), MPI_CHAR, r, kTagNotice, side_, &s);
    sends.push_back(s);
    const bool answered = static_cast<size_t>(r) >= report.ranks.size() || report.ranks[r].answered;
    if (!answered) continue;
    MPI_Irecv(&ackbuf[r], 1, MPI_INT64_T, r, kTagAck, side_, &a);
    acks.push_back(a);
  }
  const auto deadline = Clock::now() + grace;
  while (Clock::now() < deadline) {
    int done = 0;
    MPI_Testall(static_cast<int>(acks.size()), acks.data(), &done, MPI_STATUSES_IGNORE);
    if (done) break;
    if (!serve_once()) std::this_thread::sleep_for(kPoll);
  }
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, kWatchdogExitCode);
  std::_Exit(kWatchdogExitCode);
}

}  // namespace shardlm::parallel
