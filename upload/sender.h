// The sender loop: moves points from the Spool to InfluxDB on its own thread.
//
// A batch leaves when `batch_points` points are pending or the first pending point has waited
// `batch_age_ms` (defaults 5 000 points / 5 s); a backlog (after an outage) drains in full
// batches back to back. Per result class (upload/influx.h):
//   ok            commit (points removed from the spool)
//   bad_data      the batch is dropped (commit), counted in dropped_bad_data, logged once with
//                 the server's message and the first offending line
//   config_error  data kept; logged at most once a minute; retried with backoff
//   retry         data kept; retried with exponential backoff + jitter (1 s .. 5 min),
//                 honouring Retry-After
// stop() returns within about a second, also during a backoff sleep or a hanging request
// (the transfer is aborted; the batch stays in the spool).
// The loop also calls spool.maybe_sync() every 100 ms, so appended points reach the disk
// within about a second even when no further point arrives.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "upload/influx.h"
#include "upload/spool.h"

namespace mp::upload {

struct SenderOptions {
  size_t batch_points = 5000;
  int64_t batch_age_ms = 5000;
  size_t batch_max_bytes = 8 << 20;
  BackoffPolicy backoff;  // 1 s .. 5 min
  int64_t config_error_log_interval_ms = 60000;
  uint64_t random_seed = 0;  // 0 = seeded from the clock
};

struct SenderStats {
  uint64_t points_received = 0;  // appended to the spool since it was opened
  uint64_t points_sent = 0;      // accepted by the server (2xx)
  uint64_t batches_sent = 0;
  uint64_t points_retried = 0;    // points in attempts that failed and will be retried
  uint64_t retries = 0;           // failed attempts that will be retried (incl. config errors)
  uint64_t dropped_bad_data = 0;  // points dropped because the server refused them (400/422)
  uint64_t batches_dropped_bad_data = 0;
  uint64_t dropped_spool_full = 0;  // points dropped because the spool was full
  uint64_t spool_bytes = 0;
  uint64_t points_pending = 0;
  double oldest_unsent_age_s = 0;  // wall clock now - time of the oldest unsent point
  long last_http_status = 0;
  bool config_error = false;       // the last attempt got 401/403/404
  std::string last_error;          // the last failure ("" when none yet); never secrets
  int64_t last_error_wall_ns = 0;  // when it happened
};

class Sender {
 public:
  Sender(Spool& spool, InfluxConfig cfg, SenderOptions opt = {});
  ~Sender();
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  // "" when the InfluxDB configuration is usable.
  std::string check() const { return client_.check(); }
  void start();
  // Prompt (<= ~1 s) and idempotent.
  void stop();
  // Wakes the loop after appends (optional: it polls every 100 ms anyway).
  void notify();
  SenderStats stats() const;

 private:
  void run();
  bool sleep_for_ms(std::unique_lock<std::mutex>& lk, int64_t ms);  // false when stopping
  double next_random();

  Spool& spool_;
  InfluxClient client_;
  SenderOptions opt_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool woken_ = false;
  uint64_t rng_ = 0;
  SenderStats st_;
};

}  // namespace mp::upload
