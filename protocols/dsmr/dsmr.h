// DSMR / P1 telegram decoder (Dutch DSMR 2.2 … 5.0.2, Belgian e-MUCS, Luxembourg Smarty and
// other IEC 62056-21 mode D style telegrams). Pure: bytes in, a reading or an error out; no
// clocks, files or sockets; never reads out of bounds and never throws on bad input.
//
// A telegram is "/<header>\r\n\r\n<lines>\r\n!<crc>\r\n". The CRC (CRC-16/ARC, 1 to 4 hex
// digits, any case) covers '/' through '!' inclusive; DSMR 2.2/3 telegrams have none ("!" alone).
// Line ends may be CRLF or LF; the telegram may end right after its CRC digits (end of a file or
// of a decrypted frame). Bytes after the end line are ignored.
//
// decode() returns false when the telegram cannot be used at all: no header, no end line, a
// damaged CRC field or a CRC mismatch; `errors` then says why and `reading.values` is empty.
// Otherwise it returns true; a single line that cannot be parsed is reported in `errors` (with
// its line number) and skipped while every other line still decodes.
//
// Naming (common/canonical.h): canonical names for the OBIS codes listed in dsmr.cpp (energy_import_t1_kwh,
// power_import_w, voltage_l1_v, gas_m3, …), with kW converted to W and Wh/MWh to kWh; every value
// keeps its OBIS code (without a "*255" suffix) in native_id. Derived values:
//   energy_import_kwh / energy_export_kwh = T1 + T2 when the meter sends no 1.8.0 / 2.8.0
//     (native_id "1-0:1.8.1+1-0:1.8.2", "1-0:2.8.1+1-0:2.8.2");
//   power_net_w = power_import_w - power_export_w (native_id "1-0:1.7.0-1-0:2.7.0").
//   Sums are exact decimals: the double is the nearest one to the exact sum (23923.654, not
//   23923.654000000002); Value::exact holds the decimal text when the double cannot.
// "1-1:" electricity codes (channel 1, Swiss Sagemcom XT211) are named like their "1-0:"
// counterparts (native_id keeps the code as sent); when a telegram sends both, the "1-1:"
// one is kept as "dsmr_1-1:...".
// M-Bus channels (0-n:24.2.1, 0-n:24.2.3, DSMR 2.2/3 0-n:24.3.0 with the value on the next
// line) are named from the channel's device type 0-n:24.1.0 (3 gas → gas_m3, 7 water →
// water_m3, 4 or 12 heat → heat_gj) or, without a type, from the unit (m3 → gas, GJ → heat); they
// carry their own timestamp in time_ns. The first meter of a kind gets the plain name, the next
// ones "gas_2_m3", "gas_3_m3", … in telegram order. A channel value without a unit (an empty slot,
// e.g. "(700101010000W)(00000000)") gets no canonical name: it is kept as "dsmr_<obis>".
// Known non-canonical lines: equipment_id (0-0:96.1.1 / 0-0:96.1.0, as sent; reading.device_id is
// the hex-decoded ASCII when it decodes to printable text), text_message (0-0:96.13.0, hex decoded
// to text when that is UTF-8, else the hex digits as sent: a message of 0xFF bytes is no text),
// text_message_code (0-0:96.13.1, as sent), dsmr_version (1-3:0.2.8),
// power_failure_log (1-0:99.97.0) and demand_max_history (0-0:98.1.0) as the raw value groups
// "(…)(…)…", frequency_hz (1-0:14.7.0), power_factor (1-0:13.7.0) and power_factor_l1.._l3.
// Any other OBIS code is never dropped: it is kept as "dsmr_<obis>" (e.g. "dsmr_1-0:3.8.0"), as a
// number with its unit when its single value is "<number>*<unit>", else as text (all of its
// value groups "(…)(…)" when there are several, the bare value when there is one).
// Texts (and units, the header, device_id) taken from the telegram as sent are UTF-8 when the
// bytes are, else read as ISO 8859-1: every text out of the decoder is valid UTF-8.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/civil.h"
#include "common/reading.h"

namespace mp::dsmr {

struct Result {
  bool crc_present = false;  // telegram had CRC digits after '!'
  bool crc_ok = false;       // they matched (false when absent)
  std::string header;        // header line without line end, e.g. "/ISk5\2MT382-1000"
  mp::Reading reading;       // protocol "dsmr", meter_time_ns from 0-0:1.0.0, device_id
  std::vector<std::string> errors;
};

// Decodes one telegram. See the file comment for the return value. `out` is reset first.
bool decode(std::string_view telegram, Result& out);

// CRC-16/ARC (poly 0x8005 reflected = 0xA001, init 0, no final xor).
uint16_t crc16(std::string_view data);

// "YYMMDDhhmmssX" (X = 'W': UTC+1, 'S': UTC+2) or "YYMMDDhhmmss" (Dutch local time, summer time
// from the EU rules) to ns since the Unix epoch (UTC). YY 00-68 is 2000-2068, 69-99 is 1969-1999
// (as strptime's %y, so an empty M-Bus slot's 700101010000W is the epoch). False when malformed.
bool parse_timestamp(std::string_view text, int64_t& unix_ns);

// True when the given UTC instant falls in EU summer time (last Sunday of March 01:00 UTC to last
// Sunday of October 01:00 UTC).
bool eu_summer_time(int64_t unix_seconds);

// Days since 1970-01-01 of a proleptic Gregorian date (month 1-12): common/civil.h.
using mp::days_from_civil;

}  // namespace mp::dsmr
