// The ratings database (ratings_store.h) on SQLite's C API: a small RAII
// statement wrapper, the schema, and one transaction per write.
#include "monitor/ratings_store.h"

#include <sqlite3.h>

#include <chrono>
#include <ctime>
#include <functional>

#include <fmt/format.h>

#include "core/error.h"

namespace shardlm::monitor {

using json = nlohmann::json;

// Every SQLite call that can fail goes through this: the database's file, the
// expression and SQLite's own message end up in a core::DataError.
#define SHARDLM_SQLITE_CHECK(db, expr, path)                                                     \
  do {                                                                                           \
    const int rc_ = (expr);                                                                      \
    if (rc_ != SQLITE_OK && rc_ != SQLITE_DONE && rc_ != SQLITE_ROW)                             \
      throw core::DataError(fmt::format("{}: {} failed: {}", (path), #expr, sqlite3_errmsg(db)), \
                            __FILE__, __LINE__);                                                 \
  } while (0)

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS samples(
  id INTEGER PRIMARY KEY,
  source TEXT NOT NULL,
  step INTEGER,
  prompt TEXT NOT NULL,
  text TEXT NOT NULL,
  options TEXT NOT NULL DEFAULT '{}',
  created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pairs(
  id INTEGER PRIMARY KEY,
  batch TEXT NOT NULL,
  sample_a INTEGER NOT NULL REFERENCES samples(id),
  sample_b INTEGER NOT NULL REFERENCES samples(id),
  created REAL NOT NULL,
  CHECK(sample_a != sample_b));
CREATE TABLE IF NOT EXISTS votes(
  id INTEGER PRIMARY KEY,
  rater TEXT NOT NULL,
  pair INTEGER NOT NULL REFERENCES pairs(id),
  shown_a INTEGER NOT NULL REFERENCES samples(id),
  shown_b INTEGER NOT NULL REFERENCES samples(id),
  choice TEXT NOT NULL CHECK(choice IN ('A', 'B', 'tie', 'both_bad', 'skip')),
  time REAL NOT NULL,
  client TEXT NOT NULL DEFAULT '',
  UNIQUE(rater, pair));
CREATE INDEX IF NOT EXISTS votes_by_pair ON votes(pair);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('format', 'shardlm-ratings-1');
)sql";

double now_s() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string iso_time(double t) {
  const auto s = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buf, static_cast<int>((t - static_cast<double>(s)) * 1000));
}

}  // namespace

namespace {

// Runs SQL without results (pragmas, the schema, BEGIN/COMMIT).
void exec(sqlite3* h, const std::string& path, const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(h, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(h);
    sqlite3_free(err);
    throw core::DataError(fmt::format("{}: {}", path, msg), __FILE__, __LINE__);
  }
}

// One prepared statement; bind() by position (1-based), step() until done.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& path, const char* sql) : db_(db), path_(path) {
    SHARDLM_SQLITE_CHECK(db_, sqlite3_prepare_v2(db_, sql, -1, &s_, nullptr), path_);
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, int64_t v) {
    SHARDLM_SQLITE_CHECK(db_, sqlite3_bind_int64(s_, i, v), path_);
    return *this;
  }
  Stmt& bind(int i, double v) {
    SHARDLM_SQLITE_CHECK(db_, sqlite3_bind_double(s_, i, v), path_);
    return *this;
  }
  Stmt& bind(int i, const std::string& v) {
    SHARDLM_SQLITE_CHECK(
        db_, sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT),
        path_);
    return *this;
  }
  Stmt& bind_null(int i) {
    SHARDLM_SQLITE_CHECK(db_, sqlite3_bind_null(s_, i), path_);
    return *this;
  }
  // True while a row is available.
  bool step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw core::DataError(fmt::format("{}: {}", path_, sqlite3_errmsg(db_)), __FILE__, __LINE__);
  }
  int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  double f64(int c) const { return sqlite3_column_double(s_, c); }
  bool null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  std::string text(int c) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, c));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, c))) : std::string();
  }

 private:
  sqlite3* db_;
  const std::string& path_;
  sqlite3_stmt* s_ = nullptr;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back when the scope ends without commit().
class Transaction {
 public:
  Transaction(sqlite3* h, const std::string& path) : h_(h), path_(path) {
    exec(h_, path_, "BEGIN IMMEDIATE");
  }
  ~Transaction() {
    if (!done_) sqlite3_exec(h_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    exec(h_, path_, "COMMIT");
    done_ = true;
  }

 private:
  sqlite3* h_;
  const std::string& path_;
  bool done_ = false;
};

RatingSample sample_row(const Stmt& s) {
  RatingSample r;
  r.id = s.i64(0);
  r.source = s.text(1);
  if (!s.null(2)) r.step = s.i64(2);
  r.prompt = s.text(3);
  r.text = s.text(4);
  r.options = json::parse(s.text(5), nullptr, false);
  if (r.options.is_discarded()) r.options = json::object();
  r.created = s.f64(6);
  return r;
}
constexpr const char* kSampleCols = "id, source, step, prompt, text, options, created";

RatingPair pair_row(const Stmt& s) {
  return {s.i64(0), s.text(1), s.i64(2), s.i64(3), s.f64(4)};
}
constexpr const char* kPairCols = "id, batch, sample_a, sample_b, created";

}  // namespace

