// SML 1.04 decoder (protocols/sml/README.md): a transport frame in, the meter's values out.
// Pure: no clocks, files or sockets; every read is bounds-checked; bad bytes give an error,
// never an exception or a read out of bounds.
//
// A frame carries a list of SML_Messages (transactionId, groupNo, abortOnError, body, crc16,
// endOfSmlMsg). Bodies decoded: OpenResponse (server id, reqFileId, refTime), GetListResponse
// (server id, actSensorTime, the value list) and CloseResponse; other bodies are skipped
// whole. Values are TL-encoded (type/length bytes, several of them for long items): octet
// strings, booleans, signed and unsigned integers of 1-8 bytes, lists. A list entry holds the
// OBIS code, status, valTime, DLMS unit code, scaler (power of ten) and the value.
// Tolerated deviations of real meters: integers shorter or longer than the spec's type (a
// 3-byte unsigned, a u32 message tag), a valTime sent as a bare number (Holley DTZ541),
// message CRCs in CRC-16/KERMIT (Holley): message CRCs are not checked, the transport CRC
// covers every byte.
//
// to_reading() names the values (common/canonical.h); see sml_reading.cpp for the table.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/reading.h"

namespace mp::sml {

// An SML_Time: seconds since the Unix epoch (timestamp, localTimestamp in UTC) or a
// second counter of the meter (secIndex, no calendar time).
struct Time {
  enum class Kind { none, sec_index, timestamp } kind = Kind::none;
  uint64_t seconds = 0;
};

// One SML_ListEntry.
struct Entry {
  std::string obj_name;  // raw bytes (6 for an OBIS code)
  bool has_status = false;
  uint64_t status = 0;
  Time val_time;
  bool has_unit = false;
  uint8_t unit = 0;  // DLMS unit code (27 W, 30 Wh, 33 A, 35 V, 44 Hz, ...)
  bool has_scaler = false;
  int8_t scaler = 0;
  enum class Kind { absent, number, bytes, boolean } kind = Kind::absent;
  bool negative = false;   // number: sign
  uint64_t magnitude = 0;  // number: absolute value
  std::string bytes;       // octet string
  bool flag = false;       // boolean

  bool is_obis() const { return obj_name.size() == 6; }
  // "A-B:C.D.E*F" (the "*F" left out when F = 255); the hex bytes when not an OBIS code.
  std::string obis_text() const;
};

struct File {
  std::string server_id;  // raw bytes (from the GetListResponse, else the OpenResponse)
  std::string req_file_id;
  Time act_sensor_time;  // of the (first) GetListResponse
  std::vector<Entry> entries;
  unsigned messages = 0, open_responses = 0, get_list_responses = 0, close_responses = 0,
           other_messages = 0;
};

// Decodes the messages of one frame's payload (sml_transport.h's unwrap()). False with
// `error` set when a message is malformed; the entries of the messages before it are kept.
bool decode_messages(std::span<const uint8_t> payload, File& out, std::string& error);

// unwrap() then decode_messages(): one transport frame as it came off the wire.
bool decode_frame(std::span<const uint8_t> frame, File& out, std::string& error);

// Names the entries (canonical names where the table has them, "sml_<obis>" otherwise) and
// fills a Reading: protocol "sml", device_id = server id in hex, meter time from a
// timestamp actSensorTime. Notes what it could not use in `notes` (optional).
void to_reading(const File& f, Reading& out, std::vector<std::string>* notes = nullptr);

// "0a01454d48..." lower-case hex of bytes.
std::string hex(std::string_view bytes);

// The DLMS unit symbol ("W", "Wh", "V", ...; "" for 255 = count and unknown codes).
std::string_view unit_symbol(uint8_t code);

}  // namespace mp::sml
