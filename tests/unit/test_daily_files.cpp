// Daily line-protocol files: one file per UTC day, refusals, fsync policy.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "tests/harness/temp_dir.h"
#include "upload/daily_files.h"

namespace {
constexpr int64_t kSec = 1000000000;
}

// The reason an open() in these tests failed (shown by REQUIRE_MESSAGE).
std::string open_error;

TEST_CASE("daily files: one file per UTC day, fsync at most once per second") {
  mp::test::TempDir d("mpdaily");
  mp::upload::DailyFiles df;
  REQUIRE_MESSAGE(df.open(d.path + "/data", open_error), open_error);
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
