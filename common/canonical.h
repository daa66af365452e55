// The canonical value names: one name per quantity, the same whatever the protocol
// (docs/ARCHITECTURE.md, "Canonical values"). Decoders emit these names; relay rules,
// upload, serve, mqtt and history read them. A value a decoder has no canonical name for
// is named "<protocol>_<native id>" (e.g. "dsmr_1-0:3.8.0") and is not in this table.
// tests/unit/test_canonical.cpp checks that every name the decoders emit is here.
#pragma once

#include <span>
#include <string_view>

namespace mp::canonical {

enum class Kind {
  gauge,    // an instantaneous measurement (power, voltage, current, frequency, ...)
  counter,  // a register that only grows (energy, gas, water, heat, event counts)
  state,    // a number that names a state (the tariff in force)
  text,     // text (equipment id, messages, logs)
};

struct Name {
  std::string_view name;
  std::string_view unit;  // "W", "kWh", "V", "A", "Hz", "m3", "GJ", "var", "VA", "kvarh",
                          // "%", "C" or "" (a plain number or text)
  Kind kind;
  std::string_view description;
};

// Every canonical name, grouped by quantity.
std::span<const Name> all();
// The entry of that name, or nullptr (a native name or an unknown one).
const Name* find(std::string_view name);

}  // namespace mp::canonical
