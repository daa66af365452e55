#include "history/worker_history.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/clock.h"
#include "common/log.h"
#include "history/rollup.h"
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

Position position_of(const bus::Message& m) {
  return Position{m.env.publisher(), m.topic, m.env.instance_id(), m.env.seq()};
}

bool fatal(const DbError& e) {
  const int primary = e.code() & 0xff;
  return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

}  // namespace

HistoryWorker::HistoryWorker(Worker& w) : w_(w), replay_(w.cfg()) {
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
  std::vector<std::string> publishers{"process"}, prefixes{"reading/"};
  if (!cfg.relays.empty()) {
    publishers.push_back("actuate");
    prefixes.push_back("relay/");
  }
  bus::Subscriber::Options so;
  so.replay = true;  // what was published while this worker was down, from the rings
  bus::Subscriber sub(cfg.general.run_dir, publishers, prefixes, so);
  size_t restored = 0;
  for (const auto& p : store_->positions()) {
    sub.set_position(p.publisher, p.topic, p.instance, p.seq);
    done_[{p.publisher, p.topic}] = p;
    ++restored;
  }
  replay_journal();  // what a crash of everything took from the rings, from the disk
  // what came after the stored positions, now: a stop soon after this start keeps it too
  const size_t fetched = sub.catch_up();
  log::info(
      "history in %s (WAL), minutes kept %lld days, %zu bus positions restored, %zu "
      "readings fetched from the replay rings",
      cfg.history.db_file.c_str(), (long long)cfg.history.keep_minutes_days, restored, fetched);
  next_retention_mono_ = clock::mono_ns();
  while (w_.running() && !broken_) {
    bus::Message m;
    bool got = sub.receive(m, wait_ms(clock::mono_ns()));
    while (got) {
      on_message(m);
      got = sub.receive(m, 0);
    }
    const int64_t now = clock::mono_ns();
    close_idle(now);
    if (flush_due(now)) flush();
    if (now >= next_retention_mono_ && !broken_) apply_retention();
    w_.set_counter("bus_lost", sub.lost());
    update_health();
    w_.tick();
  }
  if (!broken_) {
    for (auto& [name, ms] : meters_) close_minute(ms);
    flush();
  }
  if (broken_) idle_without_store();
  return 0;
}

int HistoryWorker::wait_ms(int64_t now_mono) const {
  int64_t ms = w_.wait_ms();
  if (!pending_.empty() || !pending_relays_.empty())
    ms = std::min(ms, (first_pending_mono_ + kFlushAgeNs - now_mono) / 1'000'000 + 1);
  for (const auto& [name, s] : meters_)
    if (s.open) ms = std::min(ms, (s.last_rx_mono + kIdleCloseNs - now_mono) / 1'000'000 + 1);
  return int(std::max<int64_t>(ms, 0));
}

void HistoryWorker::on_message(const bus::Message& m) {
  if (m.env.has_reading()) on_reading(m);
  if (m.env.has_relay()) on_relay(m);
}

void HistoryWorker::replay_journal() {
  const ReplayStats st = replay_.read_all(
      [&](const Reading& r) {
        auto it = meters_.find(r.meter);
        if (it != meters_.end() && take_reading(it->second, r)) ++journal_readings_;
      },
      [&] { w_.tick(); });  // a long journal (the first start) is no hang
  if (st.records)
    log::info(
        "history: acquire's journal: %llu records, %llu readings, %llu of them newer than the "
        "database (taken)",
        (unsigned long long)st.records, (unsigned long long)st.readings,
        (unsigned long long)journal_readings_);
  // readings that were already taken are no duplicates of the bus
  duplicates_ = 0;
  w_.set_counter("journal_readings", journal_readings_);
}

void HistoryWorker::on_reading(const bus::Message& m) {
  auto it = meters_.find(m.env.reading().meter());
  if (it == meters_.end()) return;  // not a meter of this config
  MeterState& ms = it->second;
  Reading r;
  from_proto(m.env.reading(), r);
  take_reading(ms, r);
  ms.last = position_of(m);
  // a topic without a stored position: commit one at once, so that a worker killed before
  // its first regular commit is not left without a place to replay from
  if (!done_.count({ms.last.publisher, ms.last.topic})) first_contact_ = true;
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

void HistoryWorker::on_relay(const bus::Message& m) {
  const auto& e = m.env.relay();
  if (pending_.empty() && pending_relays_.empty()) first_pending_mono_ = clock::mono_ns();
  pending_relays_.push_back(RelayRecord{e.relay(), m.env.send_time_ns() / 1'000'000, e.old_state(),
                                        e.new_state(), e.ok(), e.mode(), e.reason(), e.error()});
  if (!done_.count({m.env.publisher(), m.topic})) first_contact_ = true;
  done_[{m.env.publisher(), m.topic}] = position_of(m);
  ++relay_events_;
}

bool HistoryWorker::flush_due(int64_t now_mono) const {
  if (first_contact_) return true;
  if (pending_.empty() && pending_relays_.empty()) return false;
  return pending_readings_ >= kFlushReadings || now_mono - first_pending_mono_ >= kFlushAgeNs;
}

void HistoryWorker::flush() {
  if (!store_) return;
  try {
    write_pending();
    replay_.committed();
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

void HistoryWorker::write_pending() {
  // The open minutes go too (rewritten when they close), so the positions stored with them
  // cover every reading taken: a restarted worker replays only what came after.
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
    if (!ms.last.topic.empty()) done_[{ms.last.publisher, ms.last.topic}] = ms.last;
  }
  for (const auto& e : pending_relays_) store_->put_relay_event(e);
  int days = 0;
  for (const auto& [meter, range] : touched)
    days += update_days(*store_, meter, range.first, range.second);
  for (const auto& [key, pos] : done_) store_->put_position(pos);
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
  w_.gauge("pending_minutes", double(pending_.size()));
}

}  // namespace mp::history
