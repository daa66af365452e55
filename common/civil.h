// Calendar arithmetic on std::chrono's proleptic Gregorian calendar (UTC days).
#pragma once

#include <chrono>
#include <cstdint>

namespace mp {

// Days since 1970-01-01 of year-month-day (month 1-12). A day past the month's end counts on
// into the next month (day 32 of January is February 1st).
inline int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  using namespace std::chrono;
  const sys_days first{year{int(y)} / month{m} / day{1}};
  return (first + days{int64_t(d) - 1}).time_since_epoch().count();
}

// The civil (UTC) year of a time in seconds since 1970-01-01.
inline int64_t civil_year(int64_t unix_seconds) {
  using namespace std::chrono;
  const year_month_day ymd{floor<days>(sys_seconds{seconds{unix_seconds}})};
  return int(ymd.year());
}

}  // namespace mp
