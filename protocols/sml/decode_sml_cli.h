// `meterpipe decode sml [FILE|-]`: reads SML bytes as they come off the IR head (binary), or
// their hex dump (hex digits and white space only, as `hexdump -ve '1/1 "%.2X"'` writes
// them), cuts them into transport frames (bytes before the first start sequence are skipped)
// and prints one JSON object per frame and line:
//   {"frame":1,"crc_ok":true,"server_id":"0a01484c5902000d6be6","meter_time":null,
//    "sec_index":23876784,"values":[{"name":"energy_import_kwh","obis":"1-0:1.8.0",
//    "value":2324,"unit":"kWh"},...],"entries":[{"obis":"1-0:1.8.0","status":1835268,
//    "unit":30,"scaler":3,"raw":2324},...],"errors":[]}
// "values" are what a reading carries (protocols/sml/sml.h, to_reading); "entries" the list
// entries as sent (raw value before the scaler; octet strings as hex in "raw_hex"; "time" the
// seconds of a valTime that is a timestamp).
// A frame that cannot be used prints with empty "values" and "entries" and its error (also
// on `err`). Returns 0 when every frame decoded, 1 otherwise (also for no frame, a frame cut
// off, one with an unknown escape, an incomplete one at the end), 2 when FILE cannot be read.
#pragma once

#include <iosfwd>
#include <string>

namespace mp::sml {

int decode_sml_main(std::istream& in, std::ostream& out, std::ostream& err);
int decode_sml_file(const std::string& path, std::ostream& out, std::ostream& err);

}  // namespace mp::sml
