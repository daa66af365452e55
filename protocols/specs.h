// The protocols as configuration sees them (protocols/list.h), and what is derived from
// them: sources, presets, serial line settings.
#pragma once

#include <string_view>
#include <vector>

#include "protocols/protocol.h"

namespace mp::protocols {

// Every protocol, in list order.
const std::vector<const Spec*>& all();
// The protocol of that name, or nullptr.
const Spec* find(std::string_view name);

// Every `source` any protocol takes, and every named preset of any protocol.
std::vector<std::string_view> all_sources();
std::vector<std::string_view> all_preset_names();
// Sets the line settings of the preset of that name (any protocol's); false when unknown.
bool apply_preset(std::string_view name, acquire::SerialSettings& s);
// The serial line settings a meter is read with: its preset (or its protocol's default),
// then its own baud / data_bits / parity / stop_bits.
acquire::SerialSettings serial_settings(const config::Meter& m);

}  // namespace mp::protocols
