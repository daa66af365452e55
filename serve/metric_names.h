// Prometheus names for meterpipe values and worker health (pure).
//
// Names follow the Prometheus conventions that `promtool check metrics` lints: snake_case,
// the unit spelled out at the end (watts, volts, amperes, hertz, seconds, bytes), no
// abbreviated units (_s, _ms, _mb, ...), `_total` on counters and only on counters, no
// `_count`/`_sum`/`_bucket` on anything else. Cumulative meter registers (kWh, kvarh, m³,
// GJ) are counters; everything else is a gauge.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mp::serve {

enum class MetricType { gauge, counter };

struct MetricName {
  std::string name;  // full metric name, e.g. "meterpipe_power_import_watts"
  MetricType type = MetricType::gauge;
  double scale = 1;  // multiply the source value by this (ms -> seconds, MiB -> bytes)
};

// "voltage_l1_v" -> {"voltage_l1_volts", 1}; "age_ms" -> {"age_seconds", 0.001};
// lower-cases, turns anything outside [a-z0-9] into '_', spells abbreviated units out.
// Empty when nothing usable is left.
MetricName prom_base(std::string_view raw);

// True for a unit token (the last word of a canonical value name) of a cumulative register.
bool is_counter_unit(std::string_view last_token);

// Metric of a reading value with a canonical name (docs/ARCHITECTURE.md, "Canonical values"):
// "power_import_w" -> meterpipe_power_import_watts (gauge), "energy_import_kwh" ->
// meterpipe_energy_import_kwh_total (counter), "gas_m3" -> meterpipe_gas_m3_total,
// "power_failures" / "voltage_sags_l1" (event counts) -> ..._total counters.
// nullopt for protocol-native leftovers ("dsmr_0-0:96.13.0", "modbus_ir:0x0000", ...);
// those are exported as meterpipe_other_value{meter,name,unit}.
std::optional<MetricName> value_metric(std::string_view value_name);

// Worker health: a counter "crc_errors" -> meterpipe_worker_crc_errors_total, a gauge
// "oldest_unsent_age_s" -> meterpipe_worker_oldest_unsent_age_seconds.
MetricName worker_counter_metric(std::string_view counter);
MetricName worker_gauge_metric(std::string_view gauge);

// Splits a health key that ends in "_<subject>" for one of `subjects` (meter or relay
// names): "frames_home" with {"home"} -> {"frames", "home"}. The longest subject wins.
// Returns false (and leaves the outputs alone) when none matches.
bool split_subject(std::string_view key, const std::vector<std::string>& subjects,
                   std::string& base, std::string& subject);

// True when `name` is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*).
bool valid_metric_name(std::string_view name);

// The lint rules of `promtool check metrics` that a name alone can break; returns the
// first problem found or "" when clean. Used by the tests.
std::string lint_name(std::string_view name, MetricType type);

}  // namespace mp::serve
