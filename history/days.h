// Days from counters (pure): a local day's energy, gas, water and heat are the difference of
// the meter's counters at the day's two midnights, never an integral of power. The counter
// at a midnight is the one of the last reading before it; when the readings either side of it
// are further apart than the meter's usual interval allows (an outage across midnight), the
// counters either side are split by time and both days are marked estimated. Local days are
// those of the process's time zone (TZ = general.timezone), so DST days have 23 or 25 hours.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "history/minutes.h"

namespace mp::history {

// A local calendar day [t0, t1) in Unix seconds.
struct LocalDay {
  std::string date;  // YYYY-MM-DD
  int64_t t0 = 0, t1 = 0;
};
// Local midnight starting that date (tm_isdst chosen by the zone).
int64_t local_midnight(int y, int m, int d);
// The local day that contains `t`.
LocalDay local_day(int64_t t);
// The day of a "YYYY-MM-DD"; nullopt when it is not a date.
std::optional<LocalDay> local_day(const std::string& date);
// "YYYY-MM" of a date.
inline std::string month_of(const std::string& date) { return date.substr(0, 7); }
int days_in_month(const std::string& date);

// A minute row as seen by the day computation: when its readings came and its end counters.
struct Point {
  int64_t first_ms = 0, last_ms = 0;
  Counters c;
};
// The counters at a midnight.
struct Boundary {
  Counters c;
  bool known = false;
  bool estimated = false;
};

// The usual time between two minute rows of a meter (median of the differences of the
// `last_ms` given, in any order), 0 with fewer than two.
int64_t typical_gap_ms(std::vector<int64_t> last_ms);
// Readings `gap_ms` apart are an outage for a meter whose rows are usually `typical_ms` apart.
bool is_outage(int64_t gap_ms, int64_t typical_ms);
// The counters at `midnight_s` from the last row before it and the first row at or after it.
Boundary boundary_at(int64_t midnight_s, const std::optional<Point>& before,
                     const std::optional<Point>& after, int64_t typical_ms);

struct Peak {
  int64_t t = 0;  // start of the quarter hour, Unix seconds
  int64_t w = 0;  // its average import power, W
};

struct DayRow {
  LocalDay day;
  bool estimated = false;
  Counters delta;  // energy etc. of the day, thousandths (Wh, litres, MJ)
  std::optional<Peak> peak;
};

// The day's values from its two boundaries (a counter that went down: none for that day).
DayRow make_day(const LocalDay& day, const Boundary& start, const Boundary& end);

// Total import of a minute's counters: energy_import_kwh, else the sum of the tariffs.
std::optional<int64_t> import_total(const Counters& c);
// The highest quarter-hour demand in [t0, t1) from the minute rows' (t, import total)
// sorted by t: a quarter counts when the rows of its last minute and of the minute before
// it exist (average power = energy of the quarter x 4).
std::optional<Peak> quarter_peak(const std::vector<std::pair<int64_t, int64_t>>& import_end,
                                 int64_t t0, int64_t t1);

}  // namespace mp::history
