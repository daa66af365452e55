// The one table that says how Home Assistant should treat each canonical value: device_class,
// state_class and unit. `measurement` for power, voltage, current, ...; `total_increasing`
// for energy and gas/water counters, which is what HA's Energy dashboard accepts.
#pragma once

#include <string>
#include <string_view>

namespace mp::mqtt {

struct ValueClass {
  const char* prefix;        // the canonical name starts with this
  const char* suffix;        // ... and ends with this ("" = anything)
  const char* device_class;  // HA sensor device_class ("" = none)
  const char* state_class;   // "measurement" | "total_increasing"
  const char* unit;          // HA unit_of_measurement ("" = the reading's own unit)
};

// The first row that matches `name`, or the fallback row (no device class, measurement,
// the reading's unit) for names the table does not know.
const ValueClass& classify(std::string_view name);

// "energy_import_t1_kwh" -> "Energy import t1": the name HA shows.
std::string display_name(std::string_view name);

}  // namespace mp::mqtt
