// M-Bus (EN 13757-2 link layer frames, EN 13757-3 application layer) decoder.
//
// Pure: bytes in, a decoded frame or an error with its reason out. No I/O, no clocks, no
// exceptions on bad input; every index into the input is bounds-checked.
//
// Compatibility: for every frame of libmbus's test corpus (rscada/libmbus test/test-frames)
// the records, their storage number, tariff, subunit ("device"), unit, quantity and value in
// normalised base units are those of libmbus's `.norm.xml` output (see tests/unit/test_mbus.cpp
// for the comparison and for the deliberate differences: where libmbus emits an empty record
// we keep the raw value; where EN 13757-3:2013 says otherwise we follow the standard:
// 8-digit identification numbers, dates without "Z", invalid dates null, "every" markers;
// tests/unit/test_mbus_conformance.cpp holds one test per such rule).
//
// Supported:
//   frames     single character E5, short (10 C A CS 16), control (68 03 03 68 C A CI CS 16),
//              long (68 L L 68 C A CI data CS 16); both length fields, start/stop bytes and
//              checksum are checked.
//   CI fields  (EN 13757-3:2013 table 2) 0x72 / 0x76 variable data with 12-byte long header
//              (0x76: mode 2, multi-byte fields sent most significant byte first), 0x7A
//              variable data with 4-byte short header, 0x78 variable data without header,
//              0x73 / 0x77 fixed data structure (mode 1 / mode 2), 0x70 application error
//              (as libmbus reports it), 0x51 master-to-slave data send (records, no header).
//              Any other CI gives the error "unsupported CI 0xNN".
//   VIF        the primary table and both extension tables (0xFD, 0xFB) of EN 13757-3:2013
//              (process/mbus_vif.h); combinable VIFE correct the value after every table.
//   values     integer and BCD data keep their exact decimal value (mantissa, exp10) next to
//              the double; dates and times are the meter's local time (no zone on the wire).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/reading.h"

namespace mp::mbus {

enum class FrameType { ack, short_frame, control, long_frame };

// What the CI field says the user data is.
enum class Payload {
  none,       // ack, short frame, control frame without data
  variable,   // CI 0x72 / 0x76 / 0x7A / 0x78 / 0x51: data records
  fixed,      // CI 0x73 / 0x77: fixed data structure (two counters)
  app_error,  // CI 0x70: the slave reports an application error
};

// Function field of the DIF (bits 4-5), plus the two special DIFs 0x0F and 0x1F.
enum class Function {
  instantaneous,
  maximum,
  minimum,
  error_state,            // "value during error state"
  manufacturer_specific,  // DIF 0x0F: manufacturer data up to the end of the frame
  more_records_follow,    // DIF 0x1F: like 0x0F, and more records follow in the next telegram
  // fixed data structure only:
  actual,
  stored,
};

enum class ValueKind { number, text, none };

struct Record {
  // Raw coding, as received.
  uint8_t dif = 0;
  std::vector<uint8_t> dife;
  uint8_t vif = 0;
  std::vector<uint8_t> vife;
  std::string custom_vif;     // plain-text unit of VIF 0x7C / 0xFC (in reading order)
  std::vector<uint8_t> data;  // data bytes as received (LSB first in mode 1)
  std::string native_id;      // "DIF DIFE.. VIF VIFE.." in hex, e.g. "8C 10 04"

