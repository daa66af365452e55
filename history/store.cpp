#include "history/store.h"

#include <cmath>
#include <cstring>

namespace mp::history {

// One prepared statement, reset before each use; binds by position (1-based).
class Store::Stmt {
 public:
  Stmt(Store& s, const char* sql) : s_(s) {
    if (sqlite3_prepare_v2(s.db_, sql, -1, &st_, nullptr) != SQLITE_OK) s.fail("prepare");
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt& reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(st_, i, v.data(), int(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, const std::optional<int64_t>& v) {
    if (v)
      sqlite3_bind_int64(st_, i, *v);
    else
      sqlite3_bind_null(st_, i);
    return *this;
  }
  // True while there is a row.
  bool step() {
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) s_.fail("step");
    return false;
  }
  void run() {
    while (step()) {
    }
  }
  // The first row, through `read`, and the statement reset at once: a statement left on a
  // row keeps its connection's read transaction open, and SQLite cannot restart the WAL
  // while one is (the -wal file of a worker that runs for months would grow without bound).
  template <class F>
  auto first(F&& read) -> std::optional<decltype(read(*this))> {
    std::optional<decltype(read(*this))> out;
    if (step()) out = read(*this);
    sqlite3_reset(st_);
    return out;
  }
  bool null(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }
  int64_t i64(int col) const { return sqlite3_column_int64(st_, col); }
  std::optional<int64_t> opt(int col) const {
    if (null(col)) return std::nullopt;
    return i64(col);
  }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(st_, col);
    return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
  }

