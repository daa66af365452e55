#include "history/rollup.h"

#include <algorithm>

namespace mp::history {

namespace {

constexpr int kTypicalRows = 17;  // rows before a midnight whose spacing is the usual interval

std::vector<int64_t> last_ms_of(const std::vector<Point>& points) {
  std::vector<int64_t> out;
  for (const auto& p : points) out.push_back(p.last_ms);
  return out;
}

// The meter's usual spacing of rows: from the rows before the midnight; when the data starts
// right before it (fewer than 3 rows) also from the rows after it, each side on its own (the
// gap across the midnight is what is judged, never part of the measure).
int64_t usual_gap_ms(const std::vector<Point>& before, const std::vector<Point>& after) {
  const int64_t b = typical_gap_ms(last_ms_of(before));
  if (before.size() >= 3) return b;
  return std::max(b, typical_gap_ms(last_ms_of(after)));
}

Boundary boundary_from_store(Store& s, int64_t meter, int64_t midnight) {
  const std::vector<Point> before = s.points_before(meter, midnight, kTypicalRows);
  const std::vector<Point> after = s.points_from(meter, midnight, kTypicalRows);
  return boundary_at(midnight, before.empty() ? std::nullopt : std::optional<Point>(before.front()),
                     after.empty() ? std::nullopt : std::optional<Point>(after.front()),
                     usual_gap_ms(before, after));
}

}  // namespace

DayRow compute_day(Store& s, int64_t meter, const LocalDay& d) {
  const Boundary start = boundary_from_store(s, meter, d.t0);
  const Boundary end = boundary_from_store(s, meter, d.t1);
  DayRow row = make_day(d, start, end);
  row.peak = quarter_peak(s.import_ends(meter, d.t0 - 60, d.t1), d.t0, d.t1);
  return row;
}

int update_days(Store& s, int64_t meter, int64_t t_lo, int64_t t_hi) {
  // from the day of the oldest row a boundary before t_lo may have judged with (its usual
  // spacing can come from rows after its midnight: usual_gap_ms)
  int64_t from = t_lo;
  const auto prev = s.points_before(meter, t_lo, kTypicalRows);
  if (!prev.empty()) from = prev.back().last_ms / 1000;
  int written = 0;
  for (LocalDay d = local_day(from); d.t0 <= t_hi; d = local_day(d.t1)) {
    const DayRow row = compute_day(s, meter, d);
    s.put_day(meter, row);
    ++written;
  }
  return written;
}

}  // namespace mp::history
