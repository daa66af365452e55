// The history worker's loop: readings become minute rows, relay events rows of their own;
// closed minutes wait in memory and go to the database in one transaction every 2 minutes
// (or per 300 readings), together with the days they change and the journal positions they
// include. It reads the journals, not the bus (docs/ARCHITECTURE.md, "Durability"):
// acquire's raw frames, decoded as process decodes them, and actuate's relay events
// (process/journal_feed.h), every few seconds, so it wakes a few times a minute instead of at
// every reading. A restarted worker, after a kill -9 of it or of everything, reads on from
// the positions of its last commit: nothing lost, nothing twice. A reading not after the
// last one taken of its meter (by time, then by when acquire received it; stored with the
// minutes) is a second copy and skipped. No polling: the loop sleeps until the next read,
// heartbeat, flush or idle minute is due.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bus/worker.h"
#include "common/rate_limit.h"
#include "history/minutes.h"
#include "history/store.h"
#include "process/journal_feed.h"

namespace mp::history {

class HistoryWorker {
 public:
  explicit HistoryWorker(Worker& w);
  int run();

 private:
  struct MeterState {
    int64_t id = 0;
    std::optional<MinuteRow> open;      // the minute being aggregated
    int64_t last_closed_t = INT64_MIN;  // newest minute closed (written or pending)
    Taken taken;                        // the newest reading taken
    int64_t last_rx_mono = 0;
  };
  struct Pending {
    int64_t meter;
    MinuteRow row;
  };

  bool open_store();
  void idle_without_store();
  void add_journals();
  void read_journals();
  size_t take_item(const process::JournalFeed::Item& item);
  // False for a second copy of a reading already taken (skipped).
  bool take_reading(MeterState& ms, const Reading& r);
  void on_relay(const meterpipe::Envelope& env);
  void close_minute(MeterState& ms);
  void close_idle(int64_t now_mono);
  bool flush_due(int64_t now_mono) const;
  void flush();
  void write_pending(const process::JournalFeed::Marks& marks);
  void apply_retention();
  int wait_ms(int64_t now_mono) const;
  void update_health();

  Worker& w_;
  std::unique_ptr<Store> store_;
  process::JournalFeed feed_;
  std::map<std::string, MeterState> meters_;
  std::vector<Pending> pending_;
  std::vector<RelayRecord> pending_relays_;
  std::vector<std::string> sources_;             // the journals' workers, in the feed's order
  process::JournalFeed::Marks committed_marks_;  // the positions of the last commit
  int64_t pending_readings_ = 0;
  int64_t first_pending_mono_ = 0;
  int64_t next_retention_mono_ = 0;
  int64_t next_read_mono_ = 0;
  bool broken_ = false;
  bool first_contact_ = false;  // no journal position stored yet: commit what the first read took
  LogLimiter limiter_;
  uint64_t readings_ = 0, minutes_written_ = 0, days_written_ = 0, relay_events_ = 0,
           late_readings_ = 0, flushes_ = 0, write_errors_ = 0, deleted_minutes_ = 0,
           duplicates_ = 0;
};

}  // namespace mp::history