  // Decoded.
  Function function = Function::instantaneous;
  int64_t storage = 0;  // DIF bit 6 + 4 bits per DIFE
  int tariff = 0;       // 2 bits per DIFE (0 when there is no DIFE)
  int subunit = 0;      // 1 bit per DIFE ("device" in libmbus)
  bool has_dife = false;
  std::string quantity;  // "Energy", "Volume", "Voltage", ... (libmbus names)
  std::string unit;      // normalised base unit: "Wh", "J", "m^3", "°C", "W", "V", "A", "s", ...
  ValueKind kind = ValueKind::none;
  double value = 0;  // normalised value when kind == number
  // kind == number and exact: value is exactly mantissa * 10^exp10 (integer and BCD data
  // with a decimal scale); `value` is the nearest double.
  bool exact = false;
  int64_t mantissa = 0;
  int exp10 = 0;
  std::string text;             // kind == text: date "YYYY-MM-DD" / "YYYY-MM-DDThh:mm:ss" (the
                                // meter's local time, no zone), plain text (LVAR), or hex bytes
                                // ("0A 1B ..") for binary data
  bool is_time = false;         // a date/time record (types G, F, I)
  bool time_valid = false;      // a point in time: local_seconds is set
  bool time_invalid = false;    // IV bit set or a field out of range: kind none, no text
  bool time_recurring = false;  // "every" markers: the text has "*" for those fields
  int64_t local_seconds = 0;    // time_valid: seconds since 1970-01-01 00:00 of the meter's
                                // wall clock (not UTC: see to_reading)
  // False when libmbus's normaliser rejects the record (unknown VIF code such as 0x7B/0x7D,
  // DIF data field 8 "selection for readout"): the record is kept with its raw value and
  // quantity "Unknown VIF 0xNN" / "Selection for readout", unit "".
  bool normalised = true;
};

struct Header {
  bool present = false;  // false for CI 0x7A (short header), 0x78 and 0x51
  uint32_t id_bcd = 0;   // the 4 identification bytes, as a number (LSB first)
  std::string id;        // identification number: its 8 BCD digits ("%08X" of the BCD)
  uint16_t manufacturer_code = 0;
  std::string manufacturer;  // three letters
  uint8_t version = 0;
  uint8_t medium = 0;
  std::string medium_name;
  uint8_t access_number = 0;
  uint8_t status = 0;
  uint16_t signature = 0;
};

struct Frame {
  FrameType type = FrameType::ack;
  uint8_t control = 0;
  uint8_t address = 0;
  uint8_t ci = 0;
  Payload payload = Payload::none;
  Header header;
  std::vector<Record> records;
  bool more_records_follow = false;  // a DIF 0x1F was seen
  int app_error = -1;                // CI 0x70: error code (0 when the frame carries none)
  std::string app_error_text;        // CI 0x70: libmbus's text ("Application busy", ...)
};

struct DecodeResult {
  std::string error;  // empty on success; otherwise the reason ("checksum mismatch ...")
  Frame frame;
  bool ok() const { return error.empty(); }
};

// Decodes exactly one frame: `bytes` must hold one whole frame and nothing else.
DecodeResult decode(std::span<const uint8_t> bytes);

// Decodes the user data of a long frame given its CI (no link layer). Exposed for tests and
// for transports that strip the link layer themselves.
DecodeResult decode_user_data(uint8_t ci, std::span<const uint8_t> data);

// Link-layer framing helper: how long is the frame that starts at bytes[0]?
enum class FrameScan { complete, incomplete, garbage };
struct ScanResult {
  FrameScan status = FrameScan::incomplete;
  size_t size = 0;    // complete: the frame length; incomplete: bytes needed at least
  std::string error;  // garbage: why
};
ScanResult scan_frame(std::span<const uint8_t> bytes);

// Names of things, as libmbus prints them.
std::string medium_name(uint8_t medium);
std::string manufacturer_name(uint16_t code);
std::string app_error_name(int code);
std::string_view function_name(Function f);  // "instantaneous", "maximum", ...

// Converts a time of the meter's wall clock (seconds since 1970-01-01 00:00 counted in its
// zone) to UTC seconds; false when it cannot. M-Bus sends local times without a zone.
using LocalToUtc = bool (*)(int64_t local_seconds, int64_t& utc_seconds);

// Maps the frame to an mp::Reading (protocol "mbus"). Canonical names for the records that
// have one (see mbus_reading.cpp), every other record as "mbus_<native id>".
// Dates and times become meter_time_ns / time_ns only through `to_utc` (the meter's zone);
// without it they stay text. Returns false (and sets *why) for frames that carry no
// readings: ack, short, control, application error, master-to-slave frames.
bool to_reading(const Frame& frame, mp::Reading& out, std::string* why = nullptr,
                LocalToUtc to_utc = nullptr);

// The exact decimal text of mantissa * 10^exp10 ("-12.5", "1152921504606846976").
std::string decimal_text(int64_t mantissa, int exp10);

// One JSON object (one line, no newline) describing the frame, as `meterpipe decode mbus`
// prints it.
std::string to_json(const Frame& frame);

}  // namespace mp::mbus
