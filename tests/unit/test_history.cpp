// history: minute aggregation, days from counters (outages, DST), quarter-hour peaks, costs,
// the SQLite store (schema, damaged files, idempotent rewrites) and the export table.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "config/config.h"
#include "history/days.h"
#include "history/export.h"
#include "history/import_lp.h"
#include "history/minutes.h"
#include "history/rollup.h"
#include "history/store.h"
#include "history/tariffs.h"
#include "tests/harness/temp_dir.h"

using namespace mp::history;

namespace {

struct AmsterdamTz {
  AmsterdamTz() {
    setenv("TZ", "Europe/Amsterdam", 1);
    tzset();
  }
};

mp::Value num(const std::string& name, double v) {
  mp::Value x;
  x.name = name;
  x.number = v;
  return x;
}

mp::Reading reading(int64_t t_s, double net_w, double t1_kwh, double t2_kwh, double gas) {
  mp::Reading r;
  r.meter = "home";
  r.meter_time_ns = t_s * 1'000'000'000LL;
  r.values = {num("power_net_w", net_w),
              num("energy_import_t1_kwh", t1_kwh),
              num("energy_import_t2_kwh", t2_kwh),
              num("gas_m3", gas),
              num("voltage_l1_v", 230.0 + net_w / 1000),
              num("current_l1_a", net_w / 230)};
  return r;
}

// A minute row at t with the given end counters (thousandths), its reading at t + 30 s.
MinuteRow row_at(int64_t t, int64_t t1_milli, int64_t t2_milli = 0, int64_t gas_milli = 0) {
  MinuteRow r;
  r.t = t;
  r.n = 1;
  r.first_ms = r.last_ms = (t + 30) * 1000;
  r.p_n = 1;
  r.p_sum = r.p_min = r.p_max = 500;
  r.counters[kImportT1] = t1_milli;
  r.counters[kImportT2] = t2_milli;
  r.counters[kGas] = gas_milli;
  return r;
}

mp::config::Tariff tariff(const std::string& from, double t1, double t2, double exp, double gas,
                          double fixed, double capacity) {
  mp::config::Tariff t;
  t.valid_from = from;
  t.import_t1_per_kwh = t1;
  t.import_t2_per_kwh = t2;
  t.export_t1_per_kwh = t.export_t2_per_kwh = exp;
  t.gas_per_m3 = gas;
  t.fixed_per_day = fixed;
  t.capacity_per_kw_month = capacity;
  return t;
}

}  // namespace

