// Disk spool: framing, recovery of torn tails, checkpoints, bounds, fsync policy, threads.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "upload/daily_files.h"
#include "upload/spool.h"
#include "tests/harness/temp_dir.h"

namespace fs = std::filesystem;
using mp::upload::Spool;
using mp::upload::SpoolBatch;

namespace {

constexpr int64_t kSec = 1000000000;

struct TempDir : mp::test::TempDir {
  TempDir() : mp::test::TempDir("mpspool") {}
};

// Fixed-length lines (40 bytes) so record sizes are known: 8 header + 8 time + 40 = 56.
std::string line_of(int i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "electricity,meter=m power_net_w=%08d 1", i);
  std::string s = buf;
  s.resize(40, '0');
  return s;
}
constexpr uint64_t kRec = 56;
constexpr uint64_t kMagic = 8;

std::string lines_body(int from, int to) {
  std::string s;
  for (int i = from; i < to; ++i) s += line_of(i) + "\n";
  return s;
}

std::vector<fs::path> segments(const std::string& dir) {
  std::vector<fs::path> v;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".seg") v.push_back(e.path());
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST_CASE("append, peek, commit, reopen resumes at the checkpoint") {
  TempDir d;
  {
    Spool sp;
    std::string err;
    REQUIRE(sp.open(d.path + "/spool", 1 << 20, 0, &err));
    for (int i = 0; i < 10; ++i) REQUIRE(sp.append(line_of(i), 1000 + i));
    auto st = sp.stats();
    CHECK(st.points_pending == 10);
    CHECK(st.points_appended == 10);
    CHECK(st.bytes == kMagic + 10 * kRec);
    CHECK(st.oldest_pending_time_ns == 1000);

    SpoolBatch b = sp.peek(4);
    CHECK(b.count == 4);
    CHECK(b.body == lines_body(0, 4));
    CHECK(b.oldest_time_ns == 1000);
    // peek does not consume
    CHECK(sp.peek(4).body == b.body);
    REQUIRE(sp.commit(b.end));
    st = sp.stats();
    CHECK(st.points_pending == 6);
    CHECK(st.points_committed == 4);
    CHECK(st.oldest_pending_time_ns == 1004);
    // committing the same position again changes nothing
    CHECK(sp.commit(b.end));
    CHECK(sp.stats().points_pending == 6);
  }
  Spool sp;
  REQUIRE(sp.open(d.path + "/spool", 1 << 20));
  CHECK(sp.stats().points_pending == 6);
  SpoolBatch b = sp.peek(100);
  CHECK(b.count == 6);
  CHECK(b.body == lines_body(4, 10));
  REQUIRE(sp.commit(b.end));
  CHECK(sp.stats().points_pending == 0);
  CHECK(sp.stats().oldest_pending_time_ns == 0);
  CHECK(sp.peek(100).count == 0);
}

TEST_CASE("batches span segments; fully sent segments are deleted") {
  TempDir d;
  Spool sp;
  // 10 records per segment.
  REQUIRE(sp.open(d.path, 1 << 20, kMagic + 10 * kRec));
  for (int i = 0; i < 35; ++i) REQUIRE(sp.append(line_of(i), i));
  CHECK(segments(d.path).size() == 4);
  CHECK(sp.stats().segments == 4);
  SpoolBatch b = sp.peek(25);
  CHECK(b.count == 25);
  CHECK(b.body == lines_body(0, 25));
  REQUIRE(sp.commit(b.end));
  CHECK(segments(d.path).size() == 2);
  CHECK(sp.stats().bytes == 2 * kMagic + 15 * kRec);
  b = sp.peek(5);  // exactly the rest of the third segment
  CHECK(b.body == lines_body(25, 30));
  REQUIRE(sp.commit(b.end));
  CHECK(segments(d.path).size() == 1);
  b = sp.peek(100);
  CHECK(b.body == lines_body(30, 35));
  REQUIRE(sp.commit(b.end));
  CHECK(sp.stats().points_pending == 0);
  // appends after everything was sent continue cleanly
  REQUIRE(sp.append(line_of(99), 99));
  CHECK(sp.peek(10).body == lines_body(99, 100));
}

TEST_CASE("peek honours the byte limit but always returns at least one point") {
  TempDir d;
  Spool sp;
  REQUIRE(sp.open(d.path, 1 << 20));
  for (int i = 0; i < 5; ++i) REQUIRE(sp.append(line_of(i), i));
  CHECK(sp.peek(100, 3 * 41).count == 3);
  CHECK(sp.peek(100, 3 * 41 - 1).count == 2);
  CHECK(sp.peek(100, 1).count == 1);
}

