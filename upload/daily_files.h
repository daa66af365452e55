// The embedded default when no InfluxDB is configured: every point is appended to
// `data_dir/YYYY-MM-DD.lp` (UTC date of the point's timestamp), one line-protocol line each,
// ready for `influx write --file` (precision: whatever the encoder used, ns by default).
// Writes go to the kernel at once; fsync happens at most once per second (maybe_sync) and on
// close. At most two day files are kept open (today and a late point from yesterday).
// Not thread safe: call from one thread (the bus receiver). A file of an old day that was
// unlinked meanwhile (upload/day_retention.h) is opened again on the next append to it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mp::upload {

struct DailyFilesStats {
  uint64_t points = 0;
  uint64_t bytes = 0;
  uint64_t fsyncs = 0;
  uint64_t write_errors = 0;
};

class DailyFiles {
 public:
  DailyFiles() = default;
  ~DailyFiles();
  DailyFiles(const DailyFiles&) = delete;
  DailyFiles& operator=(const DailyFiles&) = delete;

  // Creates the directory when missing. False with `error` when it cannot be used.
  bool open(const std::string& data_dir, std::string& error);
  void close();

  // Appends `line` + '\n' to the file of the point's UTC day. False (nothing written) for an
  // empty line or one with a newline, or on an I/O error.
  bool append(std::string_view line, int64_t point_time_ns);
  // fdatasync of the files written since the last sync, when that was >= 1 s ago.
  bool maybe_sync(int64_t now_mono_ns);
  void sync();

  const DailyFilesStats& stats() const { return st_; }

  // "YYYY-MM-DD.lp" for a time (UTC).
  static std::string file_name(int64_t time_ns);

 private:
  struct Slot {
    std::string name;
    int fd = -1;
    bool dirty = false;
    uint64_t used = 0;  // LRU stamp
  };
  Slot* slot_for(const std::string& name);

  std::string dir_;
  Slot slots_[2];
  uint64_t stamp_ = 0;
  int64_t last_sync_ns_ = 0;
  DailyFilesStats st_;
};

}  // namespace mp::upload
