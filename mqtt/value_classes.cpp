#include "mqtt/value_classes.h"

#include <cctype>
#include <vector>

namespace mp::mqtt {
namespace {

// Order matters: the first match wins (reactive before plain energy/power, power_factor and
// the event counters before power_*).
const ValueClass kTable[] = {
    {"energy_reactive_", "_kvarh", "", "total_increasing", "kvarh"},
    {"energy_", "_kwh", "energy", "total_increasing", "kWh"},
    {"gas", "_m3", "gas", "total_increasing", "m³"},
    {"water", "_m3", "water", "total_increasing", "m³"},
    {"heat", "_gj", "energy", "total_increasing", "GJ"},
    {"power_failure", "", "", "total_increasing", ""},
    {"long_power_failures", "", "", "total_increasing", ""},
    {"voltage_sags", "", "", "total_increasing", ""},
    {"voltage_swells", "", "", "total_increasing", ""},
    {"power_factor", "", "power_factor", "measurement", ""},
    {"power_reactive", "_var", "reactive_power", "measurement", "var"},
    {"power_apparent", "_va", "apparent_power", "measurement", "VA"},
    {"power_", "_w", "power", "measurement", "W"},
    {"voltage_thd", "_pct", "", "measurement", "%"},
    {"voltage_", "_v", "voltage", "measurement", "V"},
    {"current_", "_a", "current", "measurement", "A"},
    {"frequency", "_hz", "frequency", "measurement", "Hz"},
    {"temperature", "_c", "temperature", "measurement", "°C"},
};
const ValueClass kFallback{"", "", "", "measurement", ""};

bool ends_with(std::string_view s, std::string_view suf) {
  return s.size() >= suf.size() && s.substr(s.size() - suf.size()) == suf;
}

}  // namespace

const ValueClass& classify(std::string_view name) {
  for (const auto& row : kTable)
    if (name.rfind(row.prefix, 0) == 0 && ends_with(name, row.suffix)) return row;
  return kFallback;
}

std::string display_name(std::string_view name) {
  static const char* const kUnits[] = {"w",  "kwh", "kvarh", "v", "a",  "m3",
                                       "hz", "var", "va",    "c", "gj", "pct"};
  std::vector<std::string> words;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('_', start);
    if (end == std::string_view::npos) end = name.size();
    if (end > start) words.emplace_back(name.substr(start, end - start));
    start = end + 1;
  }
  if (words.size() > 1)
    for (const char* u : kUnits)
      if (words.back() == u) {
        words.pop_back();
        break;
      }
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  if (!out.empty()) out[0] = char(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

}  // namespace mp::mqtt
