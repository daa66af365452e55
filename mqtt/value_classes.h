// How Home Assistant (and Homie) should treat each value, derived from the one canonical
// table (common/canonical.*, docs/ARCHITECTURE.md "Canonical values"): its unit and its kind
// say everything. state_class: `total_increasing` for counters (energy, gas, water, heat,
// event counts: what HA's Energy dashboard accepts), `measurement` for the rest.
// device_class: from the unit (W -> power, kWh -> energy, V -> voltage, ...); m³ is gas or
// water by the quantity the name starts with, a unitless power_factor* is power_factor.
// A name the canonical table does not know (a native "<protocol>_<id>") gets no device
// class, `measurement` and the reading's own unit.
#pragma once

#include <string>
#include <string_view>

namespace mp::mqtt {

struct ValueClass {
  const char* device_class;  // HA sensor device_class ("" = none)
  const char* state_class;   // "measurement" | "total_increasing"
  std::string unit;          // as HA and Homie write it (m³, °C); "" = the reading's own
};

ValueClass classify(std::string_view name);

// A unit as HA and Homie write it: "m3" -> "m³", "C" -> "°C", "deg" -> "°"; others as given.
std::string display_unit(std::string_view unit);

// "energy_import_t1_kwh" -> "Energy import t1": the name HA shows.
std::string display_name(std::string_view name);

}  // namespace mp::mqtt