TEST_CASE("torn last record is cut off at open and later appends are clean") {
  TempDir d;
  {
    Spool sp;
    REQUIRE(sp.open(d.path, 1 << 20));
    for (int i = 0; i < 20; ++i) REQUIRE(sp.append(line_of(i), i));
  }
  auto segs = segments(d.path);
  REQUIRE(segs.size() == 1);
  uint64_t size = fs::file_size(segs[0]);
  REQUIRE(size == kMagic + 20 * kRec);
  fs::resize_file(segs[0], size - 13);  // mid-record

  Spool sp;
  REQUIRE(sp.open(d.path, 1 << 20));
  auto st = sp.stats();
  CHECK(st.truncated_bytes == kRec - 13);
  CHECK(st.points_pending == 19);
  CHECK(fs::file_size(segs[0]) == kMagic + 19 * kRec);
  REQUIRE(sp.append(line_of(50), 50));
  SpoolBatch b = sp.peek(1000);
  CHECK(b.count == 20);
  CHECK(b.body == lines_body(0, 19) + lines_body(50, 51));
}

TEST_CASE("a corrupt record (CRC mismatch) ends the valid data") {
  TempDir d;
  {
    Spool sp;
    REQUIRE(sp.open(d.path, 1 << 20));
    for (int i = 0; i < 5; ++i) REQUIRE(sp.append(line_of(i), i));
  }
  auto seg = segments(d.path).at(0);
  {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(kMagic + 3 * kRec + 20);  // inside the 4th record's line
    f.put('X');
  }
  Spool sp;
  REQUIRE(sp.open(d.path, 1 << 20));
  CHECK(sp.stats().points_pending == 3);
  CHECK(sp.stats().truncated_bytes == 2 * kRec);
  CHECK(sp.peek(10).body == lines_body(0, 3));
}

TEST_CASE("garbage segment header and unusable checkpoint are survived") {
  TempDir d;
  {
    Spool sp;
    REQUIRE(sp.open(d.path, 1 << 20));
    for (int i = 0; i < 3; ++i) REQUIRE(sp.append(line_of(i), i));
    REQUIRE(sp.commit(sp.peek(1).end));
  }
  SUBCASE("checkpoint inside a record: its segment is resent from the start") {
    auto seg = segments(d.path).at(0);
    std::string name = seg.filename().string();
    std::ofstream(d.path + "/checkpoint")
        << std::stoull(name.substr(0, 20)) << " " << kMagic + 7 << "\n";
    Spool sp;
    REQUIRE(sp.open(d.path, 1 << 20));
    CHECK(sp.peek(10).body == lines_body(0, 3));
  }
  SUBCASE("checkpoint that is not a number: resend everything") {
    std::ofstream(d.path + "/checkpoint") << "garbage\n";
    Spool sp;
    REQUIRE(sp.open(d.path, 1 << 20));
    CHECK(sp.peek(10).body == lines_body(0, 3));
  }
  SUBCASE("segment with a bad header starts afresh") {
    auto seg = segments(d.path).at(0);
    std::ofstream(seg, std::ios::binary | std::ios::trunc) << "NOTASPOOLFILE";
    Spool sp;
    REQUIRE(sp.open(d.path, 1 << 20));
    CHECK(sp.stats().points_pending == 0);
    CHECK(sp.stats().truncated_bytes == 13);
    REQUIRE(sp.append(line_of(7), 7));
    CHECK(sp.peek(10).body == lines_body(7, 8));
  }
}

TEST_CASE("spool full: the oldest segment is dropped and counted exactly") {
  TempDir d;
  Spool sp;
  const uint64_t seg_bytes = kMagic + 10 * kRec;  // 10 records per segment
  REQUIRE(sp.open(d.path, 4096, seg_bytes));
  const int n = 100;
  for (int i = 0; i < n; ++i) REQUIRE(sp.append(line_of(i), i));
  auto st = sp.stats();
  CHECK(st.bytes <= 4096);
  // 7 full segments (3976 bytes) + a new one with 2 records (8 + 112) fit in 4096 bytes;
  // the third record of a segment forces the oldest out. 100 points end with 10 in the
  // newest segment: 7 full segments kept = 70 points, 30 dropped.
  CHECK(st.points_pending == 70);
  CHECK(st.dropped_points == 30);
  CHECK(st.dropped_points + st.points_pending == n);
  CHECK(st.oldest_pending_time_ns == 30);
  SpoolBatch b = sp.peek(1000);
  CHECK(b.count == 70);
  CHECK(b.body == lines_body(30, n));

  SUBCASE("points already sent are not counted as dropped") {
    REQUIRE(sp.commit(sp.peek(4).end));  // 4 of the oldest segment sent
    for (int i = n; i < n + 10; ++i) REQUIRE(sp.append(line_of(i), i));
    st = sp.stats();
    CHECK(st.dropped_points == 30 + 6);
    CHECK(st.points_pending == 70);
    CHECK(sp.peek(1000).body == lines_body(40, n + 10));
  }
  SUBCASE("a batch peeked before its segment was dropped commits nothing") {
    SpoolBatch old = sp.peek(5);
    for (int i = n; i < n + 10; ++i) REQUIRE(sp.append(line_of(i), i));
    CHECK(sp.commit(old.end));
    st = sp.stats();
    CHECK(st.dropped_points == 40);
    CHECK(st.points_pending == 70);
    CHECK(sp.peek(1000).body == lines_body(40, n + 10));
  }
}

