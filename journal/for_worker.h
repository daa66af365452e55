// The journal of a worker as the configuration sets it up: <state_dir>/journal/<worker>,
// group commit every general.durability_s, fdatasync every minute. Only written when a durable
// consumer is enabled (upload, history: both read acquire's and actuate's journals). Health
// counters of a writer, the same in every worker.
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "bus/worker.h"
#include "common/log.h"
#include "config/config.h"
#include "journal/journal.h"

namespace mp::journal {

inline std::string dir_of(const config::Config& cfg, const std::string& worker) {
  return cfg.general.state_dir + "/journal/" + worker;
}

inline WriterOptions options_for(const config::Config& cfg, const std::string& worker) {
  WriterOptions o;
  o.dir = dir_of(cfg, worker);
  o.commit_ms = int64_t(cfg.general.durability_s * 1000);
  o.sync_ms = 60000;
  o.max_bytes = uint64_t(cfg.upload.spool_max_mb) << 20;
  o.compress = true;  // consecutive frames differ in a few digits: ~20x less to write
  return o;
}

// An open writer, or nullptr when no durable consumer is configured (upload, history) or the
// directory cannot be used (logged: the worker runs on,
// without the durability promise).
inline std::unique_ptr<Writer> open_for(const config::Config& cfg, const std::string& worker) {
  // A consumer turned off: its cursor would keep every segment until the journal is full
  // (and each segment deleted then would be logged as unread)
  if (!cfg.upload.enabled) std::remove((dir_of(cfg, worker) + "/cursor.upload").c_str());
  if (!cfg.history.enabled) std::remove((dir_of(cfg, worker) + "/cursor.history").c_str());
  if (!cfg.upload.enabled && !cfg.history.enabled) return nullptr;
  auto w = std::make_unique<Writer>();
  std::string err;
  if (!w->open(options_for(cfg, worker), err)) {
    log::error("journal: %s (upload and history read it: they get nothing from %s)", err.c_str(),
               worker.c_str());
    return nullptr;
  }
  return w;
}

inline void report(Worker& w, const Writer* j) {
  if (!j) return;
  const auto st = j->stats();
  w.set_counter("journal_records", st.written);
  w.set_counter("journal_dropped_queue_full", st.dropped_queue_full);
  w.set_counter("journal_write_errors", st.write_errors);
  w.set_counter("journal_segments_dropped_full", st.segments_dropped);
  w.gauge("journal_bytes", double(st.bytes));
}

}  // namespace mp::journal
