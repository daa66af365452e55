// Plain decoded values, as the pure decoders produce them. Converted to the protobuf
// `meterpipe::Reading` (proto/meterpipe.proto) at the edge of the process worker.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mp {

struct Value {
  std::string name;   // canonical name (common/canonical.h), or "<protocol>_<native id>"
  double number = 0;  // the value when !is_text
  std::string text;   // the value when is_text
  bool is_text = false;
  std::string unit;       // "W", "kWh", "V", "A", "m3", ... ("" for plain numbers)
  std::string native_id;  // OBIS code, Modbus register, M-Bus DIF/VIF
  int64_t time_ns = 0;    // the value's own timestamp (ns since epoch), 0 when absent
  // Set only when `number` cannot carry the value exactly (an integer beyond 2^53, ...): the
  // exact decimal text ("1152921504606846977"); `number` is then the nearest double.
  std::string exact;
};

struct Reading {
  std::string meter;
  std::string protocol;       // "dsmr", "modbus", "mbus", "sunspec"
  std::string device_id;      // meter identification when known
  int64_t meter_time_ns = 0;  // meter's own time, 0 when none
  int64_t receive_time_ns = 0;
  std::vector<Value> values;

  const Value* find(std::string_view name) const {
    for (const auto& v : values)
      if (v.name == name) return &v;
    return nullptr;
  }
};

}  // namespace mp
