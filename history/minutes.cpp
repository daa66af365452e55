#include "history/minutes.h"

#include <algorithm>
#include <cmath>

namespace mp::history {

namespace {

constexpr std::string_view kNames[kCounters] = {"energy_import_t1_kwh",
                                                "energy_import_t2_kwh",
                                                "energy_import_kwh",
                                                "energy_export_t1_kwh",
                                                "energy_export_t2_kwh",
                                                "energy_export_kwh",
                                                "gas_m3",
                                                "water_m3",
                                                "heat_gj"};
constexpr std::string_view kColumns[kCounters] = {"imp_t1", "imp_t2", "imp",   "exp_t1", "exp_t2",
                                                  "exp",    "gas",    "water", "heat"};

std::optional<double> number(const Reading& r, std::string_view name) {
  const Value* v = r.find(name);
  if (!v || v->is_text || !std::isfinite(v->number)) return std::nullopt;
  return v->number;
}

std::optional<double> net_power(const Reading& r) {
  if (auto p = number(r, "power_net_w")) return p;
  auto imp = number(r, "power_import_w"), exp = number(r, "power_export_w");
  if (imp || exp) return imp.value_or(0) - exp.value_or(0);
  return std::nullopt;
}

std::optional<double> phase_power(const Reading& r, int i) {
  static constexpr std::string_view kImp[3] = {"power_l1_w", "power_l2_w", "power_l3_w"};
  static constexpr std::string_view kExp[3] = {"power_export_l1_w", "power_export_l2_w",
                                               "power_export_l3_w"};
  auto imp = number(r, kImp[i]), exp = number(r, kExp[i]);
  if (!imp && !exp) return std::nullopt;
  return imp.value_or(0) - exp.value_or(0);
}

void add_power(MinuteRow& row, const Reading& r) {
  if (auto p = net_power(r)) {
    row.p_min = row.p_n ? std::min(row.p_min, *p) : *p;
    row.p_max = row.p_n ? std::max(row.p_max, *p) : *p;
    row.p_sum += *p;
    ++row.p_n;
  }
  for (int i = 0; i < 3; ++i)
    if (auto p = phase_power(r, i)) {
      row.phase_sum[i] += *p;
      ++row.phase_n[i];
    }
}

void add_voltage_current(MinuteRow& row, const Reading& r) {
  for (std::string_view n : {"voltage_v", "voltage_l1_v", "voltage_l2_v", "voltage_l3_v"})
    if (auto v = number(r, n)) {
      row.v_min = row.v_min ? std::min(*row.v_min, *v) : *v;
      row.v_max = row.v_max ? std::max(*row.v_max, *v) : *v;
    }
  for (std::string_view n : {"current_a", "current_l1_a", "current_l2_a", "current_l3_a"})
    if (auto a = number(r, n)) row.i_max = row.i_max ? std::max(*row.i_max, *a) : *a;
}

void add_counters(MinuteRow& row, const Reading& r) {
  for (int c = 0; c < kCounters; ++c)
    if (auto v = number(r, kNames[c]); v && *v >= 0 && *v < 9e12) row.counters[c] = to_milli(*v);
}

}  // namespace

std::string_view counter_name(int c) { return kNames[c]; }
std::string_view counter_column(int c) { return kColumns[c]; }

int64_t to_milli(double v) { return int64_t(std::llround(v * 1000.0)); }
double from_milli(int64_t v) { return double(v) / 1000.0; }

std::optional<double> MinuteRow::p_avg() const {
  if (!p_n) return std::nullopt;
  return p_sum / double(p_n);
}

std::optional<double> MinuteRow::phase_avg(int i) const {
  if (!phase_n[i]) return std::nullopt;
  return phase_sum[i] / double(phase_n[i]);
}

int64_t reading_time_ns(const Reading& r) {
  return r.meter_time_ns > 0 ? r.meter_time_ns : r.receive_time_ns;
}

void add_reading(MinuteRow& row, const Reading& r, int64_t time_ns) {
  const int64_t ms = time_ns / 1'000'000;
  if (row.n == 0 || ms < row.first_ms) row.first_ms = ms;
  if (row.n == 0 || ms >= row.last_ms) {
    row.last_ms = ms;
    add_counters(row, r);  // the counters at the end of the minute
  }
  ++row.n;
  add_power(row, r);
  add_voltage_current(row, r);
}

}  // namespace mp::history