 private:
  Store& s_;
  sqlite3_stmt* st_ = nullptr;
};

namespace {

std::string counter_columns(const char* prefix = "") {
  std::string s;
  for (int c = 0; c < kCounters; ++c)
    s += std::string(", ") + prefix + std::string(counter_column(c));
  return s;
}

std::string placeholders(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += ", ?";
  return s;
}

std::optional<int64_t> scaled(const std::optional<double>& v, double f) {
  if (!v || !std::isfinite(*v) || std::fabs(*v * f) > 9e15) return std::nullopt;
  return int64_t(std::llround(*v * f));
}

std::optional<double> unscaled(const std::optional<int64_t>& v, double f) {
  if (!v) return std::nullopt;
  return double(*v) / f;
}

// Schema version 1. Later versions append a step to kMigrations (never edit a shipped one).
const std::string kSchemaV1 =
    "CREATE TABLE meters(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
    "CREATE TABLE minutes(meter INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL,"
    " first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, p_avg INTEGER, p_min INTEGER,"
    " p_max INTEGER, p_l1 INTEGER, p_l2 INTEGER, p_l3 INTEGER, v_min INTEGER, v_max INTEGER,"
    " i_max INTEGER" +
    counter_columns() +
    ", PRIMARY KEY(meter, t)) WITHOUT ROWID;"
    "CREATE TABLE days(meter INTEGER NOT NULL, day TEXT NOT NULL, t0 INTEGER NOT NULL,"
    " t1 INTEGER NOT NULL, estimated INTEGER NOT NULL" +
    counter_columns() +
    ", peak_w INTEGER, peak_t INTEGER, PRIMARY KEY(meter, day)) WITHOUT ROWID;"
    "CREATE TABLE relay_events(relay TEXT NOT NULL, t_ms INTEGER NOT NULL,"
    " old_state INTEGER NOT NULL, new_state INTEGER NOT NULL, mode TEXT, reason TEXT,"
    " ok INTEGER NOT NULL, error TEXT, PRIMARY KEY(relay, t_ms)) WITHOUT ROWID;"
    "CREATE INDEX relay_events_t ON relay_events(t_ms);"
    "CREATE TABLE bus_positions(publisher TEXT NOT NULL, topic TEXT NOT NULL,"
    " instance INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(publisher, topic));";

// Version 2: the newest reading taken per meter, so that a reading met again (acquire's
// journal after a crash, the bus) is known as taken.
const std::string kSchemaV2 =
    "CREATE TABLE taken(meter INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL,"
    " receive_ns INTEGER NOT NULL);";

const std::vector<std::string>& migrations() {
  static const std::vector<std::string> m = {kSchemaV1, kSchemaV2};  // [i]: version i -> i + 1
  return m;
}

enum StmtId {
  kMeterFind,
  kMeterAdd,
  kMinutePut,
  kDayPut,
  kRelayPut,
  kPositionPut,
  kDeleteMinutes,
  kDeleteRelays,
  kMeterNames,
  kPositions,
  kLastMinute,
  kMinuteAt,
  kMinutesRange,
  kPointsBefore,
  kPointsFrom,
  kImportEnds,
  kDaysRange,
  kRelayRange,
  kTakenPut,
  kTakenGet,
  kStmtCount
};

const std::string kMinuteCols =
    "t, n, first_ms, last_ms, p_avg, p_min, p_max, p_l1, p_l2, p_l3,"
    " v_min, v_max, i_max" +
    counter_columns();
const std::string kDayCols = "day, t0, t1, estimated" + counter_columns() + ", peak_w, peak_t";

template <class Q>
MinuteRow read_minute(Q& st) {
  MinuteRow r;
  int c = 0;
  r.t = st.i64(c++);
  r.n = st.i64(c++);
  r.first_ms = r.t * 1000 + st.i64(c++);
  r.last_ms = r.t * 1000 + st.i64(c++);
  if (auto p = st.opt(c++)) {
    r.p_n = r.n;
    r.p_sum = double(*p) * double(r.n);
  }
  r.p_min = double(st.opt(c++).value_or(0));
  r.p_max = double(st.opt(c++).value_or(0));
  for (int i = 0; i < 3; ++i, ++c)
    if (auto p = st.opt(c)) {
      r.phase_n[i] = r.n;
      r.phase_sum[i] = double(*p) * double(r.n);
    }
  r.v_min = unscaled(st.opt(c++), 10);
  r.v_max = unscaled(st.opt(c++), 10);
  r.i_max = unscaled(st.opt(c++), 100);
  for (int k = 0; k < kCounters; ++k) r.counters[k] = st.opt(c++);
  return r;
}

}  // namespace

Store::Store(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {
  stmts_.resize(kStmtCount);
}

Store::~Store() {
  stmts_.clear();
  sqlite3_close_v2(db_);
}

void Store::fail(const char* what) const {
  const int code = sqlite3_extended_errcode(db_);
  throw DbError(path_ + ": " + what + ": " + sqlite3_errmsg(db_), code);
}

void Store::exec(const char* sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string m = msg ? msg : "error";
    sqlite3_free(msg);
    throw DbError(path_ + ": " + m, sqlite3_extended_errcode(db_));
  }
}

Store::Stmt& Store::stmt(int id, const char* sql) {
  auto& p = stmts_[size_t(id)];
  if (!p) p = std::make_unique<Stmt>(*this, sql);
  return p->reset();
}

std::unique_ptr<Store> Store::open(const std::string& path, bool read_only, std::string& error) {
  sqlite3* db = nullptr;
  const int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  if (sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    error = path + ": cannot open: " + (db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close_v2(db);
    return nullptr;
  }
  std::unique_ptr<Store> s(new Store(db, path));
  sqlite3_busy_timeout(db, 2000);
  try {
    if (!s->check_schema(read_only, error)) return nullptr;
  } catch (const DbError& e) {
    error = std::string(e.what()) +
            ": not a usable history database (damaged, or not SQLite); move it away (mv " + path +
            " " + path + ".broken) and meterpipe starts a new one";
    return nullptr;
  }
  return s;
}

bool Store::check_schema(bool read_only, std::string& error) {
  // reading the schema reads page 1: a file that is not SQLite fails here
  int version = 0;
  int64_t objects = 0;
  {  // (statements finished before the journal mode changes)
    Stmt v(*this, "PRAGMA user_version");
    version = v.step() ? int(v.i64(0)) : 0;
    Stmt tables(*this, "SELECT count(*) FROM sqlite_master");
    objects = tables.step() ? tables.i64(0) : 0;
  }
  if (version > kSchemaVersion) {
    error = path_ + ": written by a newer meterpipe (history schema " + std::to_string(version) +
            ", this one knows up to " + std::to_string(kSchemaVersion) +
            "): upgrade meterpipe, or move the file away to start a new one";
    return false;
  }
  if (version == 0 && objects > 0) {
    error = path_ + ": an SQLite database, but not a meterpipe history (no schema version): " +
            "give history.db_file another name or move the file away";
    return false;
  }
  if (read_only) {
    if (version < kSchemaVersion) {
      error = path_ + ": history schema " + std::to_string(version) +
              " is older than this meterpipe's; start the history worker once to migrate it";
      return false;
    }
    return true;
  }
  // small pages for a new file: each minute's commit rewrites a few pages (the minute, the
  // day, the bus positions), so their size is what the SD card gets written per minute
  if (version == 0) exec("PRAGMA page_size=1024");
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=NORMAL");  // WAL: a power cut loses at most the last commits
  if (version < kSchemaVersion) migrate(version);
  return true;
}

void Store::migrate(int from) {
  exec("BEGIN IMMEDIATE");
  try {
    for (int v = from; v < kSchemaVersion; ++v) exec(migrations()[size_t(v)].c_str());
    exec(("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str());
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void Store::begin() { exec("BEGIN IMMEDIATE"); }
void Store::commit() { exec("COMMIT"); }
void Store::rollback() { sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr); }

std::optional<int64_t> Store::find_meter(const std::string& name) {
  auto& q = stmt(kMeterFind, "SELECT id FROM meters WHERE name = ?");
  q.bind(1, name);
  return q.first([](Stmt& r) { return r.i64(0); });
}

int64_t Store::meter_id(const std::string& name) {
  if (auto id = find_meter(name)) return *id;
  stmt(kMeterAdd, "INSERT INTO meters(name) VALUES (?)").bind(1, name).run();
  return sqlite3_last_insert_rowid(db_);
}

void Store::put_minute(int64_t meter, const MinuteRow& r) {
  static const std::string sql = "INSERT OR REPLACE INTO minutes(meter, " + kMinuteCols +
                                 ") VALUES (?" + placeholders(13 + kCounters) + ")";
  auto& q = stmt(kMinutePut, sql.c_str());
  int i = 1;
  auto put = [&](auto v) { q.bind(i++, v); };
  put(meter);
  put(r.t);
  put(r.n);
  put(r.first_ms - r.t * 1000);
  put(r.last_ms - r.t * 1000);
  put(scaled(r.p_avg(), 1));
  put(r.p_n ? scaled(r.p_min, 1) : std::nullopt);
  put(r.p_n ? scaled(r.p_max, 1) : std::nullopt);
  for (int k = 0; k < 3; ++k) put(scaled(r.phase_avg(k), 1));
  put(scaled(r.v_min, 10));
  put(scaled(r.v_max, 10));
  put(scaled(r.i_max, 100));
  for (int k = 0; k < kCounters; ++k) put(r.counters[k]);
  q.run();
}

void Store::put_day(int64_t meter, const DayRow& d) {
  static const std::string sql = "INSERT OR REPLACE INTO days(meter, " + kDayCols + ") VALUES (?" +
                                 placeholders(6 + kCounters) + ")";
  auto& q = stmt(kDayPut, sql.c_str());
  int i = 1;
  auto put = [&](auto v) { q.bind(i++, v); };
  put(meter);
  put(d.day.date);
  put(d.day.t0);
  put(d.day.t1);
  put(int64_t(d.estimated));
  for (int k = 0; k < kCounters; ++k) put(d.delta[k]);
  put(d.peak ? std::optional<int64_t>(d.peak->w) : std::nullopt);
  put(d.peak ? std::optional<int64_t>(d.peak->t) : std::nullopt);
  q.run();
}

void Store::put_relay_event(const RelayRecord& e) {
  auto& q = stmt(kRelayPut,
                 "INSERT OR IGNORE INTO relay_events(relay, t_ms, old_state, new_state, mode,"
                 " reason, ok, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  q.bind(1, e.relay).bind(2, e.t_ms).bind(3, int64_t(e.old_state)).bind(4, int64_t(e.new_state));
  q.bind(5, e.mode).bind(6, e.reason).bind(7, int64_t(e.ok)).bind(8, e.error).run();
}

void Store::put_position(const Position& p) {
  auto& q = stmt(kPositionPut,
                 "INSERT OR REPLACE INTO bus_positions(publisher, topic, instance, seq)"
                 " VALUES (?, ?, ?, ?)");
  q.bind(1, p.publisher).bind(2, p.topic).bind(3, int64_t(p.instance)).bind(4, int64_t(p.seq));
  q.run();
}

void Store::put_taken(int64_t meter, const Taken& t) {
  auto& q =
      stmt(kTakenPut, "INSERT OR REPLACE INTO taken(meter, time_ns, receive_ns) VALUES (?, ?, ?)");
  q.bind(1, meter).bind(2, t.time_ns).bind(3, t.receive_ns).run();
}

std::optional<Taken> Store::taken(int64_t meter) {
  auto& q = stmt(kTakenGet, "SELECT time_ns, receive_ns FROM taken WHERE meter = ?");
  q.bind(1, meter);
  return q.first([](Stmt& r) { return Taken{r.i64(0), r.i64(1)}; });
}

int64_t Store::delete_before(int64_t t) {
  stmt(kDeleteMinutes, "DELETE FROM minutes WHERE t < ?").bind(1, t).run();
  const int64_t n = sqlite3_changes(db_);
  stmt(kDeleteRelays, "DELETE FROM relay_events WHERE t_ms < ?").bind(1, t * 1000).run();
  return n;
}

std::vector<std::string> Store::meter_names() {
  std::vector<std::string> out;
  auto& q = stmt(kMeterNames, "SELECT name FROM meters ORDER BY name");
  while (q.step()) out.push_back(q.text(0));
  return out;
}

std::vector<Position> Store::positions() {
  std::vector<Position> out;
  auto& q = stmt(kPositions, "SELECT publisher, topic, instance, seq FROM bus_positions");
  while (q.step())
    out.push_back(Position{q.text(0), q.text(1), uint64_t(q.i64(2)), uint64_t(q.i64(3))});
  return out;
}

std::optional<int64_t> Store::last_minute_t(int64_t meter) {
  auto& q = stmt(kLastMinute, "SELECT max(t) FROM minutes WHERE meter = ?");
  q.bind(1, meter);
  return q.first([](Stmt& r) { return r.opt(0); }).value_or(std::nullopt);
}

std::optional<MinuteRow> Store::minute(int64_t meter, int64_t t) {
  static const std::string sql =
      "SELECT " + kMinuteCols + " FROM minutes WHERE meter = ? AND t = ?";
  auto& q = stmt(kMinuteAt, sql.c_str());
  q.bind(1, meter).bind(2, t);
  return q.first([](Stmt& r) { return read_minute(r); });
}

std::vector<MinuteRow> Store::minutes(int64_t meter, int64_t from, int64_t to) {
  std::vector<MinuteRow> out;
  for_each_minute(meter, from, to, [&](const MinuteRow& r) { out.push_back(r); });
  return out;
}

void Store::for_each_minute(int64_t meter, int64_t from, int64_t to,
                            const std::function<void(const MinuteRow&)>& fn) {
  static const std::string sql =
      "SELECT " + kMinuteCols + " FROM minutes WHERE meter = ? AND t >= ? AND t < ? ORDER BY t";
  auto& q = stmt(kMinutesRange, sql.c_str());
  q.bind(1, meter).bind(2, from).bind(3, to);
  while (q.step()) fn(read_minute(q));
}

namespace {
template <class Q>
Point read_point(Q& q) {
  Point p;
  const int64_t t = q.i64(0);
  p.first_ms = t * 1000 + q.i64(1);
  p.last_ms = t * 1000 + q.i64(2);
  for (int k = 0; k < kCounters; ++k) p.c[k] = q.opt(3 + k);
  return p;
}
const std::string kPointCols = "t, first_ms, last_ms" + counter_columns();
}  // namespace

// Up to `limit` points of one meter on one side of t (the statement says which).
std::vector<Point> Store::points(int id, const std::string& sql, int64_t meter, int64_t t,
                                 int limit) {
  auto& q = stmt(id, sql.c_str());
  q.bind(1, meter).bind(2, t).bind(3, int64_t(limit));
  std::vector<Point> out;
  while (q.step()) out.push_back(read_point(q));
  return out;
}

std::vector<Point> Store::points_before(int64_t meter, int64_t t, int limit) {
  static const std::string sql =
      "SELECT " + kPointCols + " FROM minutes WHERE meter = ? AND t < ? ORDER BY t DESC LIMIT ?";
  return points(kPointsBefore, sql, meter, t, limit);
}

std::vector<Point> Store::points_from(int64_t meter, int64_t t, int limit) {
  static const std::string sql =
      "SELECT " + kPointCols + " FROM minutes WHERE meter = ? AND t >= ? ORDER BY t LIMIT ?";
  return points(kPointsFrom, sql, meter, t, limit);
}

std::vector<std::pair<int64_t, int64_t>> Store::import_ends(int64_t meter, int64_t from,
                                                            int64_t to) {
  auto& q = stmt(kImportEnds,
                 "SELECT t, coalesce(imp, imp_t1 + imp_t2) FROM minutes"
                 " WHERE meter = ? AND t >= ? AND t < ? ORDER BY t");
  q.bind(1, meter).bind(2, from).bind(3, to);
  std::vector<std::pair<int64_t, int64_t>> out;
  while (q.step())
    if (!q.null(1)) out.emplace_back(q.i64(0), q.i64(1));
  return out;
}

std::vector<DayRow> Store::days(int64_t meter, const std::string& from, const std::string& to) {
  static const std::string sql =
      "SELECT " + kDayCols + " FROM days WHERE meter = ? AND day >= ? AND day < ? ORDER BY day";
  auto& q = stmt(kDaysRange, sql.c_str());
  q.bind(1, meter).bind(2, from).bind(3, to);
  std::vector<DayRow> out;
  while (q.step()) {
    DayRow d;
    int c = 0;
    d.day.date = q.text(c++);
    d.day.t0 = q.i64(c++);
    d.day.t1 = q.i64(c++);
    d.estimated = q.i64(c++) != 0;
    for (int k = 0; k < kCounters; ++k) d.delta[k] = q.opt(c++);
    if (auto w = q.opt(c)) d.peak = Peak{q.i64(c + 1), *w};
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<RelayRecord> Store::relay_events(int64_t from_ms, int64_t to_ms) {
  auto& q = stmt(kRelayRange,
                 "SELECT relay, t_ms, old_state, new_state, mode, reason, ok, error"
                 " FROM relay_events WHERE t_ms >= ? AND t_ms < ? ORDER BY t_ms, relay");
  q.bind(1, from_ms).bind(2, to_ms);
  std::vector<RelayRecord> out;
  while (q.step())
    out.push_back(RelayRecord{q.text(0), q.i64(1), q.i64(2) != 0, q.i64(3) != 0, q.i64(6) != 0,
                              q.text(4), q.text(5), q.text(7)});
  return out;
}

std::string Store::integrity_check() {
  Stmt q(*this, "PRAGMA integrity_check");
  std::string out;
  while (q.step()) out += (out.empty() ? "" : "\n") + q.text(0);
  return out;
}

}  // namespace mp::history
