// InfluxDB line protocol encoder (pure: no clock, no I/O).
//
// One `meterpipe::Reading` becomes one line per measurement:
//
//   electricity,meter=home,site=a energy_import_t1_kwh=1234.567,power_net_w=-830,tariff=2i
//   1700000000000000000
//
// Rules (documented here, asserted by tests/unit/test_line_protocol.cpp):
// - Measurement: `options.measurement` ("electricity"), or `options.measurement_for[name]` for a
//   value whose canonical name is listed there (e.g. gas_m3 -> "gas"). A reading whose values go
//   to several measurements gives several lines.
// - Tags: `meter` (the reading's meter name) plus `options.tags`, sorted by key (byte order, as
//   InfluxDB recommends). A tag with an empty value is left out (line protocol has no empty tag
//   values). A user tag named `meter` is an error.
// - Fields: the canonical value names. Numbers are floats written in the shortest form that
//   reads back to the same double (std::to_chars), except the integer counts listed in
//   `is_integer_field()` (tariff, power_failures, long_power_failures, voltage_sags_*,
//   voltage_swells_*), which carry the `i` suffix; such a value that is not a whole number
//   is skipped (an integer field must never change type). Text values become string fields.
//   NaN and +-inf are skipped (line protocol cannot carry them). A second value with the same
//   name in one reading is skipped. Skipped values are listed in `EncodeResult::skipped`.
// - Timestamp: the meter's own time (meter_time_ns) when it is non-zero and either the system
//   clock is not synchronised (clock_synced false: the meter is the better clock) or it lies
//   within +-1 day of receive_time_ns; otherwise receive_time_ns. A value routed to a
//   measurement other than the default one and carrying its own time (time_ns, e.g. the gas
//   meter's capture time) uses that time, so a gas reading repeated in every telegram is one
//   point per capture. Written in `options.precision` (floor division of ns).
// - Escaping (InfluxDB line protocol): measurement: comma and space; tag keys, tag values and
//   field keys: comma, equals sign and space; string field values: double quote and backslash.
//   A newline or carriage return in any name, tag or string is refused (error), never altered.
//   A backslash in a measurement/tag/field key is literal, but one that ends the element or
//   precedes a character that must be escaped is refused: the parser would read it as an
//   escape. A measurement starting with '#' (a comment line) is refused.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace meterpipe {
class Reading;
class Envelope;
}  // namespace meterpipe

namespace mp::upload {

enum class Precision { s, ms, us, ns };

// "s", "ms", "us", "ns" (also "u" for InfluxDB 1.x's microsecond spelling). False otherwise.
bool parse_precision(std::string_view text, Precision& out);
// The query parameter value: "s", "ms", "us", "ns".
const char* precision_name(Precision p);
// ns since the epoch in the given precision (floor division).
int64_t convert_time(int64_t time_ns, Precision p);

struct LineProtocolOptions {
  std::string measurement = "electricity";
  // Canonical value name -> measurement, e.g. {"gas_m3": "gas", "water_m3": "water"}.
  std::map<std::string, std::string> measurement_for;
  // Static user tags added to every line (besides `meter`).
  std::map<std::string, std::string> tags;
  Precision precision = Precision::ns;
};

struct EncodedPoint {
  std::string line;  // without the trailing newline
  int64_t time_ns;   // the point's timestamp in ns (before precision conversion)
};

struct EncodeResult {
  std::vector<EncodedPoint> points;  // empty when `error` is set
  std::string error;                 // empty on success
  std::vector<std::string> skipped;  // "name: reason" for each value left out
  bool ok() const { return error.empty(); }
};

// True for the canonical names written as integers (`i` suffix).
bool is_integer_field(std::string_view name);

// Validates the options once (measurement names, tag keys/values). Empty string = fine.
std::string check_options(const LineProtocolOptions& options);

// The timestamp the point of `reading` gets (rule above).
int64_t choose_time_ns(const meterpipe::Reading& reading);

// Encodes one reading. A reading with no encodable value gives no point and no error.
EncodeResult encode(const meterpipe::Reading& reading, const LineProtocolOptions& options);

// A relay event (an Envelope carrying meterpipe::RelayEvent) as one line:
//   relay,relay=<name> state=1i,ok=true,mode="auto",reason="..." <publish time>
// The time is the event's publish time (send_time_ns) in precision `p`. Empty when the
// envelope holds no relay event or a name or text cannot be represented (newline ...).
std::string encode_relay(const meterpipe::Envelope& env, Precision p);

// Escaping helpers (exposed for tests). Each returns false (and leaves `out` unspecified) when
// the text cannot be represented (newline, dangerous backslash, empty).
bool append_measurement(std::string& out, std::string_view name);
bool append_key(std::string& out, std::string_view key);  // tag key, tag value, field key
bool append_string_field(std::string& out, std::string_view value);
// Shortest round-trip text of a finite double.
void append_float(std::string& out, double v);

}  // namespace mp::upload
