// Housekeeping of the daily line-protocol files (target = "file", upload/daily_files.h):
// one maintenance pass gzips finished days and deletes days older than keep_days.
//
// Names: only regular files named exactly `YYYY-MM-DD.lp` or `YYYY-MM-DD.lp.gz` with a real
// calendar date (and our own temp files `.YYYY-MM-DD.lp.gz.tmp`) are ever touched; anything
// else in the directory (bus.position, notes, `2026-13-40.lp`, `x.lp.bak`, symlinks, ...) is
// left alone. "today" is the UTC day of `now_ns`; day D is "n days old" when D = today - n.
//
// A pass, in this order:
//  1. Removes temp files left by an interrupted pass (their work is redone below).
//  2. keep_days > 0: deletes `.lp` and `.lp.gz` files more than keep_days days old, i.e. with
//     D < today - keep_days. keep_days = 7 keeps today and the 7 days before it (8 dates).
//     With this rule any keep_days >= 1 keeps today's and yesterday's files, the two the
//     writer may still append to; keep_days <= 0 deletes nothing (0 = keep all; the config
//     refuses negative values, which are treated as 0 here rather than deleting open files).
//  3. compress: gzips every `.lp` that is at least 2 days old (D <= today - 2: a late point
//     may still go to yesterday's file) into `.lp.gz`, oldest first, in bounded chunks:
//       temp file -> fsync -> rename to `.lp.gz` -> fsync of the directory -> unlink `.lp`.
//     The `.lp` is removed only after the `.gz` holding all of its bytes is on disk, and only
//     when it has not grown meanwhile (checked under `writer_mutex`; a file that grew stays
//     and is redone by the next pass). When an `.lp` and an `.lp.gz` of the same day both
//     exist (a crash before the unlink, or late points written after the day was
//     compressed), the `.lp` is the source of truth and nothing is lost:
//       - the `.gz` decompresses to the `.lp`'s bytes, or ends with them: the `.lp` is
//         removed (the compression had finished);
//       - the `.gz` is a prefix of the `.lp` (also a truncated or damaged `.gz` whose
//         readable part is): the `.gz` is rewritten from the `.lp`;
//       - a complete `.gz` holding other data (late points): the `.lp` is appended to it as
//         a further gzip member (gzip -dc, zlib and Go's gzip reader read all members);
//       - a damaged `.gz` holding other data: both files are kept and an error is reported.
//     Only one pass may run at a time on a directory (the upload worker runs them on one
//     thread).
// The stats say what was done; errors leave every file of that day as it was.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace mp::upload {

struct RetentionOptions {
  int64_t keep_days = 0;  // 0 = keep everything
  bool compress = true;
  int level = 6;  // zlib compression level (1 fast .. 9 small)
  // Held by the writer (DailyFiles::append) while it appends; the pass holds it only to check
  // that an `.lp` did not grow and to unlink it. nullptr: no writer in this process.
  std::mutex* writer_mutex = nullptr;
  // Asked between chunks (every <= 64 KiB): false abandons the pass (the temp file of a
  // compression in progress is removed; the next pass redoes it). Unset = never stop.
  std::function<bool()> keep_going;
};

struct RetentionStats {
  uint64_t compressed = 0;   // .lp files gzipped (a new .gz, a rewritten one or appended to one)
  uint64_t plain_bytes = 0;  // their size
  uint64_t gz_bytes = 0;     // the gzip bytes written for them
  uint64_t recovered = 0;    // .lp removed after checking that the existing .gz holds it
  uint64_t deleted = 0;      // .lp and .lp.gz files deleted by keep_days
  uint64_t deleted_bytes = 0;
  uint64_t temp_removed = 0;  // temp files of an interrupted pass removed
  uint64_t deferred = 0;      // .lp files that grew while being compressed (kept; next pass)
  uint64_t dir_bytes = 0;     // size of all regular files in the directory after the pass
  bool aborted = false;       // keep_going() said stop
  std::vector<std::string> errors;

  // True when a file was compressed, removed or deleted, or there was an error.
  bool did_something() const {
    return compressed || recovered || deleted || temp_removed || !errors.empty();
  }
};

// UTC day number (days since 1970-01-01, floored) of a time in ns.
int64_t utc_day(int64_t time_ns);

enum class DayFileKind { none, lp, lp_gz, temp };
// Classifies a file name: "YYYY-MM-DD.lp", "YYYY-MM-DD.lp.gz", ".YYYY-MM-DD.lp.gz.tmp" with a
// real calendar date (year 0001-9999). `day` gets its UTC day number. none for anything else.
DayFileKind parse_day_file(std::string_view name, int64_t* day = nullptr);

// One maintenance pass over `dir` (see the file comment).
RetentionStats retention_pass(const std::string& dir, int64_t now_ns, const RetentionOptions& opt);

// Total size of the regular files directly in `dir` (0 when it cannot be read).
uint64_t dir_bytes(const std::string& dir);

// "compressed 2 day files (140.2 MB -> 9.8 MB), deleted 1 older than 30 days" ("" when the
// pass did nothing worth a line; errors are not part of it).
std::string describe(const RetentionStats& st, int64_t keep_days);

}  // namespace mp::upload
