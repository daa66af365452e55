// Retention of the daily line-protocol files (upload/day_retention.h): compression of
// finished days, keep_days deletion, crash leftovers, files it must never touch.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "tests/harness/temp_dir.h"
#include "upload/daily_files.h"
#include "upload/day_retention.h"

namespace fs = std::filesystem;
using namespace mp::upload;

namespace {

constexpr int64_t kDay = 86400LL * 1000000000LL;
// 2026-11-22 13:45:00 UTC
constexpr int64_t kNow = 1795355100LL * 1000000000LL;

// "YYYY-MM-DD" of the day `ago` days before kNow.
std::string date(int ago) {
  std::string n = DailyFiles::file_name(kNow - ago * kDay);
  return n.substr(0, 10);
}

struct TempDir : mp::test::TempDir {
  TempDir() : mp::test::TempDir("mpretention") {}
};

void write_file(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), std::streamsize(data.size()));
  REQUIRE(f.good());
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// The names in a directory.
std::set<std::string> names(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// Decompresses a gzip file (all members) with zlib's gz* functions; "<error>" when damaged.
std::string gunzip(const std::string& path) {
  gzFile g = gzopen(path.c_str(), "rb");
  if (!g) return "<cannot open>";
  std::string out;
  char buf[16384];
  int n;
  while ((n = gzread(g, buf, sizeof buf)) > 0) out.append(buf, size_t(n));
  int err = 0;
  gzerror(g, &err);
  gzclose(g);
  if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) return "<error>";
  return out;
}

