// libFuzzer target: the DSMR decoder on arbitrary bytes, and on the same bytes re-signed with a
// correct CRC so that the line parser is reached too. Checks a few invariants.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocols/dsmr/dsmr.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  mp::dsmr::Result r;
  bool ok = mp::dsmr::decode(in, r);
  if (!ok && (r.errors.empty() || !r.reading.values.empty())) std::abort();
  if (ok && r.crc_present && !r.crc_ok) std::abort();

  // Re-sign: everything up to the first line-start '!' (or all) + "!" + CRC.
  size_t bang = in.find("\n!");
  std::string t(in.substr(0, bang == std::string_view::npos ? in.size() : bang + 1));
  if (t.empty() || t[0] != '/') t.insert(0, "/XXX5\r\n\r\n");
  if (t.back() != '\n') t += "\r\n";
  t += '!';
  char crc[8];
  std::snprintf(crc, sizeof crc, "%04X\r\n", mp::dsmr::crc16(t));
  t += crc;
  if (mp::dsmr::decode(t, r)) {
    for (const auto& v : r.reading.values)
      if (v.name.empty() || v.native_id.empty()) std::abort();
  }
  return 0;
}
