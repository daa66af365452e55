// Costs (pure): a day costs its import per tariff times the import prices, minus its export
// times the export prices, plus gas and the fixed price per day, at the [[tariff]] valid on
// that day (so a price change keeps earlier days right). A month costs the sum of its days
// plus the capacity price on the month's highest quarter-hour demand, spread over the days by
// the price valid on each (capacity_per_kw_month / days in the month per day with data).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/history_config.h"
#include "history/days.h"

namespace mp::history {

// The tariff valid on `date` (the last valid_from <= date), or nullptr; `tariffs` sorted.
const config::Tariff* tariff_for(const std::vector<config::Tariff>& tariffs,
                                 const std::string& date);

// The cost of a day's energy, gas and fixed price; nullopt without a tariff for its date.
std::optional<double> day_cost(const std::vector<config::Tariff>& tariffs, const DayRow& d);

// The capacity part of a month's cost: `peak_w` (the month's highest quarter hour; at least
// the day's tariff's capacity_min_kw) times each day's capacity price / days in the month,
// summed over `dates` (the days with data).
double capacity_cost(const std::vector<config::Tariff>& tariffs,
                     const std::vector<std::string>& dates, int64_t peak_w);

}  // namespace mp::history
