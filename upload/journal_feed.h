// What upload sends, read from the journals (docs/DURABILITY.md) instead of the bus: acquire's
// raw frames, decoded with process's decoders, and actuate's relay events
// (process/journal_feed.h), each turned into line-protocol points.
//
// The clean positions (marks()) are saved once the target holds every point read before
// them. After a crash the points between the saved marks and the crash are read again:
// InfluxDB overwrites them (same series and time), the daily files skip them
// (upload/file_target.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "journal/journal.h"
#include "process/journal_feed.h"
#include "upload/line_protocol.h"

namespace mp::upload {

struct Point {
  std::string line;
  int64_t time_ns = 0;
};

struct FeedStats {
  uint64_t records = 0;        // journal records read
  uint64_t points = 0;         // points made from them
  uint64_t decode_errors = 0;  // frames the decoders refused (process logs why)
  uint64_t refused = 0;        // readings or relay events line protocol cannot carry
  uint64_t lost_segments = 0;  // journal segments deleted before they were read
  uint64_t corrupt = 0;        // corrupt journal records
  uint64_t bad_records = 0;    // records that are not an Envelope of the expected kind
};

// Where the uploader gets its points: read() in order, marks() the positions to save once the
// target holds every point read so far, save() them. JournalFeed is the product's.
class Feed {
 public:
  using Marks = std::vector<journal::Position>;
  virtual ~Feed() = default;
  virtual size_t read(std::vector<Point>& out, size_t max_points) = 0;
  virtual Marks marks() const = 0;
  virtual bool save(const Marks& m) = 0;
  virtual const Marks& saved() const = 0;
  // Waking up only when there is something to read: a descriptor that becomes readable when
  // a source may have more (-1: none, the caller looks again after a while). watch() sets it
  // up for the sources not watched yet and says whether every source is watched now;
  // drain_changes() empties the descriptor after a wake-up.
  virtual int change_fd() const { return -1; }
  virtual bool watch() { return false; }
  virtual void drain_changes() {}
};

class JournalFeed : public Feed {
 public:
  using Kind = process::JournalFeed::Kind;

  JournalFeed(const config::Config& cfg, LineProtocolOptions lp, std::string consumer = "upload");
  // Adds a journal; reading starts at its saved cursor (or its oldest record).
  void add_source(const std::string& dir, Kind kind) { journals_.add_source(dir, kind); }

  // Reads records and appends their points to `out` until `max_points` points were added or
  // the journals hold nothing more. Returns the number of points added.
  size_t read(std::vector<Point>& out, size_t max_points) override;
  // The clean positions now (one per source, in add_source order).
  Marks marks() const override { return journals_.marks(); }
  // Saves `m` as the sources' cursors (fsynced; the journal writers may then delete what lies
  // before them). False when a cursor could not be written.
  bool save(const Marks& m) override { return journals_.save(m); }
  const Marks& saved() const override { return journals_.saved(); }
  // inotify on the journals' directories: a group commit's write(), a new segment
  // (docs/ARCHITECTURE.md, "Durability").
  int change_fd() const override { return journals_.change_fd(); }
  bool watch() override { return journals_.watch(); }
  void drain_changes() override { journals_.drain_changes(); }
  FeedStats stats() const;

 private:
  size_t take(const process::JournalFeed::Item& item, std::vector<Point>& out);

  LineProtocolOptions lp_;
  process::JournalFeed journals_;
  uint64_t points_ = 0, refused_ = 0;
};

}  // namespace mp::upload
