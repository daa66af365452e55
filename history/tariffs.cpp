#include "history/tariffs.h"

#include <algorithm>

namespace mp::history {

namespace {

double kwh(const std::optional<int64_t>& milli) { return milli ? from_milli(*milli) : 0.0; }

// Energy split by tariff when the meter has the tariff registers, else all at tariff 1.
double energy_cost(const Counters& d, int t1, int t2, int total, double p1, double p2) {
  if (d[t1] || d[t2]) return kwh(d[t1]) * p1 + kwh(d[t2]) * p2;
  return kwh(d[total]) * p1;
}

}  // namespace

const config::Tariff* tariff_for(const std::vector<config::Tariff>& tariffs,
                                 const std::string& date) {
  const config::Tariff* found = nullptr;
  for (const auto& t : tariffs)
    if (t.valid_from <= date) found = &t;
  return found;
}

std::optional<double> day_cost(const std::vector<config::Tariff>& tariffs, const DayRow& d) {
  const config::Tariff* t = tariff_for(tariffs, d.day.date);
  if (!t) return std::nullopt;
  const Counters& x = d.delta;
  return energy_cost(x, kImportT1, kImportT2, kImport, t->import_t1_per_kwh, t->import_t2_per_kwh) -
         energy_cost(x, kExportT1, kExportT2, kExport, t->export_t1_per_kwh, t->export_t2_per_kwh) +
         kwh(x[kGas]) * t->gas_per_m3 + t->fixed_per_day;
}

double capacity_cost(const std::vector<config::Tariff>& tariffs,
                     const std::vector<std::string>& dates, int64_t peak_w) {
  double sum = 0;
  const double peak_kw = double(peak_w) / 1000.0;
  for (const auto& date : dates)
    if (const config::Tariff* t = tariff_for(tariffs, date))
      sum += t->capacity_per_kw_month / days_in_month(date) * std::max(peak_kw, t->capacity_min_kw);
  return sum;
}

}  // namespace mp::history
