// Unit tests of the serve worker's history rings (serve/history.h) and the "today"
// counters (serve/state.h DayCounter): pure, time given explicitly.
#include <doctest/doctest.h>

#include <cmath>

#include "serve/history.h"
#include "serve/state.h"

using mp::serve::BucketRing;
using mp::serve::DayCounter;
using mp::serve::SeriesHistory;

namespace {
constexpr int64_t kT0 = 1699999980000;  // ms, a whole minute
}

TEST_CASE("bucket ring: one point per second, averaged within the second") {
  BucketRing r(3600, 1000);
  r.add(kT0 + 100, 10);
  r.add(kT0 + 900, 20);
  r.add(kT0 + 1000, 40);
  auto pts = r.range(kT0 + 1500, 60000);
  REQUIRE(pts.size() == 2);
  CHECK(pts[0].t_ms == kT0);
  CHECK(pts[0].avg == doctest::Approx(15));
  CHECK(pts[0].min == 10);
  CHECK(pts[0].max == 20);
  CHECK(pts[0].n == 2);
  CHECK(pts[1].t_ms == kT0 + 1000);
  CHECK(pts[1].avg == 40);
}

TEST_CASE("bucket ring: bounded to its length, oldest overwritten") {
  BucketRing r(3600, 1000);
  for (int i = 0; i < 2 * 3600; ++i) r.add(kT0 + int64_t(i) * 1000, i);
  const int64_t now = kT0 + int64_t(2 * 3600 - 1) * 1000;
  auto pts = r.range(now, 24 * 3600 * 1000LL);
  REQUIRE(pts.size() == 3600);
  CHECK(pts.front().avg == 3600);
  CHECK(pts.back().avg == 7199);
  for (size_t i = 1; i < pts.size(); ++i) CHECK(pts[i].t_ms - pts[i - 1].t_ms == 1000);
  // the window is (now - span, now]
  CHECK(r.range(now, 10000).size() == 10);
  CHECK(r.range(now, 10000).front().avg == 7190);
  // a sample older than the ring is ignored, it does not wipe a newer slot
  r.add(kT0 + 5000, -1);
  CHECK(r.range(now, 24 * 3600 * 1000LL).size() == 3600);
  CHECK(r.count(now, 24 * 3600 * 1000LL) == 3600);
}

TEST_CASE("bucket ring: gaps stay gaps, and old slots are not reported as new") {
  BucketRing r(60, 1000);
  r.add(kT0, 1);
  r.add(kT0 + 30000, 2);
  auto pts = r.range(kT0 + 30000, 60000);
  REQUIRE(pts.size() == 2);
  // 70 s later the slot of kT0 + 10 s was never written again: only the new sample shows
  r.add(kT0 + 100000, 3);
  pts = r.range(kT0 + 100000, 60000);
  REQUIRE(pts.size() == 1);
  CHECK(pts[0].avg == 3);
  double avg = 0;
  CHECK(r.average(kT0 + 100000, 60000, avg));
  CHECK(avg == 3);
  CHECK_FALSE(r.average(kT0 + 500000, 60000, avg));
}

TEST_CASE("bucket ring: minute averages over 24 h") {
  SeriesHistory h;
  // 90 minutes, one sample per second: value = minute number, plus +-10 within the minute
  for (int s = 0; s < 90 * 60; ++s) h.add(kT0 + int64_t(s) * 1000, (s / 60) + ((s % 2) ? 10 : -10));
  const int64_t now = kT0 + 90 * 60000LL - 1;
  auto mins = h.minutes.range(now, 1440 * 60000LL);
  REQUIRE(mins.size() == 90);
  CHECK(mins[0].t_ms == kT0);
  CHECK(mins[0].avg == doctest::Approx(0));
  CHECK(mins[0].min == -10);
  CHECK(mins[0].max == 10);
  CHECK(mins[0].n == 60);
  CHECK(mins[89].avg == doctest::Approx(89));
  // seconds keep the last hour only
  CHECK(h.seconds.range(now, 3600 * 1000LL).size() == 3600);
  CHECK(h.minutes.range(now, 30 * 60000LL).size() == 30);
}

TEST_CASE("bucket ring: rolling one-minute average (like mbmd's minuteavg)") {
  BucketRing r(60, 1000);
  for (int s = 0; s < 120; ++s) r.add(kT0 + int64_t(s) * 1000, s < 60 ? 100 : 200);
  double avg = 0;
  uint32_t n = 0;
  REQUIRE(r.average(kT0 + 119000, 60000, avg, &n));
  CHECK(avg == 200);
  CHECK(n == 60);
  REQUIRE(r.average(kT0 + 89000, 60000, avg, &n));
  // the ring was written up to 119 s; asking "as of 89 s" only sees 30..89, of which
  // 30..59 were overwritten by 90..119 -> only 60..89 remain
  CHECK(avg == 200);
  CHECK(n == 30);
}

TEST_CASE("bucket ring: negative times and non-finite values") {
  BucketRing r(10, 1000);
  r.add(-1500, 5);
  r.add(-500, 7);
  auto pts = r.range(0, 10000);
  REQUIRE(pts.size() == 2);
  CHECK(pts[0].t_ms == -2000);
  CHECK(pts[1].t_ms == -1000);
  r.add(0, NAN);
  r.add(0, INFINITY);
  CHECK(r.count(0, 10000) == 2);
}

TEST_CASE("today: counter difference since local midnight, or since start") {
  DayCounter d;
  d.update(100, 1000.0, 1);
  CHECK(d.today() == 0);
  CHECK_FALSE(d.from_midnight);
  d.update(100, 1001.5, 2);
  CHECK(d.today() == doctest::Approx(1.5));
  d.update(100, 1003.0, 3);
  // next day: the last value of day 100 is the counter at midnight
  d.update(101, 1003.25, 4);
  CHECK(d.from_midnight);
  CHECK(d.today() == doctest::Approx(0.25));
  d.update(101, 1004.0, 5);
  CHECK(d.today() == doctest::Approx(1.0));
  // a gap of days: not from midnight any more
  d.update(104, 1010.0, 6);
  CHECK_FALSE(d.from_midnight);
  CHECK(d.today() == doctest::Approx(6.0));
  // a counter that goes back (meter replaced) starts again
  d.update(104, 3.0, 7);
  CHECK(d.today() == 0);
  d.update(104, 4.0, 8);
  CHECK(d.today() == doctest::Approx(1.0));
}
