// The upload loop: journals -> batch -> target -> cursors (docs/DURABILITY.md).
//
// Phases of one turn of run():
//   fill     points from the journals (upload/journal_feed.h) into the batch in flight, the
//            only copy of them upload holds (the journals are the spool);
//   deliver  when the batch has `batch_points` points, its first point waited `batch_age_ms`,
//            or the journals hold more (a backlog drains in full batches back to back). A
//            started batch sleeps until its age is due (not woken by each new point).
//            Per result class (upload/influx.h): ok -> the batch's marks are confirmed;
//            bad_data -> dropped (logged, counted), confirmed; too_large -> sent in halves
//            from then on; retry / config_error -> kept, and
//   back off exponential with jitter (1 s .. 5 min, Retry-After honoured) while the target is
//            probed every `probe_ms` (GET /ping): the drain starts within a probe period of
//            the server's return, however long the outage was;
//   commit   the confirmed marks become the journals' cursors at most every `cursor_save_ms`
//            (after the target made its data durable), and at stop (with deliver_at_stop,
//            after the batch in flight and up to one more went to the target). A crash re-reads
//            what came after the saved cursors: InfluxDB overwrites it, the files skip it.
// stop() returns within about a second, also in a backoff or a hanging request.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "upload/influx.h"
#include "upload/journal_feed.h"
#include "upload/targets.h"

namespace mp::upload {

struct UploaderOptions {
  size_t batch_points = 5000;
  int64_t batch_age_ms = 5000;
  size_t batch_max_bytes = 8 << 20;
  int64_t cursor_save_ms = 30000;
  int64_t idle_ms = 100;  // how often the journals are looked at when nothing is new
  // the same when the feed wakes the uploader on changes (Feed::change_fd): only a safety net
  int64_t idle_watched_ms = 5000;
  int64_t probe_ms = 2000;
  bool deliver_at_stop = false;  // a local target (files): the batch in flight goes at stop
  BackoffPolicy backoff;
  int64_t problem_log_interval_ms = 60000;
  uint64_t random_seed = 0;  // 0 = from the clock
};

struct UploaderStats {
  uint64_t points_sent = 0;  // accepted by the target
  uint64_t batches_sent = 0;
  uint64_t retries = 0;
  uint64_t points_retried = 0;
  uint64_t dropped_bad_data = 0;
  uint64_t batches_dropped_bad_data = 0;
  uint64_t points_pending = 0;  // in the batch in flight
  uint64_t cursor_saves = 0;
  uint64_t probes = 0;
  long last_http_status = 0;
  bool config_error = false;
  std::string last_error;
  int64_t last_error_wall_ns = 0;
  double oldest_unsent_age_s = 0;
};

class Uploader {
 public:
  Uploader(Feed& feed, Target& target, UploaderOptions opt = {});
  ~Uploader();
  // Runs until stop(); call from one thread.
  void run();
  // Prompt and idempotent; thread safe.
  void stop();
  UploaderStats stats() const;

 private:
  bool fill_batch(int64_t now);                    // true when the batch should go now
  bool wait_for_batch(int64_t now, int64_t idle);  // false when stopping
  void deliver_rest();
  WriteResult deliver_batch();
  void confirm_batch();
  void back_off(const WriteResult& r);
  void commit(int64_t now, bool force);
  bool wait_ms(int64_t ms);  // false when stopping
  // The same, cut short when the feed may have more (Feed::change_fd).
  bool wait_change(int64_t ms);
  double next_random();

  Feed& feed_;
  Target& target_;
  UploaderOptions opt_;
  std::vector<Point> batch_;
  Feed::Marks batch_marks_, confirmed_;
  int64_t batch_since_ = 0;
  size_t sent_upto_ = 0;  // points of the batch already accepted (a retry resumes there)
  bool backlog_ = false;  // the last batch was full: more is waiting
  size_t batch_limit_;
  int attempt_ = 0;
  bool in_trouble_ = false;
  int64_t last_problem_log_ = 0;
  int64_t last_commit_ = 0;
  uint64_t rng_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int stop_fd_ = -1;  // eventfd: wakes wait_change() on stop()
  UploaderStats st_;  // under mu_
};

}  // namespace mp::upload