struct RatingsStore::Db {
  sqlite3* h = nullptr;
  ~Db() {
    if (h) sqlite3_close_v2(h);
  }
};

// ---- RatingsStore ---------------------------------------------------------------------

RatingsStore::RatingsStore(const std::string& path, bool read_only, int busy_timeout_ms)
    : db_(std::make_unique<Db>()), path_(path) {
  const int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(path.c_str(), &db_->h, flags | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
    std::string msg = db_->h ? sqlite3_errmsg(db_->h) : "out of memory";
    throw core::DataError(fmt::format("{}: cannot open the ratings database: {}{}", path, msg,
                                      read_only ? " (written by the monitor's Rate tab)" : ""),
                          __FILE__, __LINE__);
  }
  sqlite3_busy_timeout(db_->h, busy_timeout_ms);
  exec(db_->h, path_, "PRAGMA foreign_keys = ON");
  if (!read_only) {
    // WAL: readers (eval ratings, a second monitor) never block the writer, and a
    // commit is one append to the log; FULL: that append is fsync'ed at commit.
    exec(db_->h, path_, "PRAGMA journal_mode = WAL");
    exec(db_->h, path_, "PRAGMA synchronous = FULL");
    exec(db_->h, path_, kSchema);
  }
  Stmt s(db_->h, path_, "SELECT value FROM meta WHERE key = 'format'");
  std::string format;
  try {
    if (s.step()) format = s.text(0);
  } catch (const core::DataError&) {
  }
  SHARDLM_CHECK(format == "shardlm-ratings-1", core::DataError,
                "{}: not a shardlm ratings database (meta.format is '{}', expected "
                "'shardlm-ratings-1')",
                path, format);
}

RatingsStore::~RatingsStore() = default;

