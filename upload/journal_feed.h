// What upload sends, read from the journals (docs/DURABILITY.md) instead of the bus: acquire's
// raw frames, decoded here with process's decoders (as actuate does), and actuate's relay
// events, each turned into line-protocol points.
//
// Positions: each source has a read position (in memory, ahead) and a clean position: the
// end of the last record after which no meter has half a Modbus/M-Bus poll decoded, so that
// reading again from there rebuilds every reading whole. marks() gives the clean positions;
// the caller saves them (save()) once the target holds every point read before them. After a
// crash the points between the saved marks and the crash are read again: InfluxDB overwrites
// them (same series and time), the daily files skip them (upload/file_target.h).
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "journal/journal.h"
#include "process/decoder.h"
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
  enum class Kind { raw_frames, relay_events };

  JournalFeed(const config::Config& cfg, LineProtocolOptions lp, std::string consumer = "upload");
  // Adds a journal; reading starts at its saved cursor (or its oldest record).
  void add_source(const std::string& dir, Kind kind);

  // Reads records and appends their points to `out` until `max_points` points were added or
  // the journals hold nothing more. Returns the number of points added.
  size_t read(std::vector<Point>& out, size_t max_points) override;
  // The clean positions now (one per source, in add_source order).
  Marks marks() const override;
  // Saves `m` as the sources' cursors (fsynced; the journal writers may then delete what lies
  // before them). False when a cursor could not be written.
  bool save(const Marks& m) override;
  const Marks& saved() const override { return saved_; }
  // inotify on the journals' directories: a group commit's write(), a new segment
  // (docs/ARCHITECTURE.md, "Durability"). A directory its writer has not made yet is
  // watched once it exists.
  int change_fd() const override { return inotify_fd_; }
  bool watch() override;
  void drain_changes() override;
  FeedStats stats() const;
  ~JournalFeed() override;

 private:
  struct Source {
    std::string dir;
    bool watched = false;
    Kind kind;
    std::unique_ptr<journal::Reader> reader;
    journal::Position pos, clean;
    std::set<std::string> partial;  // meters with half a poll decoded
  };
  void take(Source& s, const std::string& payload, std::vector<Point>& out);

  const config::Config& cfg_;
  LineProtocolOptions lp_;
  std::string consumer_;
  process::Decoders decoders_;
  std::vector<Source> sources_;
  Marks saved_;
  FeedStats st_;
  int inotify_fd_ = -1;
  bool all_watched_ = false;
};

}  // namespace mp::upload
