// The history worker's loop: readings (reading/ from process) become minute rows, relay
// events (relay/ from actuate) rows of their own; closed minutes wait in memory and go to the
// database in one transaction every 2 minutes (or per 300 readings), together with the
// days they change and the bus positions they include. A restarted worker restores those
// positions and fetches what it missed from process's replay ring, so a kill -9 neither
// loses nor doubles a minute (docs/ARCHITECTURE.md, "Durability"); after a crash of the whole
// pipeline (the rings gone too) it first takes the readings after its last commit from
// acquire's journal (history/worker_journal_replay.h). A reading not after the last one taken
// of its meter (by time, then by when acquire received it; stored with the minutes) is a
// second copy and skipped. The loop blocks on the bus until the next
// heartbeat or flush is due: no polling.
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
#include "history/worker_journal_replay.h"

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
    Position last;                      // bus position of the last reading taken
    Taken taken;                        // the newest reading taken
    int64_t last_rx_mono = 0;
  };
  struct Pending {
    int64_t meter;
    MinuteRow row;
  };

  bool open_store();
  void idle_without_store();
  void on_message(const bus::Message& m);
  void on_reading(const bus::Message& m);
  // False for a second copy of a reading already taken (skipped).
  bool take_reading(MeterState& ms, const Reading& r);
  void replay_journal();
  void on_relay(const bus::Message& m);
  void close_minute(MeterState& ms);
  void close_idle(int64_t now_mono);
  bool flush_due(int64_t now_mono) const;
  void flush();
  void write_pending();
  void apply_retention();
  int wait_ms(int64_t now_mono) const;
  void update_health();

  Worker& w_;
  std::unique_ptr<Store> store_;
  JournalReplay replay_;
  std::map<std::string, MeterState> meters_;
  std::vector<Pending> pending_;
  std::vector<RelayRecord> pending_relays_;
  std::map<std::pair<std::string, std::string>, Position> done_;  // what pending_ includes
  int64_t pending_readings_ = 0;
  int64_t first_pending_mono_ = 0;
  int64_t next_retention_mono_ = 0;
  bool broken_ = false;
  bool first_contact_ = false;  // a topic with no stored position yet: commit now
  LogLimiter limiter_;
  uint64_t readings_ = 0, minutes_written_ = 0, days_written_ = 0, relay_events_ = 0,
           late_readings_ = 0, flushes_ = 0, write_errors_ = 0, deleted_minutes_ = 0,
           duplicates_ = 0, journal_readings_ = 0;
};

}  // namespace mp::history
