// Builds SML 1.04 files the way a push meter sends them (OpenResponse, GetListResponse,
// CloseResponse), for the simulated meter and the tests. Follows the structure of the SML
// 1.04 specification (protocols/sml/README.md); the result goes through sml::wrap() for the
// transport layer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mp::sml {

// TL-encoded items appended to `out`.
namespace tlv {
void octets(std::string& out, std::string_view bytes);
void unsigned_n(std::string& out, uint64_t v, unsigned bytes);  // 1..8 bytes, big-endian
void signed_n(std::string& out, int64_t v, unsigned bytes);
void boolean(std::string& out, bool v);
void list(std::string& out, size_t elements);
inline void absent(std::string& out) { out += '\x01'; }
}  // namespace tlv

// One value of a GetListResponse.
struct OutEntry {
  uint8_t obis[6] = {};
  int unit = -1;  // DLMS unit code, -1 = not sent
  int scaler = 0;
  bool has_scaler = true;
  enum class Kind { signed_, unsigned_, bytes } kind = Kind::signed_;
  int64_t number = 0;
  unsigned bytes = 4;   // integer width
  std::string text;     // octet string value
  int64_t status = -1;  // -1 = not sent
};

struct OutFile {
  std::string server_id;     // e.g. 0A 01 'E' 'M' 'H' 00 + 4-byte serial number
  uint32_t transaction = 1;  // first transaction id; the messages count up from it
  uint32_t sec_index = 0;    // actSensorTime (a second counter)
  std::vector<OutEntry> entries;
};

// The messages of one file (no transport layer), each with its CRC-16/X-25.
std::string build_messages(const OutFile& f);

// build_messages() wrapped in the transport layer: the bytes a meter sends.
std::string build_frame(const OutFile& f);

}  // namespace mp::sml
