// The history database (SQLite, WAL): schema with versioned migrations, the writes of the
// history worker and the reads of export, the CLI and serve. SQL failures throw DbError
// (message names the file); open() returns nullptr and a message that says what to do.
//
// Tables (times in Unix seconds, counters in thousandths of their unit):
//   meters(id, name)
//   minutes(meter, t, n, first_ms, last_ms, p_avg, p_min, p_max, p_l1, p_l2, p_l3, v_min,
//           v_max, i_max, imp_t1 .. heat)   first/last_ms: ms after t; v in 0.1 V, i in 0.01 A
//   days(meter, day, t0, t1, estimated, imp_t1 .. heat, peak_w, peak_t)
//   relay_events(relay, t_ms, old_state, new_state, mode, reason, ok, error)
//   bus_positions(publisher, topic, instance, seq)   what the committed rows include
//   taken(meter, time_ns, receive_ns)   the newest reading the committed rows include (v2)
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "history/days.h"
#include "history/minutes.h"

namespace mp::history {

class DbError : public std::runtime_error {
 public:
  DbError(const std::string& what, int code) : std::runtime_error(what), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

struct RelayRecord {
  std::string relay;
  int64_t t_ms = 0;
  bool old_state = false, new_state = false, ok = true;
  std::string mode, reason, error;
};

struct Position {
  std::string publisher, topic;
  uint64_t instance = 0, seq = 0;
};

// A reading's place in a meter's order: its time (history/minutes.h reading_time_ns), then
// when acquire received it (telegrams of one second share a meter time).
struct Taken {
  int64_t time_ns = INT64_MIN, receive_ns = INT64_MIN;
  auto operator<=>(const Taken&) const = default;
};

class Store {
 public:
  static constexpr int kSchemaVersion = 2;
  // Opens (read_only: never creates or migrates) and checks the schema. nullptr with
  // `error` when the file is not a usable history database: the message names the file and
  // says what to do.
  static std::unique_ptr<Store> open(const std::string& path, bool read_only, std::string& error);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return path_; }
  void begin();
  void commit();
  void rollback();

  // Writes (in a transaction the caller began).
  int64_t meter_id(const std::string& name);  // created when new
  void put_minute(int64_t meter, const MinuteRow& row);
  void put_day(int64_t meter, const DayRow& day);
  void put_relay_event(const RelayRecord& e);  // a second copy of one event is ignored
  void put_position(const Position& p);
  void put_taken(int64_t meter, const Taken& t);
  // Deletes minutes and relay events before `t` (Unix seconds); returns the minutes deleted.
  int64_t delete_before(int64_t t);

  // Reads.
  std::optional<int64_t> find_meter(const std::string& name);
  std::vector<std::string> meter_names();
  std::vector<Position> positions();
  std::optional<Taken> taken(int64_t meter);
  std::optional<int64_t> last_minute_t(int64_t meter);
  std::optional<MinuteRow> minute(int64_t meter, int64_t t);
  std::vector<MinuteRow> minutes(int64_t meter, int64_t from, int64_t to);  // t in [from, to)
  // The same rows one by one, in time order, without keeping them.
  void for_each_minute(int64_t meter, int64_t from, int64_t to,
                       const std::function<void(const MinuteRow&)>& fn);
  // Up to `limit` rows before `t`, newest first.
  std::vector<Point> points_before(int64_t meter, int64_t t, int limit);
  // Up to `limit` points from t on, oldest first.
  std::vector<Point> points_from(int64_t meter, int64_t t, int limit);
  std::vector<std::pair<int64_t, int64_t>> import_ends(int64_t meter, int64_t from, int64_t to);
  std::vector<DayRow> days(int64_t meter, const std::string& from, const std::string& to);
  std::vector<RelayRecord> relay_events(int64_t from_ms, int64_t to_ms);
  std::string integrity_check();

 private:
  class Stmt;
  Store(sqlite3* db, std::string path);
  void exec(const char* sql);
  void fail(const char* what) const;
  bool check_schema(bool read_only, std::string& error);
  void migrate(int from);
  Stmt& stmt(int id, const char* sql);
  std::vector<Point> points(int id, const std::string& sql, int64_t meter, int64_t t, int limit);

  sqlite3* db_;
  std::string path_;
  std::vector<std::unique_ptr<Stmt>> stmts_;
};

}  // namespace mp::history