TEST_CASE("a minute: power avg/min/max, phases, voltage, current, counters at its end") {
  MinuteRow row;
  row.t = 1'700'000'040;
  add_reading(row, reading(row.t + 1, 1000, 10.001, 20.0, 5.0), (row.t + 1) * 1'000'000'000LL);
  add_reading(row, reading(row.t + 50, -500, 10.004, 20.0, 5.01), (row.t + 50) * 1'000'000'000LL);
  add_reading(row, reading(row.t + 20, 2000, 10.002, 20.0, 5.0), (row.t + 20) * 1'000'000'000LL);
  CHECK(row.n == 3);
  CHECK(*row.p_avg() == doctest::Approx(833.333).epsilon(1e-4));
  CHECK(row.p_min == -500);
  CHECK(row.p_max == 2000);
  CHECK(*row.v_min == doctest::Approx(229.5));
  CHECK(*row.v_max == doctest::Approx(232.0));
  CHECK(*row.i_max == doctest::Approx(2000.0 / 230));
  // the counters are those of the latest reading, even when one came out of order
  CHECK(*row.counters[kImportT1] == 10004);
  CHECK(*row.counters[kGas] == 5010);
  CHECK_FALSE(row.counters[kExport].has_value());
  CHECK(row.first_ms == (row.t + 1) * 1000);
  CHECK(row.last_ms == (row.t + 50) * 1000);
}

TEST_CASE("the time of a reading is the meter's when it has one") {
  mp::Reading r;
  r.receive_time_ns = 2'000'000'000'000'000'000LL;
  CHECK(reading_time_ns(r) == r.receive_time_ns);
  r.meter_time_ns = 1'000'000'000'000'000'000LL;
  CHECK(reading_time_ns(r) == r.meter_time_ns);
}

TEST_CASE("local days in Europe/Amsterdam: DST days have 23 and 25 hours") {
  AmsterdamTz tz;
  const auto spring = local_day("2026-03-29"), autumn = local_day("2026-10-25"),
             plain = local_day("2026-12-06");
  REQUIRE(spring);
  REQUIRE(autumn);
  REQUIRE(plain);
  CHECK(spring->t1 - spring->t0 == 23 * 3600);
  CHECK(autumn->t1 - autumn->t0 == 25 * 3600);
  CHECK(plain->t1 - plain->t0 == 24 * 3600);
  CHECK(plain->t0 == 1'796'511'600);  // 2026-12-05T23:00:00Z
  CHECK(local_day(plain->t0).date == "2026-12-06");
  CHECK(local_day(plain->t1 - 1).date == "2026-12-06");
  CHECK(local_day(plain->t1).date == "2026-12-07");
  CHECK_FALSE(local_day("2026-02-31"));
  CHECK_FALSE(local_day("yesterday"));
  CHECK(days_in_month("2028-02-10") == 29);
  CHECK(days_in_month("2026-02-10") == 28);
}

TEST_CASE("a midnight's counters: the last reading before it, or split across an outage") {
  Point before, after;
  before.first_ms = before.last_ms = 1000 * (86400 - 20);
  before.c[kImportT1] = 1000;
  after.first_ms = after.last_ms = 1000 * (86400 + 40);
  after.c[kImportT1] = 1060;
  const int64_t typical = 60'000;
  Boundary b = boundary_at(86400, before, after, typical);
  CHECK(b.known);
  CHECK_FALSE(b.estimated);
  CHECK(*b.c[kImportT1] == 1000);

  // 4 hours without readings around midnight: split by time (1 h before, 3 h after)
  before.last_ms = before.first_ms = 1000 * (86400 - 3600);
  after.first_ms = after.last_ms = 1000 * (86400 + 3 * 3600);
  after.c[kImportT1] = 1000 + 4000;
  b = boundary_at(86400, before, after, typical);
  CHECK(b.estimated);
  CHECK(*b.c[kImportT1] == 2000);

  // a meter read every hour (M-Bus) is not in an outage when an hour passes
  CHECK_FALSE(is_outage(3'600'000, 3'600'000));
  CHECK(is_outage(5 * 3'600'000, 3'600'000));
  CHECK(typical_gap_ms({0, 60'000, 120'000, 180'000, 4'000'000}) == 60'000);

  // the very first data: the day is partial, so estimated
  b = boundary_at(86400, std::nullopt, after, typical);
  CHECK(b.known);
  CHECK(b.estimated);
  CHECK_FALSE(boundary_at(86400, std::nullopt, std::nullopt, typical).known);
}

TEST_CASE("a day is the difference of its boundary counters; a counter going down gives none") {
  Boundary a, b;
  a.known = b.known = true;
  a.c[kImportT1] = 1'000'000;
  b.c[kImportT1] = 1'012'345;
  a.c[kGas] = 500;
  b.c[kGas] = 400;  // meter replaced
  const DayRow d = make_day(LocalDay{"2026-12-06", 0, 86400}, a, b);
  CHECK(*d.delta[kImportT1] == 12345);
  CHECK_FALSE(d.delta[kGas].has_value());
  CHECK_FALSE(d.delta[kImportT2].has_value());
  CHECK_FALSE(d.estimated);
}

TEST_CASE("quarter-hour peak from the import counters") {
  std::vector<std::pair<int64_t, int64_t>> ends;
  // 1 kWh every 15 minutes (4 kW), and 1.5 kWh in the quarter starting at 3600 (6 kW)
  int64_t imp = 0;
  for (int64_t t = -60; t < 7200; t += 60) {
    const bool peak = t >= 3600 && t < 4500;
    imp += peak ? 100 : 66;  // Wh per minute
    ends.emplace_back(t, imp);
  }
  const auto p = quarter_peak(ends, 0, 7200);
  REQUIRE(p);
  CHECK(p->t == 3600);
  CHECK(p->w == 1500 * 4);
  // a quarter whose boundary minute is missing does not count
  std::vector<std::pair<int64_t, int64_t>> holes;
  for (const auto& e : ends)
    if (e.first != 3540) holes.push_back(e);
  const auto q = quarter_peak(holes, 0, 7200);
  REQUIRE(q);
  CHECK(q->t != 3600);
  CHECK(import_total(Counters{1, 2, std::nullopt}) == 3);
  CHECK(import_total(Counters{1, 2, 7}) == 7);
}

TEST_CASE("costs: the tariff of each day's date, export lowers the cost, capacity per month") {
  const std::vector<mp::config::Tariff> ts = {
      tariff("2026-01-01", 0.30, 0.25, 0.10, 1.20, 0.50, 4.0),
      tariff("2026-07-01", 0.40, 0.35, 0.05, 1.50, 0.60, 5.0)};
  CHECK(tariff_for(ts, "2025-12-31") == nullptr);
  CHECK(tariff_for(ts, "2026-06-30") == &ts[0]);
  CHECK(tariff_for(ts, "2026-07-01") == &ts[1]);
  DayRow d;
  d.day.date = "2026-06-30";
  d.delta[kImportT1] = 10'000;  // 10 kWh
  d.delta[kImportT2] = 4'000;
  d.delta[kExportT1] = 2'000;
  d.delta[kGas] = 3'000;  // 3 m3
  CHECK(*day_cost(ts, d) == doctest::Approx(10 * 0.30 + 4 * 0.25 - 2 * 0.10 + 3 * 1.20 + 0.50));
  d.day.date = "2026-07-01";
  CHECK(*day_cost(ts, d) == doctest::Approx(10 * 0.40 + 4 * 0.35 - 2 * 0.05 + 3 * 1.50 + 0.60));
  d.day.date = "2025-12-01";
  CHECK_FALSE(day_cost(ts, d).has_value());
  // a meter without tariff registers: its total at the tariff 1 price
  DayRow total;
  total.day.date = "2026-02-01";
  total.delta[kImport] = 5'000;
  CHECK(*day_cost(ts, total) == doctest::Approx(5 * 0.30 + 0.50));
  // capacity: 3.2 kW on a 30-day month, every day of it at 4.0 per kW and month
  std::vector<std::string> june;
  for (int i = 1; i <= 30; ++i)
    june.push_back("2026-06-" + std::string(i < 10 ? "0" : "") + std::to_string(i));
  CHECK(capacity_cost(ts, june, 3200) == doctest::Approx(3.2 * 4.0));
  // below the minimum (Flanders: 2.5 kW, the default) the minimum is billed; 0 bills the peak
  CHECK(capacity_cost(ts, june, 1200) == doctest::Approx(2.5 * 4.0));
  auto no_min = ts;
  for (auto& t : no_min) t.capacity_min_kw = 0;
  CHECK(capacity_cost(no_min, june, 1200) == doctest::Approx(1.2 * 4.0));
}

TEST_CASE("store: minutes are rewritten not doubled; days from counters across an outage") {
  AmsterdamTz tz;
  mp::test::TempDir dir("mphist");
  std::string err;
  auto s = Store::open(dir.at("h.sqlite"), false, err);
  REQUIRE_MESSAGE(s, err);
  const auto d1 = *local_day("2026-03-28"), d2 = *local_day("2026-03-29"),
             d3 = *local_day("2026-03-30");
  s->begin();
  const int64_t m = s->meter_id("home");
  CHECK(s->meter_id("home") == m);
  // 2026-03-28: a reading every minute, 1 Wh per minute, until 22:00 local; then nothing
  // until 04:00 on the 29th (an outage across midnight); then every minute again
  int64_t imp = 1'000'000;
  for (int64_t t = d1.t0 - 600; t < d1.t1 - 7200; t += 60) s->put_minute(m, row_at(t, imp += 1));
  const int64_t before_outage = imp;
  const int64_t t_resume = d2.t0 + 4 * 3600;  // 6 h without readings: 2 h before midnight
  imp += 360;                                 // 1 Wh per minute on during the outage
  for (int64_t t = t_resume; t < d3.t1 + 600; t += 60) s->put_minute(m, row_at(t, imp += 1));
  s->put_minute(m, row_at(d1.t0, 999));  // the same minute again replaces it
  s->put_minute(m, row_at(d1.t0, *s->minute(m, d1.t0 - 60)->counters[kImportT1] + 1));
  CHECK(update_days(*s, m, d1.t0 - 600, d3.t1 + 540) == 5);
  s->commit();

  const auto days = s->days(m, "2026-03-28", "2026-03-31");
  REQUIRE(days.size() == 3);
  // 28th: exact start; its end split: 2 of the 6 outage hours (+ the resume minute's 1 Wh
  // spread over the split) belong to it
  CHECK(days[0].day.date == "2026-03-28");
  CHECK(days[0].estimated);
  // 29th (23 hours: DST): estimated too; the two days together hold every Wh exactly
  CHECK(days[1].day.date == "2026-03-29");
  CHECK(days[1].day.t1 - days[1].day.t0 == 23 * 3600);
  CHECK(days[1].estimated);
  // 30th: exact both ends: one Wh per minute of its 24 hours
  CHECK_FALSE(days[2].estimated);
  CHECK(*days[2].delta[kImportT1] == 24 * 60);
  const int64_t start28 = *s->points_before(m, d1.t0, 1).front().c[kImportT1];
  const int64_t end29 = *s->points_before(m, d2.t1, 1).front().c[kImportT1];
  CHECK(*days[0].delta[kImportT1] + *days[1].delta[kImportT1] == end29 - start28);
  // the split follows time: the 28th gets the rise before the outage plus 2/6 of it
  const Point last = s->points_before(m, d2.t0, 1).front();
  const Point first = s->points_from(m, d2.t0, 1).front();
  CHECK(*last.c[kImportT1] == before_outage);
  const double share = double(d2.t0 * 1000 - last.last_ms) / double(first.last_ms - last.last_ms);
  CHECK(*days[0].delta[kImportT1] ==
        (before_outage - start28) +
            int64_t(std::llround(double(*first.c[kImportT1] - before_outage) * share)));
  CHECK(s->integrity_check() == "ok");
}

TEST_CASE("days: data that starts right before a midnight learns the spacing after it") {
  AmsterdamTz tz;
  mp::test::TempDir dir("mphist");
  std::string err;
  auto s = Store::open(dir.at("h.sqlite"), false, err);
  REQUIRE_MESSAGE(s, err);
  const auto d2 = *local_day("2026-12-07");
  s->begin();
  const int64_t sparse = s->meter_id("sparse"), cut = s->meter_id("cut");
  // "sparse": a row every 2 h 24 min (a meter read rarely, or a simulated one at high speed),
  // the first one 2 h before midnight: its one gap across the midnight is its usual spacing
  // (days updated row by row, as commits of the worker do)
  int64_t imp = 5'000;
  for (int64_t t = d2.t0 - 7200; t < d2.t1 + 86400; t += 8640) {
    s->put_minute(sparse, row_at(t, imp += 100));
    update_days(*s, sparse, t, t);
  }
  // "cut": a row a minute from 2 minutes before midnight, then nothing until 03:00, then a
  // row a minute again: an outage across the midnight even with one row before it
  imp = 9'000;
  for (int64_t t = d2.t0 - 120; t < d2.t0; t += 60) s->put_minute(cut, row_at(t, imp += 1));
  for (int64_t t = d2.t0 + 3 * 3600; t < d2.t1 + 600; t += 60)
    s->put_minute(cut, row_at(t, imp += 1));
  update_days(*s, cut, d2.t0 - 120, d2.t1 + 600);
  s->commit();
  const auto ds = s->days(sparse, "2026-12-07", "2026-12-08");
  REQUIRE(ds.size() == 1);
  CHECK_FALSE(ds[0].estimated);
  const int64_t start = *s->points_before(sparse, d2.t0, 1).front().c[kImportT1];
  const int64_t end = *s->points_before(sparse, d2.t1, 1).front().c[kImportT1];
  CHECK(*ds[0].delta[kImportT1] == end - start);
  // the day before (its end judged again once the rows after midnight came) adds up with it
  const auto both = s->days(sparse, "2026-12-06", "2026-12-08");
  REQUIRE(both.size() == 2);
  const int64_t first = *s->points_from(sparse, 0, 1).front().c[kImportT1];
  CHECK(*both[0].delta[kImportT1] + *both[1].delta[kImportT1] == end - first);
  const auto dc = s->days(cut, "2026-12-07", "2026-12-08");
  REQUIRE(dc.size() == 1);
  CHECK(dc[0].estimated);
}

TEST_CASE("store: the one-row lookups hold no read transaction, so the WAL stays bounded") {
  // A statement left on its row keeps the connection's read transaction open: SQLite cannot
  // restart the WAL then, and a history worker running for months grew its -wal file
  // without bound (the lookups run once at start, the commits every 2 minutes after).
  mp::test::TempDir dir("mphist");
  std::string err;
  auto s = Store::open(dir.at("h.sqlite"), false, err);
  REQUIRE_MESSAGE(s, err);
  s->begin();
  const int64_t m = s->meter_id("home");
  s->put_minute(m, row_at(1'790'000'000, 1000));
  s->put_taken(m, Taken{1, 2});
  s->commit();
  // every lookup the worker does at start, then many small commits
  CHECK(s->find_meter("home") == m);
  CHECK(s->taken(m) == Taken{1, 2});
  CHECK(s->last_minute_t(m) == 1'790'000'000);
  CHECK(s->minute(m, 1'790'000'000).has_value());
  CHECK(!s->points_from(m, 0, 1).empty());
  for (int i = 1; i <= 3000; ++i) {
    s->begin();
    s->put_minute(m, row_at(1'790'000'000 + 60 * i, 1000 + i));
    s->put_taken(m, Taken{i, i});
    s->commit();
  }
  struct stat st {};
  REQUIRE(::stat(dir.at("h.sqlite-wal").c_str(), &st) == 0);
  // restarted after each automatic checkpoint (1000 pages of 4 KiB): 1.0 MB measured, 4 MB
  // at most; with a lookup left on its row it held every commit: 8.3 MB
  CHECK_MESSAGE(st.st_size <= 4 * 1024 * 1024, "WAL " << st.st_size << " bytes");
}

TEST_CASE("store: schema 1 migrates to 2 (the newest reading taken per meter), rows kept") {
  mp::test::TempDir dir("mphist");
  std::string err;
  {  // a schema 1 file: today's without the `taken` table
    auto s = Store::open(dir.at("v1.sqlite"), false, err);
    REQUIRE(s);
    s->begin();
    s->put_minute(s->meter_id("home"), row_at(1'800'000'000, 5'000, 7'000, 100));
    s->commit();
  }
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(dir.at("v1.sqlite").c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "DROP TABLE taken; PRAGMA user_version=1", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  sqlite3_close(db);
  CHECK_FALSE(Store::open(dir.at("v1.sqlite"), true, err));  // readers wait for the worker
  CHECK(err.find("schema 1 is older") != std::string::npos);
  auto s = Store::open(dir.at("v1.sqlite"), false, err);
  REQUIRE(s);
  const int64_t m = *s->find_meter("home");
  CHECK(s->minute(m, 1'800'000'000));
  CHECK_FALSE(s->taken(m));
  s->begin();
  s->put_taken(m, Taken{1'800'000'059'000'000'000, 1'800'000'059'100'000'000});
  s->commit();
  REQUIRE(s->taken(m));
  CHECK(s->taken(m)->receive_ns == 1'800'000'059'100'000'000);
  CHECK(Taken{1, 5} < Taken{2, 0});  // time first, then when it was received
  CHECK(Taken{2, 0} < Taken{2, 1});
  CHECK(Store::open(dir.at("v1.sqlite"), true, err));
}

TEST_CASE("store: a file that is not a usable history gives a clear error and stays as it is") {
  mp::test::TempDir dir("mphist");
  std::string err;
  {  // not SQLite
    std::ofstream(dir.at("text.sqlite"))
        << "these are not the bytes of a database, not at all.....";
    CHECK_FALSE(Store::open(dir.at("text.sqlite"), false, err));
    CHECK(err.find(dir.at("text.sqlite")) != std::string::npos);
    CHECK(err.find("move it away") != std::string::npos);
    std::ifstream in(dir.at("text.sqlite"));
    std::string content((std::istreambuf_iterator<char>(in)), {});
    CHECK(content.rfind("these are not", 0) == 0);
  }
  {  // from a newer meterpipe
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(dir.at("new.sqlite").c_str(), &db) == SQLITE_OK);
    sqlite3_exec(db, "CREATE TABLE x(a); PRAGMA user_version=99", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    CHECK_FALSE(Store::open(dir.at("new.sqlite"), false, err));
    CHECK(err.find("newer meterpipe") != std::string::npos);
    CHECK(err.find("schema 99") != std::string::npos);
  }
  {  // another program's SQLite database
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(dir.at("other.sqlite").c_str(), &db) == SQLITE_OK);
    sqlite3_exec(db, "CREATE TABLE x(a)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    CHECK_FALSE(Store::open(dir.at("other.sqlite"), false, err));
    CHECK(err.find("not a meterpipe history") != std::string::npos);
  }
  {  // truncated: the first half of a real history database
    {
      auto s = Store::open(dir.at("full.sqlite"), false, err);
      REQUIRE(s);
      s->begin();
      const int64_t m = s->meter_id("home");
      for (int64_t t = 0; t < 60 * 5000; t += 60) s->put_minute(m, row_at(t, t));
      s->commit();
    }
    sqlite3* db = nullptr;  // fold the WAL into the file first
    sqlite3_open(dir.at("full.sqlite").c_str(), &db);
    sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE", nullptr,
                 nullptr, nullptr);
    sqlite3_close(db);
    std::ifstream in(dir.at("full.sqlite"), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    REQUIRE(bytes.size() > 8192);
    std::ofstream(dir.at("cut.sqlite"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    auto s = Store::open(dir.at("cut.sqlite"), false, err);
    bool failed = !s;
    if (s) {  // page 1 intact: the damage shows when the data is read
      try {
        s->minutes(1, 0, 60 * 5000);
        failed = s->integrity_check() != "ok";
      } catch (const DbError& e) {
        failed = true;
        CHECK(std::string(e.what()).find("cut.sqlite") != std::string::npos);
      }
    }
    CHECK(failed);
  }
  {  // read-only never creates a file
    CHECK_FALSE(Store::open(dir.at("absent.sqlite"), true, err));
    struct stat st;
    CHECK(stat(dir.at("absent.sqlite").c_str(), &st) != 0);
  }
}

TEST_CASE("export: day and month tables with costs, CSV and JSON with the same columns") {
  AmsterdamTz tz;
  mp::test::TempDir dir("mphist");
  std::string err;
  auto s = Store::open(dir.at("h.sqlite"), false, err);
  REQUIRE(s);
  const auto a = *local_day("2026-06-29");
  s->begin();
  const int64_t m = s->meter_id("home");
  int64_t t1 = 5'000'000, gas = 100'000;
  for (int64_t t = a.t0 - 60; t < a.t0 + 4 * 86400; t += 60) {
    t1 += 2;
    gas += 1;
    s->put_minute(m, row_at(t, t1, 7'000'000, gas));
  }
  update_days(*s, m, a.t0 - 60, a.t0 + 4 * 86400 - 60);
  s->commit();
  const std::vector<mp::config::Tariff> ts = {
      tariff("2026-01-01", 0.30, 0.25, 0.10, 1.20, 0.50, 0),
      tariff("2026-07-01", 0.40, 0.35, 0.05, 1.50, 0.60, 0)};
  Table t;
  REQUIRE(query(*s, "home", "2026-06-29", "2026-07-02", Resolution::day, ts, t, err));
  REQUIRE(t.size() == 4);
  CHECK(t.time(0) == "2026-06-29");
  std::vector<std::string> names;
  for (const auto& c : t.columns) names.push_back(c.name);
  CHECK(names == std::vector<std::string>{"time", "energy_import_t1_kwh", "energy_import_t2_kwh",
                                          "gas_m3", "demand_max_w", "estimated", "cost"});
  // 1440 minutes x 2 Wh = 2.88 kWh (30 Wh a quarter: 120 W), 1.44 m3 a day; the price
  // changes on July 1st
  const size_t t1_col = 0, gas_col = 2, demand_col = 3, cost_col = 5;
  CHECK(*t.value(0, demand_col) == 120);
  CHECK(*t.value(0, t1_col) == doctest::Approx(2.88));
  CHECK(*t.value(0, gas_col) == doctest::Approx(1.44));
  CHECK(*t.value(1, cost_col) == doctest::Approx(2.88 * 0.30 + 1.44 * 1.20 + 0.50));
  CHECK(*t.value(2, cost_col) == doctest::Approx(2.88 * 0.40 + 1.44 * 1.50 + 0.60));
  const std::string csv = to_csv(t);
  CHECK(csv.rfind("time,energy_import_t1_kwh,energy_import_t2_kwh,gas_m3,demand_max_w,estimated,"
                  "cost\r\n",
                  0) == 0);
  CHECK(csv.find("\r\n2026-06-30,2.880,0.000,1.440,120,0,3.0920\r\n") != std::string::npos);
  const std::string json = to_json(t);
  CHECK(json.find("\"columns\":[\"time\",\"energy_import_t1_kwh\",\"energy_import_t2_kwh\","
                  "\"gas_m3\",\"demand_max_w\",\"estimated\",\"cost\"]") != std::string::npos);
  CHECK(json.find(",[\"2026-06-30\",2.880,0.000,1.440,120,0,3.0920],") != std::string::npos);

  Table months;
  REQUIRE(query(*s, "home", "2026-06-29", "2026-07-02", Resolution::month, ts, months, err));
  REQUIRE(months.size() == 2);
  CHECK(months.time(0) == "2026-06");
  CHECK(*months.value(0, t1_col) == doctest::Approx(2 * 2.88));  // (the 28th has one row: 0)
  Table minutes;
  REQUIRE(query(*s, "home", "2026-06-30", "2026-06-30", Resolution::minute, ts, minutes, err));
  CHECK(minutes.size() == 1440);
  CHECK(minutes.time(0) == "2026-06-30T00:00+02:00");
  Table hours;
  REQUIRE(query(*s, "home", "2026-06-30", "2026-06-30", Resolution::hour, ts, hours, err));
  REQUIRE(hours.size() == 24);
  CHECK(hours.time(1) == "2026-06-30T01:00+02:00");
  CHECK_FALSE(query(*s, "garage", "2026-06-30", "2026-06-30", Resolution::day, ts, t, err));
  CHECK(err.find("garage") != std::string::npos);
  CHECK_FALSE(query(*s, "home", "2026-06-31", "2026-06-30", Resolution::day, ts, t, err));
}

TEST_CASE("config: [history] and [[tariff]]") {
  const std::string base = "[[meter]]\nname = \"home\"\nsource = \"simulate\"\n";
  auto r = mp::config::load_string(base, "h.toml");
  REQUIRE(r.config);
  CHECK(r.config->history.enabled);
  CHECK(r.config->history.db_file == "/var/lib/meterpipe/history.sqlite");
  CHECK(r.config->history.keep_minutes_days == 400);
  r = mp::config::load_string(base +
                                  "[history]\nenabled = false\n"
                                  "[[tariff]]\nvalid_from = 2026-07-01\nimport_t1_per_kwh = 0.3\n"
                                  "capacity_per_kw_month = 4.2\n"
                                  "[[tariff]]\nvalid_from = \"2026-01-01\"\ncurrency = \"CHF\"\n",
                              "h.toml");
  REQUIRE(r.config);
  for (const auto& w : r.config->workers()) CHECK(w != "history");
  REQUIRE(r.config->tariffs.size() == 2);
  CHECK(r.config->tariffs[0].valid_from == "2026-01-01");  // sorted
  CHECK(r.config->tariffs[0].currency == "CHF");
  CHECK(r.config->tariffs[1].capacity_per_kw_month == 4.2);
  r = mp::config::load_string(base +
                                  "[history]\nkeep_minute_days = 3\n"
                                  "[[tariff]]\nvalid_from = \"July\"\n"
                                  "[[tariff]]\nimport_t1_per_kwh = \"cheap\"\n",
                              "h.toml");
  REQUIRE_FALSE(r.config);
  std::string all;
  for (const auto& e : r.errors) all += e.str() + "\n";
  CHECK(all.find("h.toml:5:1: history.keep_minute_days: unknown key") != std::string::npos);
  CHECK(all.find("h.toml:7:14: tariff[0].valid_from: not a date") != std::string::npos);
  CHECK(all.find("tariff[1].valid_from: required key is missing") != std::string::npos);
  CHECK(all.find("h.toml:9:21: tariff[1].import_t1_per_kwh: must be a number") !=
        std::string::npos);
}

TEST_CASE("history import: line protocol lines, .lp and .lp.gz files") {
  LpPoint p;
  REQUIRE(
      parse_lp_line("electricity,meter=home,site=a\\ b power_net_w=-830,tariff=2i,"
                    "equipment_id=\"E 1\",energy_import_t1_kwh=1234.567 1700000000",
                    p));
  CHECK(p.measurement == "electricity");
  CHECK(p.tags.at("meter") == "home");
  CHECK(p.tags.at("site") == "a b");
  CHECK(p.fields.at("power_net_w") == -830);
  CHECK(p.fields.at("tariff") == 2);
  CHECK(p.fields.at("energy_import_t1_kwh") == 1234.567);
  CHECK_FALSE(p.fields.count("equipment_id"));
  CHECK(p.time_ns == 1'700'000'000'000'000'000LL);
  REQUIRE(parse_lp_line("gas,meter=home gas_m3=5.5 1700000000123", p));
  CHECK(p.time_ns == 1'700'000'000'123'000'000LL);
  CHECK_FALSE(parse_lp_line("# DML", p));
  CHECK_FALSE(parse_lp_line("electricity,meter=home power_net_w=1", p));
  CHECK_FALSE(parse_lp_line("electricity,meter=home power_net_w=1 12x", p));
  // times before 2000 or from 2100 on are damaged lines (a wild one overflowed in ns)
  CHECK_FALSE(parse_lp_line("electricity,meter=home power_net_w=1 17956476002", p));
  CHECK_FALSE(parse_lp_line("electricity,meter=home power_net_w=1 -1700000000", p));
  CHECK_FALSE(parse_lp_line("electricity,meter=home power_net_w=1 900000000", p));
  CHECK_FALSE(parse_lp_line("electricity,meter=home power_net_w=1 9223372036854775807", p));
  REQUIRE(parse_lp_line("electricity,meter=home power_net_w=1 4102444799999999999", p));
  CHECK(p.time_ns == 4'102'444'799'999'999'999LL);

  AmsterdamTz tz;
  mp::test::TempDir dir("mphist");
  const auto day = *local_day("2026-11-20");
  std::string text;
  for (int64_t t = day.t0 - 30; t < day.t1 + 30; t += 10) {  // a reading every 10 s
    const double kwh = 100.0 + double(t - day.t0) / 3600.0;  // 1 kWh an hour
    text += "electricity,meter=home power_net_w=1000,energy_import_t1_kwh=" + std::to_string(kwh) +
            " " + std::to_string(t) + "\n";
  }
  gzFile gz = gzopen(dir.at("2026-11-20.lp.gz").c_str(), "wb");
  REQUIRE(gz);
  gzwrite(gz, text.data(), unsigned(text.size()));
  gzclose(gz);
  std::ofstream(dir.at("bad.lp")) << "not line protocol\n";
  std::string err;
  auto s = Store::open(dir.at("h.sqlite"), false, err);
  REQUIRE(s);
  ImportStats st;
  REQUIRE(import_lp_file(*s, dir.at("2026-11-20.lp.gz"), st, err));
  CHECK(st.readings == (day.t1 + 30 - (day.t0 - 30)) / 10);
  CHECK(st.bad_lines == 0);
  CHECK(st.minutes == 1442);
  ImportStats bad;
  REQUIRE(import_lp_file(*s, dir.at("bad.lp"), bad, err));
  CHECK(bad.bad_lines == 1);
  CHECK_FALSE(import_lp_file(*s, dir.at("absent.lp"), bad, err));
  CHECK(err.find("absent.lp") != std::string::npos);
  const auto days = s->days(*s->find_meter("home"), "2026-11-20", "2026-11-21");
  REQUIRE(days.size() == 1);
  CHECK_FALSE(days[0].estimated);
  // the last readings before the two midnights are 10 s before them: 24 kWh exactly
  CHECK(*days[0].delta[kImportT1] == 24'000);
}