TEST_CASE("refused lines write nothing") {
  TempDir d;
  Spool sp;
  CHECK_FALSE(sp.append("x f=1", 1));  // not open
  REQUIRE(sp.open(d.path, 1 << 20));
  CHECK_FALSE(sp.append("", 1));
  CHECK_FALSE(sp.append("a f=1\nb f=2", 1));
  CHECK_FALSE(sp.append("a f=1\r", 1));
  CHECK_FALSE(sp.append(std::string(Spool::kMaxLineBytes + 1, 'x'), 1));
  CHECK(sp.stats().points_pending == 0);
  CHECK(sp.append(std::string(Spool::kMaxLineBytes, 'x'), 1));
  CHECK(sp.peek(10).body.size() == Spool::kMaxLineBytes + 1);
}

TEST_CASE("open fails cleanly on an unusable directory") {
  TempDir d;
  std::ofstream(d.path + "/file") << "x";
  Spool sp;
  std::string err;
  CHECK_FALSE(sp.open(d.path + "/file/sub", 1 << 20, 0, &err));
  CHECK(err.find("cannot create spool directory") == 0);
  CHECK_FALSE(sp.is_open());
  CHECK(sp.peek(10).count == 0);
}

TEST_CASE("fsync at most once per second") {
  TempDir d;
  Spool sp;
  REQUIRE(sp.open(d.path, 1 << 20));
  uint64_t base = sp.stats().fsyncs;  // creating the first segment
  int64_t t0 = 1000 * kSec;
  CHECK_FALSE(sp.maybe_sync(t0));  // nothing to sync
  REQUIRE(sp.append(line_of(1), 1));
  CHECK(sp.maybe_sync(t0));
  REQUIRE(sp.append(line_of(2), 2));
  CHECK_FALSE(sp.maybe_sync(t0 + kSec / 2));
  CHECK_FALSE(sp.maybe_sync(t0 + kSec - 1));
  CHECK(sp.maybe_sync(t0 + kSec));
  CHECK_FALSE(sp.maybe_sync(t0 + 5 * kSec));  // clean
  CHECK(sp.stats().fsyncs == base + 2);
}

TEST_CASE("one thread appends while another peeks and commits") {
  TempDir d;
  Spool sp;
  REQUIRE(sp.open(d.path, 64 << 20, 64 << 10));
  const int n = 20000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < n; ++i) sp.append(line_of(i), i);
    done = true;
  });
  std::string got;
  for (;;) {
    bool finished = done.load();
    SpoolBatch b = sp.peek(700);
    got += b.body;
    REQUIRE(sp.commit(b.end));
    if (finished && b.count == 0) break;
  }
  writer.join();
  CHECK(got == lines_body(0, n));
  auto st = sp.stats();
  CHECK(st.points_pending == 0);
  CHECK(st.points_committed == n);
  CHECK(segments(d.path).size() == 1);
}

TEST_CASE("daily files: one file per UTC day, fsync at most once per second") {
  TempDir d;
  mp::upload::DailyFiles df;
  REQUIRE(df.open(d.path + "/data"));
  const int64_t day1 = 1700006399 * kSec;  // 2023-11-14T23:59:59Z
  const int64_t day2 = 1700006400 * kSec;  // 2023-11-15T00:00:00Z
  CHECK(mp::upload::DailyFiles::file_name(day1) == "2023-11-14.lp");
  CHECK(mp::upload::DailyFiles::file_name(day2) == "2023-11-15.lp");
  CHECK(mp::upload::DailyFiles::file_name(-1) == "1969-12-31.lp");
  REQUIRE(df.append("e f=1 1700006399000000000", day1));
  REQUIRE(df.append("e f=2 1700006400000000000", day2));
  REQUIRE(df.append("e f=3 1700006398000000000", day1 - kSec));  // late point of yesterday
  CHECK_FALSE(df.append("e f=4\ne f=5", day2));
  CHECK_FALSE(df.append("", day2));
  CHECK(df.maybe_sync(10 * kSec));
  CHECK(df.stats().fsyncs == 2);  // both day files were dirty
  REQUIRE(df.append("e f=6 1700006401000000000", day2 + kSec));
  CHECK_FALSE(df.maybe_sync(10 * kSec + kSec / 2));
  CHECK(df.maybe_sync(11 * kSec));
  CHECK(df.stats().fsyncs == 3);
  CHECK(df.stats().points == 4);
  df.close();
  auto read = [](const std::string& p) {
    std::ifstream f(p);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  CHECK(read(d.path + "/data/2023-11-14.lp") ==
        "e f=1 1700006399000000000\ne f=3 1700006398000000000\n");
  CHECK(read(d.path + "/data/2023-11-15.lp") ==
        "e f=2 1700006400000000000\ne f=6 1700006401000000000\n");
}
