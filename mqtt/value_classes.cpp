#include "mqtt/value_classes.h"

#include <cctype>
#include <vector>

#include "common/canonical.h"

namespace mp::mqtt {
namespace {

// HA's device class of a canonical unit; `quantity` (the start of the name) only where one
// unit serves two quantities.
struct UnitClass {
  std::string_view unit;
  std::string_view quantity;  // "" = any
  const char* device_class;
};
constexpr UnitClass kUnitClasses[] = {
    {"W", "", "power"},
    {"kWh", "", "energy"},
    {"GJ", "", "energy"},
    {"V", "", "voltage"},
    {"A", "", "current"},
    {"Hz", "", "frequency"},
    {"var", "", "reactive_power"},
    {"VA", "", "apparent_power"},
    {"C", "", "temperature"},
    {"m3", "gas", "gas"},
    {"m3", "water", "water"},
    {"", "power_factor", "power_factor"},
};

const char* device_class_of(const canonical::Name& n) {
  for (const auto& u : kUnitClasses)
    if (u.unit == n.unit && n.name.substr(0, u.quantity.size()) == u.quantity &&
        (!u.quantity.empty() || !u.unit.empty()))
      return u.device_class;
  return "";
}

}  // namespace

ValueClass classify(std::string_view name) {
  const canonical::Name* n = canonical::find(name);
  if (!n) return {"", "measurement", ""};
  return {device_class_of(*n),
          n->kind == canonical::Kind::counter ? "total_increasing" : "measurement",
          display_unit(n->unit)};
}

std::string display_unit(std::string_view unit) {
  if (unit == "m3") return "m³";
  if (unit == "C") return "°C";
  if (unit == "deg") return "°";
  return std::string(unit);
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
