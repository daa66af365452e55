// The history as a table (history/export.cpp): one row per minute, hour, day or month of a
// meter between two local dates, with the same columns for the CLI (`meterpipe export`) and
// serve: `time` (local ISO date-time with its UTC offset, date or month), then canonical names
// (energy as the energy of that period, power as its average, *_min/*_max, demand_max_w the
// highest quarter hour, estimated 1 when a day's counters were split across an outage), and
// `cost` when [[tariff]] tables cover a row. Columns without any value are left out.
#pragma once

#include <optional>
#include <string>
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
struct Table {
  std::string meter;
  Resolution resolution = Resolution::day;
  std::string from, to;         // local dates, `to` included
  std::string currency;         // of the tariffs when a cost column is there
  std::vector<Column> columns;  // columns[0] is "time"
  std::vector<std::string> times;
  std::vector<std::vector<std::optional<double>>> rows;  // values of columns[1..]
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
