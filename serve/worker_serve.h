// The serve worker's loop: feeds the page's state from the bus (reading/, relay/, health/,
// live only: no replay, so it never holds up the real-time path) and pushes each reading
// and relay event to the WebSocket clients. The state and every rendering are pure
// (serve/state.*, serve/api.*); civetweb threads answer requests (serve/worker_http.*).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "bus/worker.h"
#include "serve/worker_http.h"

namespace mp::serve {

class ServeWorker {
 public:
  explicit ServeWorker(Worker& w);
  // Serves until the worker stops; 1 when the HTTP server cannot start.
  int run();

 private:
  void dispatch(const bus::Message& m);
  void take_heartbeats();  // from the bus loop or a request (Shared::take_heartbeats)
  void update_bus_counters(const bus::Subscriber& sub);
  void report();
  int wait_ms() const;
  void end_lapsed_websockets_when_due();
  void trim_memory_when_due();

  Worker& w_;
  Shared shared_;
  HttpServer http_;
  std::unique_ptr<AuthGate> gate_;  // accounts, sessions, relay control (serve/auth_gate.h)
  uint64_t received_ = 0, readings_ = 0, relay_events_ = 0;
  // health/: a subscriber of its own that no wait includes; used under health_mutex_ by
  // whichever thread takes the heartbeats (docs/ARCHITECTURE.md, "Threading")
  std::mutex health_mutex_;
  std::unique_ptr<bus::Subscriber> health_;
  std::atomic<uint64_t> heartbeats_{0};
  std::atomic<uint64_t> health_lost_{0};
  int64_t next_trim_mono_ = 0;
  int64_t next_ws_check_mono_ = 0;
};

// Call first in main(): malloc settings that keep serve's resident size in its budget.
void tune_malloc();

}  // namespace mp::serve
