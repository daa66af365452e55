// libFuzzer: Modbus register blocks through every meter map, and SunSpec blocks.
// Input: [map index][fc][start hi][start lo] then register bytes.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/reading.h"
#include "protocols/modbus/modbus_maps.h"
#include "protocols/modbus/sunspec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const auto maps = mp::modbus::all_maps();
  const auto& map = *maps[data[0] % maps.size()];
  const uint8_t fc = (data[1] & 1) ? 4 : 3;
  const uint16_t start = uint16_t(data[2] << 8 | data[3]);
  std::vector<mp::Value> out;
  mp::modbus::decode_bytes(map, fc, start, data + 4, size - 4, out);
  mp::modbus::complete(out);
  out.clear();
  mp::sunspec::decode_block_bytes(start, data + 4, size - 4, out);
  return 0;
}
