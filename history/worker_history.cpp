#include "history/worker_history.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/clock.h"
#include "common/log.h"
#include "common/wake.h"
#include "history/rollup.h"
#include "journal/for_worker.h"
#include "process/reading_proto.h"

namespace mp::history {

namespace {

// One transaction per 2 minutes (or per kFlushReadings readings): each commit dirties a few
// 4 KiB pages of the WAL and its index whatever it holds; at 1 reading/s a commit a minute
// measured 1.2-1.3 MB/h (bench/bench_history.py), above the 1 MB/h goal.
constexpr int64_t kFlushAgeNs = 120'000'000'000LL;
constexpr int64_t kFlushReadings = 300;
constexpr int64_t kIdleCloseNs = 90'000'000'000LL;  // a minute with no reading since: closed
constexpr int64_t kRetentionEveryNs = 3600'000'000'000LL;
constexpr int64_t kMaxPendingReadings = 1'000'000;  // while the database cannot be written
// The journals are read this often: minutes go to the database every 2 minutes anyway, and
// the live values come from serve; 5 s keeps the idle-minute close and the first commit quick.
constexpr int64_t kReadEveryNs = 5'000'000'000LL;
constexpr size_t kReadBatch = 512;  // items per read between two signs of progress
// Journal positions are stored with the minutes as rows of bus_positions (the table of the
// bus positions of earlier versions): publisher "journal", topic the journal's worker,
// instance = segment, seq = offset.
constexpr const char* kJournalPublisher = "journal";

bool fatal(const DbError& e) {
  const int primary = e.code() & 0xff;
  return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

}  // namespace

HistoryWorker::HistoryWorker(Worker& w) : w_(w), feed_(w.cfg(), "history") {
  for (const auto& m : w.cfg().meters) meters_[m.name];
}

bool HistoryWorker::open_store() {
  const auto& h = w_.cfg().history;
  mkdir(w_.cfg().general.state_dir.c_str(), 0750);
  std::string err;
  store_ = Store::open(h.db_file, false, err);
  if (!store_) {
    log::error("history: %s; running without history", err.c_str());
    w_.info("db_error", err);
    return false;
  }
  try {
    for (auto& [name, ms] : meters_) {
      store_->begin();
      ms.id = store_->meter_id(name);
      store_->commit();
      if (auto t = store_->last_minute_t(ms.id)) {
        ms.last_closed_t = *t;
        if (auto taken = store_->taken(ms.id))
          ms.taken = *taken;
        else if (auto row = store_->minute(ms.id, *t))  // (a database of schema 1: to the ms)
          ms.taken = Taken{(row->last_ms + 1) * 1'000'000 - 1, INT64_MAX};
      }
    }
  } catch (const DbError& e) {
    log::error("history: %s; running without history", e.what());
    w_.info("db_error", e.what());
    store_.reset();
    return false;
  }
  w_.info("db_file", h.db_file);
  return true;
}

void HistoryWorker::idle_without_store() {
  // a damaged or foreign database is not something a restart fixes: keep heartbeating (the
  // rest of the pipeline runs on) and leave the file as it is for the user to look at
  while (w_.running()) {
    usleep(useconds_t(w_.wait_ms()) * 1000);
    w_.tick();
  }
}

int HistoryWorker::run() {
  const auto& cfg = w_.cfg();
  if (!open_store()) {
    idle_without_store();
    return 0;
  }
  add_journals();
  read_journals();  // what came since the last commit (after a crash of everything too)
  log::info("history in %s (WAL), minutes kept %lld days, %llu readings taken at start",
            cfg.history.db_file.c_str(), (long long)cfg.history.keep_minutes_days,
            (unsigned long long)readings_);
  next_retention_mono_ = clock::mono_ns();
  while (w_.running() && !broken_) {
    const int64_t wake = clock::mono_ns() + int64_t(wait_ms(clock::mono_ns())) * 1'000'000;
    if (!wake::sleep_until(wake)) break;
    int64_t now = clock::mono_ns();
    if (now >= next_read_mono_) read_journals();
    now = clock::mono_ns();
    close_idle(now);
    if (flush_due(now)) flush();
    if (now >= next_retention_mono_ && !broken_) apply_retention();
    update_health();
    w_.tick();
  }
  if (!broken_) {
    // acquire and actuate stop first (supervisor/supervisor.cpp, stop_all): their journals
    // are whole now
    read_journals();
    for (auto& [name, ms] : meters_) close_minute(ms);
    flush();
  }
  if (broken_) idle_without_store();
  return 0;
}

void HistoryWorker::add_journals() {
  std::map<std::string, journal::Position> stored;
  for (const auto& p : store_->positions())
    if (p.publisher == kJournalPublisher) stored[p.topic] = journal::Position{p.instance, p.seq};
  // no position yet (a new database, or one of a version that took the bus): from history's
  // cursor in the journal, else its oldest record; what is read again is known as taken
  // (readings) or ignored by the database (relay events, by relay and time)
  auto add = [&](const std::string& worker, process::JournalFeed::Kind kind) {
    auto it = stored.find(worker);
    if (it == stored.end()) first_contact_ = true;
    feed_.add_source(journal::dir_of(w_.cfg(), worker), kind,
                     it == stored.end() ? nullptr : &it->second);
    sources_.push_back(worker);
  };
  add("acquire", process::JournalFeed::Kind::raw_frames);
  if (!w_.cfg().relays.empty()) add("actuate", process::JournalFeed::Kind::relay_events);
  committed_marks_ = feed_.marks();
  // A journal without history's cursor (history newly enabled, a database of a version that
  // took the bus): one at its oldest segment, so the writer keeps from now on what the
  // database does not hold yet, also when upload is further.
  auto keep = feed_.saved();
  bool missing = false;
  for (size_t i = 0; i < keep.size(); ++i) {
    if (keep[i].segment != 0) continue;
    const auto segs = journal::list_segments(feed_.dir(i));
    if (segs.empty()) continue;
    keep[i] = journal::Position{segs.front(), journal::kSegmentHeader};
    missing = true;
  }
  if (missing) feed_.save(keep);
}

void HistoryWorker::read_journals() {
  next_read_mono_ = clock::mono_ns() + kReadEveryNs;
  // a long journal (the first start, a long stop) in batches: it is no hang, also when its
  // frames give no readings (a wrong key, a meter renamed)
  const auto take = [&](const process::JournalFeed::Item& item) { return take_item(item); };
  for (;;) {
    const uint64_t records = feed_.stats().records;
    const size_t used = feed_.read(take, kReadBatch, 4 * kReadBatch);
    if (used < kReadBatch && feed_.stats().records - records < 4 * kReadBatch) break;
    w_.tick();
  }
}

int HistoryWorker::wait_ms(int64_t now_mono) const {
  int64_t ms = std::min<int64_t>(w_.wait_ms(), (next_read_mono_ - now_mono) / 1'000'000 + 1);
  if (!pending_.empty() || !pending_relays_.empty())
    ms = std::min(ms, (first_pending_mono_ + kFlushAgeNs - now_mono) / 1'000'000 + 1);
  for (const auto& [name, s] : meters_)
    if (s.open) ms = std::min(ms, (s.last_rx_mono + kIdleCloseNs - now_mono) / 1'000'000 + 1);
  return int(std::max<int64_t>(ms, 0));
}

size_t HistoryWorker::take_item(const process::JournalFeed::Item& item) {
  if (!item.reading) {
    on_relay(item.env);
    return 1;
  }
  auto it = meters_.find(item.reading->meter());
  if (it == meters_.end()) return 1;  // not a meter of this config
  Reading r;
  from_proto(*item.reading, r);
  take_reading(it->second, r);
  return 1;
}

bool HistoryWorker::take_reading(MeterState& ms, const Reading& r) {
  const int64_t t_ns = reading_time_ns(r);
  const Taken place{t_ns, r.receive_time_ns};
  if (place <= ms.taken) {  // (from the journal and again from the bus)
    ++duplicates_;
    return false;
  }
  const int64_t minute = (t_ns / 1'000'000'000 / 60) * 60 - (t_ns < 0 ? 60 : 0);
  ++readings_;
  if (ms.open && ms.open->t != minute) close_minute(ms);
  if (!ms.open) {
    if (minute < ms.last_closed_t) {  // a clock that went back: never rewrite a closed minute
      ++late_readings_;
      return false;
    }
    if (minute == ms.last_closed_t) {  // more readings of a closed minute: reopen it
      auto p = std::find_if(pending_.rbegin(), pending_.rend(), [&](const Pending& x) {
        return x.meter == ms.id && x.row.t == minute;
      });
      if (p != pending_.rend()) {
        ms.open = p->row;
        pending_.erase(std::next(p).base());
      } else {
        ms.open = store_->minute(ms.id, minute);
      }
    }
    if (!ms.open) {
      ms.open = MinuteRow{};
      ms.open->t = minute;
    }
  }
  add_reading(*ms.open, r, t_ns);
  ms.taken = place;
  ms.last_rx_mono = clock::mono_ns();
  return true;
}

void HistoryWorker::close_minute(MeterState& ms) {
  if (!ms.open) return;
  if (pending_.empty() && pending_relays_.empty()) first_pending_mono_ = clock::mono_ns();
  pending_readings_ += ms.open->n;
  ms.last_closed_t = ms.open->t;
  pending_.push_back(Pending{ms.id, std::move(*ms.open)});
  ms.open.reset();
}

void HistoryWorker::close_idle(int64_t now_mono) {
  for (auto& [name, ms] : meters_)
    if (ms.open && now_mono - ms.last_rx_mono >= kIdleCloseNs) close_minute(ms);
}

void HistoryWorker::on_relay(const meterpipe::Envelope& env) {
  const auto& e = env.relay();
  if (pending_.empty() && pending_relays_.empty()) first_pending_mono_ = clock::mono_ns();
  pending_relays_.push_back(RelayRecord{e.relay(), env.send_time_ns() / 1'000'000, e.old_state(),
                                        e.new_state(), e.ok(), e.mode(), e.reason(), e.error()});
  ++relay_events_;
}

bool HistoryWorker::flush_due(int64_t now_mono) const {
  // the first reading or relay event after a start without stored positions is committed at
  // once, so a worker killed before its first regular commit has a place to read on from
  if (first_contact_ && readings_ + relay_events_ > 0) return true;
  if (pending_.empty() && pending_relays_.empty()) return false;
  return pending_readings_ >= kFlushReadings || now_mono - first_pending_mono_ >= kFlushAgeNs;
}

void HistoryWorker::flush() {
  if (!store_) return;
  try {
    auto marks = feed_.marks();
    write_pending(marks);
    // The journal writers may delete what lies before history's cursors. The database, not
    // these cursors, says where a restarted worker reads on; they stay one commit behind it,
    // since a power cut can take the database's last commits (synchronous=NORMAL) and then
    // their journal records must still be there.
    // (The writer deletes whole segments: a cursor is written, and fsynced, only when its
    // segment changes, not at every commit.)
    auto keep = feed_.saved();
    bool moved = false;
    for (size_t i = 0; i < keep.size() && i < committed_marks_.size(); ++i)
      if (committed_marks_[i].segment > keep[i].segment) {
        keep[i] = committed_marks_[i];
        moved = true;
      }
    if (moved && !feed_.save(keep)) log::warn("history: cannot save its cursor in the journals");
    committed_marks_ = std::move(marks);
    first_contact_ = false;
    ++flushes_;
    pending_.clear();
    pending_relays_.clear();
    pending_readings_ = 0;
  } catch (const DbError& e) {
    store_->rollback();
    ++write_errors_;
    w_.info("db_error", e.what());
    if (fatal(e)) {
      log::error(
          "history: %s: the database is damaged; move it away (mv %s %s.broken) and "
          "restart meterpipe; running without history",
          e.what(), store_->path().c_str(), store_->path().c_str());
      broken_ = true;
      return;
    }
    uint64_t held = 0;
    if (limiter_.allow("write", clock::mono_ns(), held))
      log::error("history: cannot write: %s (kept in memory, retrying)", e.what());
    if (pending_readings_ > kMaxPendingReadings) {  // bounded: the oldest go first
      pending_.erase(pending_.begin(), pending_.begin() + long(pending_.size() / 2));
      w_.count("dropped_minutes");
    }
    first_pending_mono_ = clock::mono_ns();
  }
}

void HistoryWorker::write_pending(const process::JournalFeed::Marks& marks) {
  // The open minutes go too (rewritten when they close), so the positions stored with them
  // cover every reading taken: a restarted worker reads only what came after. Each position
  // is a clean one (no poll half read), and no reading was taken after it.
  std::map<int64_t, std::pair<int64_t, int64_t>> touched;  // meter -> t range
  auto put = [&](int64_t meter, const MinuteRow& row) {
    store_->put_minute(meter, row);
    auto [it, fresh] = touched.try_emplace(meter, row.t, row.t);
    it->second.first = std::min(it->second.first, row.t);
    it->second.second = std::max(it->second.second, row.t);
  };
  store_->begin();
  for (const auto& p : pending_) put(p.meter, p.row);
  for (auto& [name, ms] : meters_) {
    if (ms.open) put(ms.id, *ms.open);
    if (ms.taken.time_ns != INT64_MIN) store_->put_taken(ms.id, ms.taken);
  }
  for (const auto& e : pending_relays_) store_->put_relay_event(e);
  int days = 0;
  for (const auto& [meter, range] : touched)
    days += update_days(*store_, meter, range.first, range.second);
  for (size_t i = 0; i < marks.size() && i < sources_.size(); ++i)
    if (marks[i].segment != 0)
      store_->put_position(
          Position{kJournalPublisher, sources_[i], marks[i].segment, marks[i].offset});
  store_->commit();
  minutes_written_ += pending_.size();
  days_written_ += uint64_t(days);
}

void HistoryWorker::apply_retention() {
  next_retention_mono_ = clock::mono_ns() + kRetentionEveryNs;
  const int64_t keep_s = w_.cfg().history.keep_minutes_days * 86400;
  try {
    store_->begin();
    const int64_t n = store_->delete_before(clock::wall_ns() / 1'000'000'000 - keep_s);
    store_->commit();
    deleted_minutes_ += uint64_t(n);
    if (n)
      log::info("history: deleted %lld minutes older than %lld days", (long long)n,
                (long long)w_.cfg().history.keep_minutes_days);
  } catch (const DbError& e) {
    store_->rollback();
    log::warn("history: retention: %s", e.what());
  }
}

void HistoryWorker::update_health() {
  w_.set_counter("readings", readings_);
  w_.set_counter("minutes_written", minutes_written_);
  w_.set_counter("days_written", days_written_);
  w_.set_counter("relay_events", relay_events_);
  w_.set_counter("late_readings", late_readings_);
  w_.set_counter("transactions", flushes_);
  w_.set_counter("write_errors", write_errors_);
  w_.set_counter("minutes_deleted", deleted_minutes_);
  w_.set_counter("duplicates", duplicates_);
  const process::JournalStats js = feed_.stats();
  w_.set_counter("journal_records", js.records);
  w_.set_counter("journal_decode_errors", js.decode_errors);
  w_.set_counter("journal_lost_segments", js.lost_segments);
  w_.set_counter("journal_corrupt", js.corrupt);
  w_.set_counter("journal_bad_records", js.bad_records);
  w_.gauge("pending_minutes", double(pending_.size()));
}

}  // namespace mp::history