int64_t RatingsStore::add_sample(RatingSample s) {
  Transaction t(db_->h, path_);
  Stmt st(db_->h, path_,
          "INSERT INTO samples(source, step, prompt, text, options, created) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  st.bind(1, s.source);
  if (s.step)
    st.bind(2, *s.step);
  else
    st.bind_null(2);
  st.bind(3, s.prompt).bind(4, s.text);
  st.bind(5, s.options.dump(-1, ' ', false, json::error_handler_t::replace));
  st.bind(6, s.created > 0 ? s.created : now_s());
  st.step();
  const int64_t id = sqlite3_last_insert_rowid(db_->h);
  t.commit();
  return id;
}

int64_t RatingsStore::add_pair(const std::string& batch, int64_t a, int64_t b) {
  SHARDLM_CHECK(a != b, core::DataError, "{}: a pair needs two different samples, got {} twice",
                path_, a);
  SHARDLM_CHECK(sample(a) && sample(b), core::DataError, "{}: sample {} or {} does not exist",
                path_, a, b);
  Transaction t(db_->h, path_);
  Stmt st(db_->h, path_,
          "INSERT INTO pairs(batch, sample_a, sample_b, created) VALUES (?1, ?2, ?3, ?4)");
  st.bind(1, batch).bind(2, a).bind(3, b).bind(4, now_s());
  st.step();
  const int64_t id = sqlite3_last_insert_rowid(db_->h);
  t.commit();
  return id;
}

VoteResult RatingsStore::vote(RatingVote v) {
  SHARDLM_CHECK(!v.rater.empty() && v.rater.size() <= 64, core::DataError,
                "a rater name of 1 to 64 bytes is needed, got {} bytes", v.rater.size());
  bool known = false;
  for (const auto& c : rating_choices()) known = known || c == v.choice;
  SHARDLM_CHECK(known, core::DataError, "choice '{}' is not one of A, B, tie, both_bad, skip",
                v.choice);
  const auto p = pair(v.pair);
  SHARDLM_CHECK(p.has_value(), core::DataError, "{}: there is no pair {}", path_, v.pair);
  const bool same = (v.shown_a == p->sample_a && v.shown_b == p->sample_b) ||
                    (v.shown_a == p->sample_b && v.shown_b == p->sample_a);
  SHARDLM_CHECK(same, core::DataError,
                "pair {} holds samples {} and {}, but the vote names {} and {}", v.pair,
                p->sample_a, p->sample_b, v.shown_a, v.shown_b);
  Transaction t(db_->h, path_);
  Stmt st(db_->h, path_,
          "INSERT INTO votes(rater, pair, shown_a, shown_b, choice, time, client) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(rater, pair) DO NOTHING");
  st.bind(1, v.rater).bind(2, v.pair).bind(3, v.shown_a).bind(4, v.shown_b).bind(5, v.choice);
  st.bind(6, v.time > 0 ? v.time : now_s()).bind(7, v.client);
  st.step();
  VoteResult r;
  if (sqlite3_changes(db_->h) == 1) {
    r.id = sqlite3_last_insert_rowid(db_->h);
  } else {
    Stmt q(db_->h, path_, "SELECT id FROM votes WHERE rater = ?1 AND pair = ?2");
    q.bind(1, v.rater).bind(2, v.pair);
    if (q.step()) r.id = q.i64(0);
    r.duplicate = true;
  }
  t.commit();  // synchronous = FULL: on disk from here
  return r;
}

std::optional<RatingPair> RatingsStore::next_pair(const std::string& rater,
                                                  const std::string& batch) {
  Stmt st(db_->h, path_,
          "SELECT p.id, p.batch, p.sample_a, p.sample_b, p.created FROM pairs p "
          "WHERE (?2 = '' OR p.batch = ?2) AND NOT EXISTS "
          "(SELECT 1 FROM votes v WHERE v.pair = p.id AND v.rater = ?1) "
          "ORDER BY (SELECT COUNT(*) FROM votes v WHERE v.pair = p.id AND v.choice != 'skip'), "
          "p.id LIMIT 1");
  st.bind(1, rater).bind(2, batch);
  if (!st.step()) return std::nullopt;
  return pair_row(st);
}

bool RatingsStore::swapped_for(const std::string& rater, int64_t pair) {
  // Stable for a build: a rater who comes back sees each pair the same way round.
  return (std::hash<std::string>{}(fmt::format("{}\x1f{}", rater, pair)) >> 7) & 1;
}

std::optional<RatingPair> RatingsStore::pair(int64_t id) {
  Stmt st(db_->h, path_, fmt::format("SELECT {} FROM pairs WHERE id = ?1", kPairCols).c_str());
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  return pair_row(st);
}

std::optional<RatingSample> RatingsStore::sample(int64_t id) {
  Stmt st(db_->h, path_, fmt::format("SELECT {} FROM samples WHERE id = ?1", kSampleCols).c_str());
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  return sample_row(st);
}

std::vector<RatingSample> RatingsStore::samples() {
  Stmt st(db_->h, path_, fmt::format("SELECT {} FROM samples ORDER BY id", kSampleCols).c_str());
  std::vector<RatingSample> out;
  while (st.step()) out.push_back(sample_row(st));
  return out;
}

std::vector<RatingPair> RatingsStore::pairs(const std::string& batch) {
  Stmt st(db_->h, path_,
          fmt::format("SELECT {} FROM pairs WHERE ?1 = '' OR batch = ?1 ORDER BY id", kPairCols)
              .c_str());
  st.bind(1, batch);
  std::vector<RatingPair> out;
  while (st.step()) out.push_back(pair_row(st));
  return out;
}

std::vector<RatingVote> RatingsStore::votes() {
  Stmt st(db_->h, path_,
          "SELECT id, rater, pair, shown_a, shown_b, choice, time, client FROM votes ORDER BY id");
  std::vector<RatingVote> out;
  while (st.step()) {
    RatingVote v;
    v.id = st.i64(0);
    v.rater = st.text(1);
    v.pair = st.i64(2);
    v.shown_a = st.i64(3);
    v.shown_b = st.i64(4);
    v.choice = st.text(5);
    v.time = st.f64(6);
    v.client = st.text(7);
    out.push_back(std::move(v));
  }
  return out;
}

int64_t RatingsStore::votes_by(const std::string& rater, const std::string& batch) {
  Stmt st(db_->h, path_,
          "SELECT COUNT(*) FROM votes v JOIN pairs p ON p.id = v.pair "
          "WHERE v.rater = ?1 AND (?2 = '' OR p.batch = ?2)");
  st.bind(1, rater).bind(2, batch);
  return st.step() ? st.i64(0) : 0;
}

std::vector<json> RatingsStore::export_votes() {
  std::vector<json> out;
  for (const auto& v : votes()) {
    const auto p = pair(v.pair);
    const auto a = sample(v.shown_a), b = sample(v.shown_b);
    if (!p || !a || !b) continue;  // foreign keys make this impossible; be safe
    auto step = [](const RatingSample& s) { return s.step ? json(*s.step) : json(); };
    std::string winner = v.choice == "A" ? a->source : v.choice == "B" ? b->source : v.choice;
    out.push_back({{"kind", "pair"},
                   {"id", fmt::format("pair-{}", v.pair)},
                   {"vote", v.id},
                   {"pair", v.pair},
                   {"batch", p->batch},
                   {"rater", v.rater},
                   {"time", iso_time(v.time)},
                   {"time_s", v.time},
                   {"choice", v.choice},
                   {"shown", {a->source, b->source}},
                   {"samples", {a->id, b->id}},
                   {"steps", {step(*a), step(*b)}},
                   {"winner", winner},
                   {"prompt", a->prompt},
                   {"texts", {a->text, b->text}}});
  }
  return out;
}

}  // namespace shardlm::monitor
