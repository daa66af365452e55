// `meterpipe decode mbus [FILE|-]`: decodes M-Bus frames given as hex text (libmbus's .hex
// format: byte tokens separated by spaces or newlines; several frames may follow each other)
// or as raw binary (detected: anything that is not hex digits and white space), and prints one
// JSON object per frame and line (see mp::mbus::to_json). A frame that fails to decode prints
// {"frame":N,"offset":BYTE,"error":"reason"} and the reason on `err`; so does an application
// error frame (CI 0x70). Returns 0 when every frame decoded, 1 otherwise (also for no frame).
#pragma once

#include <iosfwd>
#include <string>

namespace mp::mbus {

int decode_mbus_main(std::istream& in, std::ostream& out, std::ostream& err);

// Opens FILE ("-" = standard input) and runs decode_mbus_main; 2 when the file cannot be read.
int decode_mbus_file(const std::string& path, std::ostream& out, std::ostream& err);

}  // namespace mp::mbus
