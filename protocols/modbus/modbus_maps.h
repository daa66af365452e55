// Modbus meter register maps as data, and the pure decoder that turns a block of registers
// (as read from one request) into canonical readings (docs/ARCHITECTURE.md, "Canonical values").
//
// Each map is a table of registers: canonical name, address (0-based, as on the wire),
// function code (3 = holding, 4 = input), data type, scale (value = raw * scale) and unit.
// Native ids are "ir:0x0034" (input register) or "hr:0x0034" (holding register).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/reading.h"

namespace mp::modbus {

enum class DataType : uint8_t { f32, i16, u16, i32, u32, u64 };
// Word order of multi-register values. Bytes inside a register are always big-endian.
enum class WordOrder : uint8_t { high_first, low_first };

// What a register means beyond its own value.
enum class Role : uint8_t {
  plain,
  // Signed total active power, positive = import. Emits power_net_w and derives
  // power_import_w = max(0, p) and power_export_w = max(0, -p).
  net_power,
  // L1 voltage used by scan() to identify the meter (plausible 90..270 V).
  probe_voltage,
};

struct RegisterDef {
  const char* name;  // canonical name
  uint16_t address;  // 0-based register address
  uint8_t fc;        // 3 holding, 4 input
  DataType type;
  double scale;  // value = raw * scale
  const char* unit;
  Role role = Role::plain;
};

struct MeterMap {
  std::string_view type;         // "sdm630", ...
  std::string_view description;  // "Eastron SDM630"
  std::string_view source;       // where the register facts come from
  WordOrder order = WordOrder::high_first;
  // ABB style: an all-ones unsigned value or the maximum positive signed value means
  // "not available" and the value is left out.
  bool max_is_invalid = false;
  std::span<const RegisterDef> regs;
};

// Number of 16-bit registers a type occupies.
constexpr uint16_t register_count(DataType t) {
  switch (t) {
    case DataType::i16:
    case DataType::u16:
      return 1;
    case DataType::f32:
    case DataType::i32:
    case DataType::u32:
      return 2;
    case DataType::u64:
      return 4;
  }
  return 1;
}

// All maps, in the order scan() probes them.
std::span<const MeterMap* const> all_maps();
// Type names (one per map, canonical spelling).
std::vector<std::string_view> map_types();
// Case-insensitive lookup of a type name or alias ("sdm" = sdm630, "inepro" = pro380, ...).
const MeterMap* find_map(std::string_view type);

// "ir:0x0034" / "hr:0x0034".
std::string native_id(uint8_t fc, uint16_t address);

// Decodes every register of `map` with function code `fc` that lies entirely inside the
// block [start_address, start_address + count). Values are appended to `out`. NaN/inf floats
// and invalid sentinels are skipped. Also adds power_net_w from power_import_w and
// power_export_w when both were decoded here and no net value was. Returns the number of
// values appended. Never fails: registers outside the block are simply not decoded.
size_t decode(const MeterMap& map, uint8_t fc, uint16_t start_address, const uint16_t* regs,
              size_t count, std::vector<mp::Value>& out);

// Same, for register bytes big-endian as on the wire (2 bytes per register; an odd trailing
// byte is ignored).
size_t decode_bytes(const MeterMap& map, uint8_t fc, uint16_t start_address, const uint8_t* bytes,
                    size_t nbytes, std::vector<mp::Value>& out);

// After all blocks of one poll are decoded into `values`: derives power_net_w from
// power_import_w - power_export_w when net is absent and both are present. Returns true
// when it added a value.
bool complete(std::vector<mp::Value>& values);

// Raw value of one register definition at regs[0..]; false when invalid (NaN, sentinel).
bool decode_register(const MeterMap& map, const RegisterDef& def, const uint16_t* regs,
                     double& value);

}  // namespace mp::modbus
