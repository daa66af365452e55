#include "history/days.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>

namespace mp::history {

int64_t local_midnight(int y, int m, int d) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = d;
  tm.tm_isdst = -1;
  return int64_t(std::mktime(&tm));
}

namespace {

LocalDay day_of_ymd(int y, int m, int d) {
  LocalDay out;
  out.t0 = local_midnight(y, m, d);
  out.t1 = local_midnight(y, m, d + 1);  // mktime normalises the 32nd
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", y, m, d);
  out.date = buf;
  return out;
}

}  // namespace

LocalDay local_day(int64_t t) {
  const time_t tt = time_t(t);
  std::tm tm{};
  localtime_r(&tt, &tm);
  return day_of_ymd(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

std::optional<LocalDay> local_day(const std::string& date) {
  int y = 0, m = 0, d = 0;
  char tail = 0;
  if (std::sscanf(date.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3) return std::nullopt;
  if (y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1 || d > 31) return std::nullopt;
  LocalDay out = day_of_ymd(y, m, d);
  if (local_day(out.t0).date != out.date) return std::nullopt;  // 31 February
  return out;
}

int days_in_month(const std::string& date) {
  int y = 0, m = 0;
  if (std::sscanf(date.c_str(), "%4d-%2d", &y, &m) != 2 || m < 1 || m > 12) return 30;
  static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return kDays[m - 1] + (m == 2 && leap ? 1 : 0);
}

int64_t typical_gap_ms(std::vector<int64_t> last_ms) {
  if (last_ms.size() < 2) return 0;
  std::sort(last_ms.begin(), last_ms.end());
  std::vector<int64_t> gaps;
  for (size_t i = 1; i < last_ms.size(); ++i) gaps.push_back(last_ms[i] - last_ms[i - 1]);
  std::nth_element(gaps.begin(), gaps.begin() + gaps.size() / 2, gaps.end());
  return gaps[gaps.size() / 2];
}

bool is_outage(int64_t gap_ms, int64_t typical_ms) {
  constexpr int64_t kMinOutageMs = 180'000;  // a few lost telegrams are no outage
  return gap_ms > std::max(4 * typical_ms, kMinOutageMs);
}

Boundary boundary_at(int64_t midnight_s, const std::optional<Point>& before,
                     const std::optional<Point>& after, int64_t typical_ms) {
  Boundary b;
  if (!before && !after) return b;
  b.known = true;
  if (!before) {  // the data starts after this midnight: the first counters we have
    b.c = after->c;
    b.estimated = true;
    return b;
  }
  if (!after || !is_outage(after->first_ms - before->last_ms, typical_ms)) {
    b.c = before->c;
    return b;
  }
  // outage across midnight: split the counters' rise by time
  b.estimated = true;
  const double span = double(after->last_ms - before->last_ms);
  const double part = span > 0 ? double(midnight_s * 1000 - before->last_ms) / span : 0;
  for (int c = 0; c < kCounters; ++c)
    if (before->c[c] && after->c[c])
      b.c[c] = *before->c[c] + int64_t(std::llround(double(*after->c[c] - *before->c[c]) * part));
  return b;
}

DayRow make_day(const LocalDay& day, const Boundary& start, const Boundary& end) {
  DayRow d;
  d.day = day;
  d.estimated = start.estimated || end.estimated;
  if (!start.known || !end.known) return d;
  for (int c = 0; c < kCounters; ++c)
    if (start.c[c] && end.c[c] && *end.c[c] >= *start.c[c]) d.delta[c] = *end.c[c] - *start.c[c];
  return d;
}

std::optional<int64_t> import_total(const Counters& c) {
  if (c[kImport]) return c[kImport];
  if (c[kImportT1] && c[kImportT2]) return *c[kImportT1] + *c[kImportT2];
  return std::nullopt;
}

std::optional<Peak> quarter_peak(const std::vector<std::pair<int64_t, int64_t>>& import_end,
                                 int64_t t0, int64_t t1) {
  std::map<int64_t, int64_t> at(import_end.begin(), import_end.end());
  std::optional<Peak> best;
  for (int64_t q = t0 - ((t0 % 900) + 900) % 900; q < t1; q += 900) {
    if (q < t0) continue;
    auto a = at.find(q - 60), b = at.find(q + 840);
    if (a == at.end() || b == at.end() || b->second < a->second) continue;
    const int64_t w = (b->second - a->second) * 4;  // Wh in a quarter hour -> W
    if (!best || w > best->w) best = Peak{q, w};
  }
  return best;
}

}  // namespace mp::history
