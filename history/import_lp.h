// `meterpipe history import`: earlier data from the daily line-protocol files upload writes
// (<data_dir>/YYYY-MM-DD.lp and .lp.gz, upload/line_protocol.h) into the history database, so
// it is not lost when history is turned on later. Lines of one meter and time (the electricity
// and gas measurements) make one reading; readings become minutes and days as in the worker.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "history/store.h"

namespace mp::history {

struct LpPoint {
  std::string measurement;
  std::map<std::string, std::string> tags;
  std::map<std::string, double> fields;  // numeric fields (integers without their 'i')
  int64_t time_ns = 0;
};

// One line of line protocol (no newline). False for a comment, an empty line or a line it
// cannot read. The timestamp's precision is taken from its size (s, ms, us or ns); a time
// before 2000 or from 2100 on is a line it cannot read.
bool parse_lp_line(std::string_view line, LpPoint& out);

struct ImportStats {
  int64_t lines = 0, bad_lines = 0, readings = 0, minutes = 0, days = 0;
};

// Reads FILE (.lp or .lp.gz) into the store: every `meter` tag becomes a meter. False with
// `error` when the file cannot be read.
bool import_lp_file(Store& s, const std::string& file, ImportStats& stats, std::string& error);
// The same for the text of such a file, in one transaction (DbError when SQL fails).
void import_lp_text(Store& s, std::string_view text, ImportStats& stats);

}  // namespace mp::history
