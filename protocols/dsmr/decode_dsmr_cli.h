// `meterpipe decode dsmr [FILE|-]`: reads P1 bytes as they come off the wire (one or more
// telegrams, garbage between them is skipped) and prints one JSON object per telegram and line:
//   {"crc_ok":true,"header":"/KFM5KAIFA-METER","meter_time":"2016-11-13T19:57:57Z",
//    "values":[{"name":"energy_import_t1_kwh","obis":"1-0:1.8.1","value":1581.123,"unit":"kWh"},
//              {"name":"gas_m3","obis":"0-1:24.2.1","value":981.443,"unit":"m3",
//               "time":"2016-11-29T19:00:00Z"}, …],
//    "errors":[]}
// "crc_ok" is null for telegrams without CRC (DSMR 2.2/3), "meter_time" null when the meter
// sends none; text values are JSON strings; a value with its own timestamp carries "time".
// A telegram that cannot be used (CRC mismatch, …) prints with empty "values" and its errors.
// With a key file (see mp::dlms::parse_key_file) the input is encrypted DLMS frames (raw bytes,
// or hex text as dsmr_parser takes them); a frame that does not decrypt prints
// {"crc_ok":null,"header":"","meter_time":null,"values":[],"errors":["decrypt: <reason>"]}.
// Reasons also go to `err`. Returns 0 when every telegram decoded, 1 otherwise (also for no
// telegram, a telegram cut off or too long, an incomplete one at the end of the input), 2 when
// the key file cannot be read or parsed.
#pragma once

#include <iosfwd>
#include <string>

#include "protocols/dsmr/dsmr.h"

namespace mp::dsmr {

int decode_dsmr_main(std::istream& in, std::ostream& out, std::ostream& err,
                     const std::string& key_file);

// Opens FILE ("-" = standard input) and runs decode_dsmr_main; 2 when it cannot be read.
int decode_dsmr_file(const std::string& path, const std::string& key_file, std::ostream& out,
                     std::ostream& err);

// The JSON object (one line, no newline) for one decoded telegram.
std::string to_json(const Result& r);

}  // namespace mp::dsmr