// A gzip file of `data` (one member).
std::string gzip_bytes(const std::string& data) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, uLong(data.size())) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = uInt(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = uInt(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Line-protocol lines of varied content (numbers that change, so it does not compress to
// nothing), about `bytes` long in total.
std::string lines(size_t bytes, uint32_t seed, int64_t t0 = 1795315249) {
  std::mt19937 rng(seed);
  std::string s;
  for (int64_t i = 0; s.size() < bytes; ++i) {
    s += "electricity,meter=home energy_import_t1_kwh=" + std::to_string(1822465 + i / 7) +
         "e-3,power_import_w=" + std::to_string(rng() % 5000) +
         ",voltage_l1_v=" + std::to_string(225 + rng() % 10) + "." + std::to_string(rng() % 10) +
         ",tariff=" + std::to_string(1 + rng() % 2) + "i " + std::to_string(t0 + i) + "\n";
  }
  return s;
}

RetentionOptions opts(int64_t keep_days, bool compress = true) {
  RetentionOptions o;
  o.keep_days = keep_days;
  o.compress = compress;
  return o;
}

}  // namespace

// The reason an open() in these tests failed (shown by REQUIRE_MESSAGE).
std::string open_error;

TEST_CASE("utc_day and parse_day_file") {
  CHECK(utc_day(0) == 0);
  CHECK(utc_day(kDay - 1) == 0);
  CHECK(utc_day(kDay) == 1);
  CHECK(utc_day(-1) == -1);
  int64_t d = -1;
  CHECK(parse_day_file("1970-01-01.lp", &d) == DayFileKind::lp);
  CHECK(d == 0);
  CHECK(parse_day_file(date(0) + ".lp", &d) == DayFileKind::lp);
  CHECK(d == utc_day(kNow));
  CHECK(parse_day_file("2024-02-29.lp.gz", &d) == DayFileKind::lp_gz);
  CHECK(parse_day_file(".2024-02-29.lp.gz.tmp", &d) == DayFileKind::temp);
  CHECK(parse_day_file("2000-02-29.lp") == DayFileKind::lp);  // leap year (400)
  for (const char* bad :
       {"2026-13-40.lp",        "2026-02-29.lp",      "1900-02-29.lp",     "2026-04-31.lp",
        "2026-00-10.lp",        "2026-11-00.lp",      "0000-01-01.lp",     "2026-1-01.lp",
        "2026-11-21.lp.bak",    "2026-11-21.LP",      "2026_11_21.lp",     "x2026-11-21.lp",
        "2026-11-21.lp.gz.tmp", ".2026-11-21.lp.tmp", "2026-11-21.lp.gz.", "+026-11-21.lp",
        "2026-+1-21.lp",        "notes.txt",          "bus.position",      ""})
    CHECK_MESSAGE(parse_day_file(bad) == DayFileKind::none, bad);
}

TEST_CASE("compresses days from the day before yesterday on; today and yesterday untouched") {
  TempDir dir;
  std::map<std::string, std::string> content;
  for (int ago : {0, 1, 2, 3, 9}) {
    content[date(ago)] = lines(20000 + ago * 100, uint32_t(ago));
    write_file(dir.at(date(ago) + ".lp"), content[date(ago)]);
  }
  // A few MB with varied lines: many 64 KiB chunks in and out.
  content[date(5)] = lines(3 << 20, 77);
  write_file(dir.at(date(5) + ".lp"), content[date(5)]);
  chmod(dir.at(date(5) + ".lp").c_str(), 0604);

  auto st = retention_pass(dir.path, kNow, opts(0));
  CHECK(st.errors.empty());
  CHECK(st.compressed == 4);
  CHECK(st.deleted == 0);
  CHECK(st.recovered == 0);
  CHECK_FALSE(st.aborted);
  CHECK(st.plain_bytes == content[date(2)].size() + content[date(3)].size() +
                              content[date(5)].size() + content[date(9)].size());
  CHECK(names(dir.path) == std::set<std::string>{date(0) + ".lp", date(1) + ".lp",
                                                 date(2) + ".lp.gz", date(3) + ".lp.gz",
                                                 date(5) + ".lp.gz", date(9) + ".lp.gz"});
  uint64_t gz_total = 0;
  for (int ago : {2, 3, 5, 9}) {
    const std::string gz = dir.at(date(ago) + ".lp.gz");
    CHECK((gunzip(gz) == content[date(ago)]));
    gz_total += fs::file_size(gz);
  }
  CHECK(st.gz_bytes == gz_total);
  CHECK(fs::file_size(dir.at(date(5) + ".lp.gz")) < content[date(5)].size() / 2);
  CHECK((read_file(dir.at(date(0) + ".lp")) == content[date(0)]));
  CHECK((read_file(dir.at(date(1) + ".lp")) == content[date(1)]));
  // same permissions as the .lp had
  struct stat s;
  REQUIRE(stat(dir.at(date(5) + ".lp.gz").c_str(), &s) == 0);
  CHECK((s.st_mode & 0777) == 0604);
  CHECK(st.dir_bytes == gz_total + content[date(0)].size() + content[date(1)].size());
  CHECK(describe(st, 0).rfind("compressed 4 day files (", 0) == 0);

  // The same bytes as gzip -dc gives (another reader of the format).
  std::string cmd = "gzip -dc '" + dir.at(date(5) + ".lp.gz") + "' > '" + dir.at("check.txt") + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  CHECK((read_file(dir.at("check.txt")) == content[date(5)]));
  fs::remove(dir.at("check.txt"));

  // A second pass has nothing to do.
  auto st2 = retention_pass(dir.path, kNow, opts(0));
  CHECK_FALSE(st2.did_something());
  CHECK(describe(st2, 0).empty());
  CHECK(names(dir.path).size() == 6);
}

TEST_CASE("compress = false leaves every .lp") {
  TempDir dir;
  for (int ago : {0, 1, 2, 20}) write_file(dir.at(date(ago) + ".lp"), lines(1000, 1));
  auto before = names(dir.path);
  auto st = retention_pass(dir.path, kNow, opts(0, false));
  CHECK_FALSE(st.did_something());
  CHECK(names(dir.path) == before);
}

TEST_CASE("an empty .lp becomes an empty-content .gz") {
  TempDir dir;
  write_file(dir.at(date(4) + ".lp"), "");
  auto st = retention_pass(dir.path, kNow, opts(0));
  CHECK(st.errors.empty());
  CHECK(st.compressed == 1);
  CHECK(names(dir.path) == std::set<std::string>{date(4) + ".lp.gz"});
  CHECK(gunzip(dir.at(date(4) + ".lp.gz")).empty());
}

TEST_CASE("keep_days: deletes .lp and .lp.gz older than today - keep_days") {
  TempDir dir;
  // .lp files and .lp.gz files on both sides of the boundary (keep_days = 7: today and the
  // 7 days before it stay; 8 days ago and older go).
  for (int ago : {0, 1, 6, 7, 8, 30}) write_file(dir.at(date(ago) + ".lp"), lines(500, 3));
  for (int ago : {5, 7, 8, 40}) write_file(dir.at(date(ago) + ".lp.gz"), gzip_bytes("x\n"));
  // a future day (clock behind the meter) is never deleted
  write_file(dir.at(DailyFiles::file_name(kNow + 3 * kDay)), "future\n");

  auto st = retention_pass(dir.path, kNow, opts(7, false));
  CHECK(st.errors.empty());
  CHECK(st.deleted == 4);
  CHECK(st.compressed == 0);
  CHECK(names(dir.path) == std::set<std::string>{date(0) + ".lp", date(1) + ".lp", date(6) + ".lp",
                                                 date(7) + ".lp", date(5) + ".lp.gz",
                                                 date(7) + ".lp.gz",
                                                 DailyFiles::file_name(kNow + 3 * kDay)});
  CHECK(describe(st, 7).find("deleted 4 older than 7 days") != std::string::npos);

  // keep_days = 1: today and yesterday stay, with compression the rest is deleted, not gzipped
  auto st1 = retention_pass(dir.path, kNow, opts(1, true));
  CHECK(st1.errors.empty());
  CHECK(st1.compressed == 0);
  CHECK(names(dir.path) == std::set<std::string>{date(0) + ".lp", date(1) + ".lp",
                                                 DailyFiles::file_name(kNow + 3 * kDay)});
}

TEST_CASE("keep_days boundary at the start of the UTC day") {
  TempDir dir;
  // now = the first nanosecond of a day: "today" is that day
  const int64_t midnight = utc_day(kNow) * kDay;
  for (int ago : {0, 1, 2, 3}) write_file(dir.at(date(ago) + ".lp"), "a 1\n");
  auto st = retention_pass(dir.path, midnight, opts(2, false));
  CHECK(st.deleted == 1);
  CHECK(names(dir.path) ==
        std::set<std::string>{date(0) + ".lp", date(1) + ".lp", date(2) + ".lp"});
  // one nanosecond before: the day before is "today", so nothing is older than 2 days
  write_file(dir.at(date(3) + ".lp"), "a 1\n");
  st = retention_pass(dir.path, midnight - 1, opts(2, false));
  CHECK(st.deleted == 0);
  CHECK(names(dir.path).size() == 4);
}

TEST_CASE("keep_days = 0 (and negative) keeps everything") {
  TempDir dir;
  for (int ago : {0, 1, 100, 1000}) write_file(dir.at(date(ago) + ".lp.gz"), gzip_bytes("y\n"));
  write_file(dir.at("1970-01-01.lp.gz"), gzip_bytes("z\n"));
  auto before = names(dir.path);
  for (int64_t k : {0, -1, -5}) {
    auto st = retention_pass(dir.path, kNow, opts(k));
    CHECK(st.errors.empty());
    CHECK(st.deleted == 0);
    CHECK(names(dir.path) == before);
  }
}

TEST_CASE("files it does not recognise are never touched") {
  TempDir dir;
  const std::map<std::string, std::string> others = {
      {"notes.txt", "hello\n"},
      {"2026-13-40.lp", "bad month\n"},
      {date(20) + ".lp.bak", "backup\n"},
      {date(20) + ".LP", "upper\n"},
      {"bus.position", "process 12 3\n"},
      {"." + date(20) + ".lp.tmp", "not our temp\n"},
      {date(20) + ".lp.gz.tmp", "no leading dot\n"},
      {date(20) + ".lp.gz.old", "old\n"},
      {"2026-02-30.lp.gz", "not a date\n"},
  };
  for (const auto& [n, c] : others) write_file(dir.at(n), c);
  // a directory and a symlink with day-file names
  fs::create_directory(dir.at(date(30) + ".lp"));
  write_file(dir.at(date(30) + ".lp/inside"), "in a dir\n");
  write_file(dir.at("target.txt"), "link target\n");
  fs::create_symlink(dir.at("target.txt"), dir.at(date(31) + ".lp"));
  fs::create_symlink(dir.at("target.txt"), dir.at(date(32) + ".lp.gz"));
  auto before = names(dir.path);

  auto st = retention_pass(dir.path, kNow, opts(3, true));
  CHECK(st.errors.empty());
  CHECK_FALSE(st.did_something());
  CHECK(names(dir.path) == before);
  for (const auto& [n, c] : others) CHECK_MESSAGE((read_file(dir.at(n)) == c), n);
  CHECK((read_file(dir.at(date(30) + ".lp/inside")) == "in a dir\n"));
  CHECK((read_file(dir.at("target.txt")) == "link target\n"));
  CHECK(fs::is_symlink(dir.at(date(31) + ".lp")));
}

TEST_CASE("crash leftovers: a temp file is removed and the work redone") {
  TempDir dir;
  const std::string data = lines(200000, 5);
  write_file(dir.at(date(3) + ".lp"), data);
  write_file(dir.at("." + date(3) + ".lp.gz.tmp"), gzip_bytes(data).substr(0, 1000));
  // a temp of a day whose .lp is gone already (crash, then the day was finished elsewhere)
  write_file(dir.at(date(4) + ".lp.gz"), gzip_bytes("four\n"));
  write_file(dir.at("." + date(4) + ".lp.gz.tmp"), "partial");

  auto st = retention_pass(dir.path, kNow, opts(0));
  CHECK(st.errors.empty());
  CHECK(st.temp_removed == 2);
  CHECK(st.compressed == 1);
  CHECK(names(dir.path) == std::set<std::string>{date(3) + ".lp.gz", date(4) + ".lp.gz"});
  CHECK((gunzip(dir.at(date(3) + ".lp.gz")) == data));
  CHECK((gunzip(dir.at(date(4) + ".lp.gz")) == "four\n"));
  CHECK(describe(st, 0).find("removed 2 temp files") != std::string::npos);
}

TEST_CASE("crash after the rename: .lp and a complete .gz of it") {
  TempDir dir;
  const std::string data = lines(300000, 6);
  write_file(dir.at(date(2) + ".lp"), data);
  write_file(dir.at(date(2) + ".lp.gz"), gzip_bytes(data));
  auto st = retention_pass(dir.path, kNow, opts(0));
  CHECK(st.errors.empty());
  CHECK(st.recovered == 1);
  CHECK(st.compressed == 0);
  CHECK(names(dir.path) == std::set<std::string>{date(2) + ".lp.gz"});
  CHECK((gunzip(dir.at(date(2) + ".lp.gz")) == data));
  CHECK(describe(st, 0) == "finished 1 interrupted compression");
}

TEST_CASE("a truncated or damaged .gz of the .lp is rewritten from the .lp") {
  TempDir dir;
  const std::string data = lines(400000, 7);
  const std::string gz = gzip_bytes(data);
  write_file(dir.at(date(2) + ".lp"), data);
  write_file(dir.at(date(2) + ".lp.gz"), gz.substr(0, gz.size() / 2));  // truncated
  write_file(dir.at(date(3) + ".lp"), data);
  write_file(dir.at(date(3) + ".lp.gz"), gz.substr(0, gz.size() - 4));  // trailer cut
  write_file(dir.at(date(4) + ".lp"), data);
  write_file(dir.at(date(4) + ".lp.gz"), "");  // empty
  std::string bad = gz;
  bad[bad.size() - 6] ^= 0x55;  // CRC in the trailer: every byte decodes, the check fails
  write_file(dir.at(date(5) + ".lp"), data);
  write_file(dir.at(date(5) + ".lp.gz"), bad);
  // a complete .gz of only the first half (the .lp grew after it was written)
  write_file(dir.at(date(6) + ".lp"), data);
  write_file(dir.at(date(6) + ".lp.gz"), gzip_bytes(data.substr(0, data.size() / 2)));

  auto st = retention_pass(dir.path, kNow, opts(0));
  CHECK(st.errors.empty());
  CHECK(st.compressed == 5);
  CHECK(names(dir.path) == std::set<std::string>{date(2) + ".lp.gz", date(3) + ".lp.gz",
                                                 date(4) + ".lp.gz", date(5) + ".lp.gz",
                                                 date(6) + ".lp.gz"});
  for (int ago : {2, 3, 4, 5, 6}) CHECK((gunzip(dir.at(date(ago) + ".lp.gz")) == data));
}

TEST_CASE("a .gz damaged in the middle: rewritten from the .lp or both kept, never a loss") {
  TempDir dir;
  const std::string data = lines(400000, 7);
  const std::string gz = gzip_bytes(data);
  for (size_t at : {size_t(20), gz.size() / 3, gz.size() / 2, gz.size() - 100}) {
    CAPTURE(at);
    std::string bad = gz;
    bad[at] ^= 0x55;
    write_file(dir.at(date(2) + ".lp"), data);
    write_file(dir.at(date(2) + ".lp.gz"), bad);
    auto st = retention_pass(dir.path, kNow, opts(0));
    if (st.errors.empty()) {
      // the readable part was a prefix of the .lp
      CHECK(st.compressed == 1);
      CHECK(names(dir.path) == std::set<std::string>{date(2) + ".lp.gz"});
      CHECK((gunzip(dir.at(date(2) + ".lp.gz")) == data));
    } else {
      // it decoded to other bytes before the damage showed: nothing is touched
      CHECK(st.errors.size() == 1);
      CHECK(st.errors[0].find("damaged") != std::string::npos);
      CHECK((read_file(dir.at(date(2) + ".lp")) == data));
      CHECK((read_file(dir.at(date(2) + ".lp.gz")) == bad));
      fs::remove(dir.at(date(2) + ".lp.gz"));
    }
  }
}

TEST_CASE("late points after the day was compressed are added, never lost") {
  TempDir dir;
  const std::string day = lines(100000, 8), late = lines(3000, 9, 1795000000);
  write_file(dir.at(date(3) + ".lp.gz"), gzip_bytes(day));
  write_file(dir.at(date(3) + ".lp"), late);
  auto st = retention_pass(dir.path, kNow, opts(0));
  CHECK(st.errors.empty());
  CHECK(st.compressed == 1);
  CHECK(names(dir.path) == std::set<std::string>{date(3) + ".lp.gz"});
  CHECK((gunzip(dir.at(date(3) + ".lp.gz")) == day + late));

  // crash after that rename (the .lp is still there): the .gz ends with it, nothing doubles
  write_file(dir.at(date(3) + ".lp"), late);
  st = retention_pass(dir.path, kNow, opts(0));
  CHECK(st.errors.empty());
  CHECK(st.recovered == 1);
  CHECK(st.compressed == 0);
  CHECK((gunzip(dir.at(date(3) + ".lp.gz")) == day + late));
  CHECK(names(dir.path) == std::set<std::string>{date(3) + ".lp.gz"});
}

TEST_CASE("a damaged .gz holding other data: both kept, an error") {
  TempDir dir;
  const std::string day = lines(100000, 10), other = lines(5000, 11, 1795000000);
  std::string gz = gzip_bytes(day);
  gz.resize(gz.size() / 2);
  write_file(dir.at(date(3) + ".lp.gz"), gz);
  write_file(dir.at(date(3) + ".lp"), other);
  auto st = retention_pass(dir.path, kNow, opts(0));
  REQUIRE(st.errors.size() == 1);
  CHECK(st.errors[0].find("damaged") != std::string::npos);
  CHECK(st.did_something());
  CHECK((read_file(dir.at(date(3) + ".lp.gz")) == gz));
  CHECK((read_file(dir.at(date(3) + ".lp")) == other));
  CHECK(names(dir.path).size() == 2);
}

TEST_CASE("write errors lose nothing") {
  TempDir dir;
  const std::string data = lines(1 << 20, 12);
  write_file(dir.at(date(3) + ".lp"), data);
  write_file(dir.at(date(4) + ".lp"), data);

  SUBCASE("file size limit (a full disk): the .lp stays, no temp file left") {
    struct rlimit old;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto prev = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = 20000;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    auto st = retention_pass(dir.path, kNow, opts(0));
    setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, prev);
    CHECK(st.errors.size() == 2);
    CHECK(st.compressed == 0);
    CHECK(names(dir.path) == std::set<std::string>{date(3) + ".lp", date(4) + ".lp"});
    CHECK((read_file(dir.at(date(3) + ".lp")) == data));
    CHECK((read_file(dir.at(date(4) + ".lp")) == data));
    // and the next pass (disk space back) does it
    auto st2 = retention_pass(dir.path, kNow, opts(0));
    CHECK(st2.errors.empty());
    CHECK(st2.compressed == 2);
    CHECK((gunzip(dir.at(date(3) + ".lp.gz")) == data));
  }
  SUBCASE("the temp name taken by a directory") {
    fs::create_directory(dir.at("." + date(3) + ".lp.gz.tmp"));
    auto st = retention_pass(dir.path, kNow, opts(0));
    REQUIRE(st.errors.size() == 1);
    CHECK(st.errors[0].find("cannot create") != std::string::npos);
    CHECK(st.compressed == 1);  // the other day still is done
    CHECK(names(dir.path) ==
          std::set<std::string>{"." + date(3) + ".lp.gz.tmp", date(3) + ".lp", date(4) + ".lp.gz"});
    CHECK((read_file(dir.at(date(3) + ".lp")) == data));
  }
  SUBCASE("the .gz name taken by a directory") {
    fs::create_directory(dir.at(date(3) + ".lp.gz"));
    write_file(dir.at(date(3) + ".lp.gz/x"), "x");
    auto st = retention_pass(dir.path, kNow, opts(0));
    REQUIRE(st.errors.size() == 1);
    CHECK(st.errors[0].find("cannot rename") != std::string::npos);
    CHECK(names(dir.path) ==
          std::set<std::string>{date(3) + ".lp.gz", date(3) + ".lp", date(4) + ".lp.gz"});
    CHECK((read_file(dir.at(date(3) + ".lp")) == data));
  }
  SUBCASE("a read-only directory (not as root)") {
    if (geteuid() == 0) return;  // root writes anyway
    REQUIRE(chmod(dir.path.c_str(), 0500) == 0);
    auto st = retention_pass(dir.path, kNow, opts(1));
    chmod(dir.path.c_str(), 0700);
    CHECK(st.errors.size() >= 2);
    CHECK(names(dir.path) == std::set<std::string>{date(3) + ".lp", date(4) + ".lp"});
    CHECK((read_file(dir.at(date(3) + ".lp")) == data));
  }
}

TEST_CASE("a missing directory is an error") {
  auto st = retention_pass("/tmp/mp-retention-does-not-exist/x", kNow, opts(3));
  REQUIRE(st.errors.size() == 1);
  CHECK(st.errors[0].find("cannot open") != std::string::npos);
  CHECK(st.dir_bytes == 0);
}

TEST_CASE("keep_going false abandons the pass; the next one finishes it") {
  TempDir dir;
  const std::string data = lines(2 << 20, 13);
  write_file(dir.at(date(3) + ".lp"), data);
  write_file(dir.at(date(4) + ".lp"), data);
  int calls = 0;
  RetentionOptions o = opts(0);
  o.keep_going = [&] { return ++calls < 5; };
  auto st = retention_pass(dir.path, kNow, o);
  CHECK(st.aborted);
  CHECK(st.errors.empty());
  CHECK(st.compressed == 0);
  CHECK(names(dir.path) == std::set<std::string>{date(3) + ".lp", date(4) + ".lp"});
  o.keep_going = nullptr;
  st = retention_pass(dir.path, kNow, o);
  CHECK(st.compressed == 2);
  CHECK((gunzip(dir.at(date(4) + ".lp.gz")) == data));
}

TEST_CASE("a .lp that grows while it is compressed loses nothing") {
  TempDir dir;
  const std::string data = lines(1 << 20, 14), more = "electricity,meter=home p=1 1795000000\n";
  const std::string lp = dir.at(date(3) + ".lp"), gz = dir.at(date(3) + ".lp.gz");
  write_file(lp, data);
  std::mutex writer;
  RetentionOptions o = opts(0);
  o.writer_mutex = &writer;

  SUBCASE("appended while it is read: in the .gz") {
    int calls = 0;
    o.keep_going = [&] {
      if (++calls == 5) {
        std::lock_guard<std::mutex> l(writer);
        std::ofstream(lp, std::ios::app | std::ios::binary) << more;
      }
      return true;
    };
    auto st = retention_pass(dir.path, kNow, o);
    CHECK(st.errors.empty());
    CHECK(st.compressed == 1);
    CHECK(st.plain_bytes == data.size() + more.size());
    CHECK(names(dir.path) == std::set<std::string>{date(3) + ".lp.gz"});
    CHECK((gunzip(gz) == data + more));
  }
  SUBCASE("appended after it was read: kept, and redone by the next pass") {
    // The writer holds its lock until the .gz exists (the .lp was read to its end), appends,
    // and lets go: the pass then finds the .lp longer than what it compressed.
    std::promise<void> locked;
    std::thread w([&] {
      std::lock_guard<std::mutex> l(writer);
      locked.set_value();
      for (int i = 0; i < 20000 && !fs::exists(gz); ++i) usleep(1000);
      std::ofstream(lp, std::ios::app | std::ios::binary) << more;
    });
    locked.get_future().wait();
    auto st = retention_pass(dir.path, kNow, o);
    w.join();
    CHECK(st.errors.empty());
    CHECK(st.deferred == 1);
    CHECK(names(dir.path) == std::set<std::string>{date(3) + ".lp", date(3) + ".lp.gz"});
    CHECK((read_file(lp) == data + more));
    CHECK((gunzip(gz) == data));
    // the .gz is a prefix of the .lp: rewritten from it
    st = retention_pass(dir.path, kNow, o);
    CHECK(st.errors.empty());
    CHECK(st.compressed == 1);
    CHECK(names(dir.path) == std::set<std::string>{date(3) + ".lp.gz"});
    CHECK((gunzip(gz) == data + more));
  }
}

TEST_CASE("DailyFiles opens a day file again when it was removed under it") {
  TempDir dir;
  DailyFiles files;
  REQUIRE_MESSAGE(files.open(dir.path, open_error), open_error);
  const int64_t t = kNow - 3 * kDay;
  REQUIRE(files.append("a x=1 1", t));
  const std::string path = dir.at(DailyFiles::file_name(t));
  REQUIRE(read_file(path) == "a x=1 1\n");
  fs::remove(path);  // as the retention pass does after compressing it
  REQUIRE(files.append("a x=2 2", t));
  files.sync();
  CHECK((read_file(path) == "a x=2 2\n"));
}
