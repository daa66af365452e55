// Modbus and SunSpec meters as configuration sees them (protocols/modbus/README.md).
#include "protocols/protocol.h"

namespace mp::protocols::modbus {

namespace {

using acquire::Parity;

void check_modbus(const config::Meter& m, std::vector<KeyProblem>& problems) {
  if (m.type.empty()) problems.push_back({"type", " (protocol = \"modbus\")", true});
}

const std::vector<std::string_view> kSources = {"serial", "tcp"};
constexpr std::string_view kSourcesNote = "Modbus meters are read over \"serial\" (RTU) or \"tcp\"";
constexpr SerialPreset kRtuDefault = {"", 9600, 8, Parity::none, 1, "Modbus RTU"};

}  // namespace

extern const Spec spec, sunspec_spec;
const Spec spec{
    .id = Id::modbus,
    .name = "modbus",
    .family = "modbus",
    .summary = "Modbus RTU/TCP meters with a register map (type = sdm630, ...)",
    .sources = kSources,
    .sources_note = kSourcesNote,
    .presets = {},
    .serial_default = kRtuDefault,
    .check = check_modbus,
};
const Spec sunspec_spec{
    .id = Id::sunspec,
    .name = "sunspec",
    .family = "modbus",
    .summary = "SunSpec inverters and meters (models 1, 101-103, 111-113, 201-204)",
    .sources = kSources,
    .sources_note = kSourcesNote,
    .presets = {},
    .serial_default = kRtuDefault,
    .check = nullptr,
};

}  // namespace mp::protocols::modbus
