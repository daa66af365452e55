// The journals instead of the bus, for the consumers that must not lose anything (upload,
// history; docs/ARCHITECTURE.md, "Durability"): acquire's raw frames, decoded here with the
// decoders process uses, and actuate's relay events, each read in order from a position.
//
// Positions: each source has a read position (in memory, ahead) and a clean position: the
// end of the last record after which no meter has half a Modbus/M-Bus poll decoded, so that
// reading again from there rebuilds every reading whole. marks() gives the clean positions;
// the consumer keeps them with what it made of the records before them, and save()s them as
// its cursors (`cursor.<consumer>`) so the journal writers may delete what lies before.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "journal/journal.h"
#include "meterpipe.pb.h"
#include "process/decoder.h"

namespace mp::process {

struct JournalStats {
  uint64_t records = 0;        // journal records read
  uint64_t decode_errors = 0;  // frames the decoders refused (process logs why)
  uint64_t lost_segments = 0;  // journal segments deleted before they were read
  uint64_t corrupt = 0;        // corrupt journal records
  uint64_t bad_records = 0;    // records that are not an Envelope of the expected kind
};

class JournalFeed {
 public:
  enum class Kind { raw_frames, relay_events };
  using Marks = std::vector<journal::Position>;
  // One record that gave something: a whole reading (raw_frames; `env` is the frame that
  // completed it) or a relay event (`reading` null).
  struct Item {
    Kind kind;
    const meterpipe::Envelope& env;
    const meterpipe::Reading* reading;
  };
  // What the consumer made of an item: how much of its `max` it used.
  using Take = std::function<size_t(const Item&)>;

  JournalFeed(const config::Config& cfg, std::string consumer);
  ~JournalFeed();
  JournalFeed(const JournalFeed&) = delete;
  JournalFeed& operator=(const JournalFeed&) = delete;

  // Adds a journal; reading starts at `from` when given, else at the consumer's saved cursor
  // (or the journal's oldest record).
  void add_source(const std::string& dir, Kind kind, const journal::Position* from = nullptr);
  // Reads records in turn from the sources (one busy journal does not starve another) and
  // hands every reading and relay event to `take`, until what `take` returned adds up to `max`,
  // `max_records` records were read (frames that give nothing count there) or the journals
  // hold nothing more. Returns that sum.
  size_t read(const Take& take, size_t max, size_t max_records = SIZE_MAX);
  // The clean positions now (one per source, in add_source order).
  Marks marks() const;
  // Saves `m` as the sources' cursors (fsynced; the journal writers may then delete what lies
  // before them). False when a cursor could not be written.
  bool save(const Marks& m);
  const Marks& saved() const { return saved_; }
  size_t sources() const { return sources_.size(); }
  const std::string& dir(size_t i) const { return sources_[i].dir; }
  // inotify on the journals' directories: a group commit's write(), a new segment. A
  // directory its writer has not made yet is watched once it exists. change_fd() is -1
  // before the first watch(); watch() says whether every source is watched now;
  // drain_changes() empties the descriptor after a wake-up.
  int change_fd() const { return inotify_fd_; }
  bool watch();
  void drain_changes();
  JournalStats stats() const;

 private:
  struct Source {
    std::string dir;
    bool watched = false;
    Kind kind;
    std::unique_ptr<journal::Reader> reader;
    journal::Position pos, clean;
    std::set<std::string> partial;  // meters with half a poll decoded
  };
  size_t take_record(Source& s, const std::string& payload, const Take& take);

  std::string consumer_;
  Decoders decoders_;
  std::vector<Source> sources_;
  Marks saved_;
  JournalStats st_;
  int inotify_fd_ = -1;
  bool all_watched_ = false;
};

}  // namespace mp::process
