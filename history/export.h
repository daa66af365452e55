// The history as a table (history/export.cpp): one row per minute, hour, day or month of a
// meter between two local dates, with the same columns for the CLI (`meterpipe export`) and
// serve: `time` (local ISO date-time with its UTC offset, date or month), then canonical names
// (energy as the energy of that period, power as its average, *_min/*_max, demand_max_w the
// highest quarter hour, estimated 1 when a day's counters were split across an outage), and
// `cost` when [[tariff]] tables cover a row. Columns without any value are left out.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/history_config.h"
#include "history/store.h"

namespace mp::history {

enum class Resolution { minute, hour, day, month };
bool parse_resolution(const std::string& text, Resolution& out);
const char* resolution_name(Resolution r);

struct Column {
  std::string name;
  int decimals = 0;
};
// Rows are kept flat (one buffer of times, one of values): a month of minutes is 44 640 rows
// and a vector per row was most of serve's time for it.
class Table {
 public:
  std::string meter;
  Resolution resolution = Resolution::day;
  std::string from, to;         // local dates, `to` included
  std::string currency;         // of the tariffs when a cost column is there
  std::vector<Column> columns;  // columns[0] is "time"

  size_t size() const { return time_end_.size(); }
  std::string_view time(size_t row) const {
    const size_t b = row ? time_end_[row - 1] : 0;
    return std::string_view(times_).substr(b, time_end_[row] - b);
  }
  // The value of `row` in columns[c + 1]; nullopt for none.
  std::optional<double> value(size_t row, size_t c) const {
    const double v = cells_[row * width_ + picked_[c]];
    if (v != v) return std::nullopt;  // NaN: none
    return v;
  }

  // Building (history/export.cpp): rows of `width` cells (NaN for none), then the cells that
  // make columns[1..] picked from them.
  void start(size_t width, size_t rows_hint);
  void add_row(std::string_view time, const double* cells);
  void pick(std::vector<size_t> cells) { picked_ = std::move(cells); }

 private:
  std::string times_;
  std::vector<size_t> time_end_;
  size_t width_ = 0;
  std::vector<double> cells_;
  std::vector<size_t> picked_;
};

// The table of `meter` from local date `from` through `to` (both "YYYY-MM-DD", inclusive).
// False with `error` for an unknown meter or a bad date.
bool query(Store& s, const std::string& meter, const std::string& from, const std::string& to,
           Resolution res, const std::vector<config::Tariff>& tariffs, Table& out,
           std::string& error);

// CSV (RFC 4180, a header row) and JSON ({"meter", "resolution", "from", "to", "currency",
// "columns": ["time", names...], "rows": [[time, value or null, ...], ...]}) of the same
// table: a row of either is the same values in the same column order.
std::string to_csv(const Table& t);
std::string to_json(const Table& t);

}  // namespace mp::history
