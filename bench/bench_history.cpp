// History database figures (history/store.h). Prints, does not judge.
//
//   bench_history size DIR [DAYS] [PERIOD_S]
//       DAYS (default 30) of a simulated DSMR 5 meter (protocols/simulate/dsmr_sim.h, one
//       telegram every PERIOD_S seconds, default 1) decoded and aggregated into minutes as the
//       history worker does, written to DIR/history.sqlite in one transaction per minute
//       with the days they change; prints rows, the file size (after a WAL checkpoint), bytes
//       per minute and the size per year of one meter, and the bytes the process wrote
//       (/proc/self/io write_bytes) per simulated hour.
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "history/export.h"
#include "history/rollup.h"
#include "history/store.h"
#include "protocols/dsmr/dsmr.h"
#include "protocols/simulate/dsmr_sim.h"

namespace {

constexpr int64_t kSec = 1'000'000'000LL;

long long write_bytes() {
  std::ifstream in("/proc/self/io");
  std::string k;
  long long v = 0;
  while (in >> k >> v)
    if (k == "write_bytes:") return v;
  return -1;
}

long long file_size(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 ? (long long)st.st_size : 0;
}

int cmd_size(const std::string& dir, int days, int period_s) {
  setenv("TZ", "Europe/Amsterdam", 1);
  const std::string path = dir + "/history.sqlite";
  std::remove(path.c_str());
  std::string err;
  auto s = mp::history::Store::open(path, false, err);
  if (!s) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 1;
  }
  s->begin();
  const int64_t meter = s->meter_id("home");
  s->commit();
  mp::dsmr::SimState sim;
  const int64_t start = 1'767'222'000LL;  // 2026-01-01T00:00+01:00
  const long long wb0 = write_bytes();
  const auto t0 = std::chrono::steady_clock::now();
  mp::history::MinuteRow row;
  row.t = start;
  int64_t rows = 0;
  for (int64_t t = start; t < start + int64_t(days) * 86400; t += period_s) {
    const std::string telegram = mp::dsmr::make_telegram(t * kSec, sim);
    mp::dsmr::Result res;
    if (!mp::dsmr::decode(telegram, res)) continue;
    const int64_t minute = t - t % 60;
    if (minute != row.t && row.n) {  // one transaction per minute, as the worker at 1/s
      s->begin();
      s->put_minute(meter, row);
      mp::history::update_days(*s, meter, row.t, row.t);
      s->commit();
      ++rows;
      row = mp::history::MinuteRow{};
    }
    row.t = minute;
    mp::history::add_reading(row, res.reading, t * kSec);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long long wb = write_bytes() - wb0;
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  s.reset();
  const long long size = file_size(path);
  std::printf("days %d, a telegram every %d s, %lld minute rows, %.1f s\n", days, period_s,
              (long long)rows, secs);
  std::printf("file %lld bytes: %.0f bytes per minute row, %.1f MB per year and meter\n", size,
              double(size) / double(rows), double(size) / days * 365 / 1e6);
  std::printf("written by this process: %.2f MB per simulated hour (one commit per minute)\n",
              double(wb) / (days * 24.0) / 1e6);
  return 0;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int cmd_query(char** a, int runs) {
  setenv("TZ", "Europe/Amsterdam", 1);
  mp::history::Resolution res;
  if (!mp::history::parse_resolution(a[5], res)) return 2;
  std::vector<double> total, query, json;
  size_t bytes = 0, rows = 0;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string err;
    auto s = mp::history::Store::open(a[1], true, err);
    mp::history::Table t;
    if (!s || !mp::history::query(*s, a[2], a[3], a[4], res, {}, t, err)) {
      std::fprintf(stderr, "%s\n", err.c_str());
      return 1;
    }
    query.push_back(ms_since(t0));
    const auto t1 = std::chrono::steady_clock::now();
    bytes = mp::history::to_json(t).size();
    json.push_back(ms_since(t1));
    total.push_back(ms_since(t0));
    rows = t.size();
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("%zu rows, %zu bytes of JSON: %.1f ms (open + query %.1f, JSON %.1f), median of %d\n",
              rows, bytes, median(total), median(query), median(json), runs);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "size")
    return cmd_size(argv[2], argc > 3 ? std::atoi(argv[3]) : 30, argc > 4 ? std::atoi(argv[4]) : 1);
  if (argc >= 7 && std::string(argv[1]) == "query")
    return cmd_query(argv + 1, argc > 7 ? std::atoi(argv[7]) : 5);
  std::fprintf(stderr,
               "usage: bench_history size DIR [DAYS] [PERIOD_S]\n"
               "       bench_history query DB METER FROM TO RESOLUTION [RUNS]\n");
  return 2;
}
