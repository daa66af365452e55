// [history] (the history worker's SQLite store) and [[tariff]] (prices for the costs of days
// and months). Keys and defaults are documented in config/meterpipe.example.toml; the parsing
// lives in config/history_config.cpp so config.cpp only calls it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mp::config {

struct History {
  bool enabled = true;
  std::string db_file;              // default <state_dir>/history.sqlite
  int64_t keep_minutes_days = 400;  // minutes older than this are deleted; days are kept
};

// Prices from `valid_from` (a local date) until the next tariff's valid_from. Export prices
// are what the grid pays for a kWh delivered: they lower the cost.
struct Tariff {
  std::string valid_from;  // "YYYY-MM-DD"
  std::string currency = "EUR";
  double import_t1_per_kwh = 0, import_t2_per_kwh = 0;
  double export_t1_per_kwh = 0, export_t2_per_kwh = 0;
  double gas_per_m3 = 0;
  double fixed_per_day = 0;
  double capacity_per_kw_month = 0;  // on the month's highest quarter-hour demand
  double capacity_min_kw = 2.5;      // the demand billed at least (Flanders: 2.5 kW)
  int line = 0;
};

}  // namespace mp::config
