// Minute aggregation (pure): the readings of one meter within one UTC minute become one
// MinuteRow — net power avg/min/max, per-phase power avg, voltage min/max, current max, and
// the counters at the minute's last reading (docs/ARCHITECTURE.md, "Canonical values").
// Counters are kept as integers in thousandths of their unit (Wh, litres, MJ), so day and
// month energies are exact sums and differences of what the meter said.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/reading.h"

namespace mp::history {

// The counters a minute keeps, in this order everywhere (columns, CSV, days).
enum Counter : int {
  kImportT1,
  kImportT2,
  kImport,
  kExportT1,
  kExportT2,
  kExport,
  kGas,
  kWater,
  kHeat,
  kCounters
};
// Canonical name of each counter (common/canonical.h) and its SQL column.
std::string_view counter_name(int c);
std::string_view counter_column(int c);

// Thousandths of the unit: 1234.567 kWh -> 1234567.
int64_t to_milli(double v);
double from_milli(int64_t v);

using Counters = std::array<std::optional<int64_t>, kCounters>;

struct MinuteRow {
  int64_t t = 0;                      // start of the minute, Unix seconds (a multiple of 60)
  int64_t n = 0;                      // readings aggregated
  int64_t first_ms = 0, last_ms = 0;  // time of the first and last reading, Unix ms
  // net power (W): sum for the average, min, max, over the readings that had it
  int64_t p_n = 0;
  double p_sum = 0, p_min = 0, p_max = 0;
  std::array<double, 3> phase_sum{};  // net power per phase (W), summed
  std::array<int64_t, 3> phase_n{};
  std::optional<double> v_min, v_max, i_max;
  Counters counters;

  std::optional<double> p_avg() const;
  std::optional<double> phase_avg(int i) const;
};

// The time a reading is filed under: the meter's own time when it sent one, else the time it
// was received (nanoseconds since the epoch).
int64_t reading_time_ns(const Reading& r);

// Adds one reading (filed under `time_ns`, which must be within row.t .. row.t + 59 s).
void add_reading(MinuteRow& row, const Reading& r, int64_t time_ns);

}  // namespace mp::history
