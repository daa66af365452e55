// What every worker process shares: command line (--config FILE), config loading, logging,
// its bus publisher, signal handling and the health heartbeat the supervisor watches.
//
// A worker's main loop waits at most `wait_ms()` for its own work and calls `tick()`; tick
// publishes health/<worker> when due: within heartbeat_period_ns() (watchdog_s / 3, at most
// 1.75 s in the first 10 s, at most 10 s later) after its content changed, else every
// idle_heartbeat_period_ns() (watchdog_s / 2, at most 10 s: the supervisor's watchdog needs
// one per watchdog_s). A worker whose loop hangs stops
// heartbeating and the supervisor restarts it. Threads of a worker report progress with
// `progress(slot)`; when one of them is stuck for longer than the watchdog, heartbeats stop too.
#pragma once

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bus/bus.h"
#include "config/config.h"

namespace mp {

class Worker {
 public:
  // Parses argv (--config FILE), loads the config (exit 2 with every error on stderr),
  // sets up logging and signals, binds the publisher (exit 1 naming the endpoint).
  Worker(int argc, char** argv, const std::string& name);
  ~Worker();

  const config::Config& cfg() const { return cfg_; }
  bus::Publisher& pub() { return *pub_; }
  const std::string& name() const { return name_; }

  bool running() const;
  // Milliseconds until the next heartbeat is due (0..idle heartbeat period).
  int wait_ms() const;
  // After a change of the health content: general.watchdog_s / 3, at most 1.75 s in the
  // first 10 s (the supervisor and tests see a started worker soon), at most 10 s later
  // (counters reach `meterpipe status` and serve that soon; each heartbeat wakes the worker's
  // and its subscribers' bus threads: docs/ARCHITECTURE.md, "Threading").
  int64_t heartbeat_period_ns(int64_t now_mono_ns) const {
    const int64_t cap = starting(now_mono_ns) ? 1750000000LL : 10000000000LL;
    return std::min<int64_t>(cap, int64_t(cfg_.general.watchdog_s * 1e9 / 3));
  }
  // Nothing changed: general.watchdog_s / 2 (the supervisor kills after a whole watchdog_s
  // without one; serve shows a worker as down then too).
  // At most 10 s: a heartbeat lost now and then (a subscriber reconnecting) costs little.
  int64_t idle_heartbeat_period_ns() const {
    return std::min<int64_t>(10000000000LL, int64_t(cfg_.general.watchdog_s * 1e9 / 2));
  }
  // Publishes health when due.
  void tick();
  // Sleeps until the heartbeat is due, the health content changed (from another thread:
  // the next heartbeat is then due sooner) or a stop was requested. For main loops that
  // have nothing else to wait for.
  void sleep_until_due();

  // Health content, thread-safe.
  void count(const std::string& counter, uint64_t n = 1);
  void set_counter(const std::string& counter, uint64_t value);
  void gauge(const std::string& name, double v);
  void info(const std::string& key, const std::string& value);

  // Progress slots for worker threads (returns the slot id).
  int add_thread(const std::string& what);
  void progress(int slot);

 private:
  std::string name_;
  config::Config cfg_;
  std::unique_ptr<bus::Publisher> pub_;
  int64_t start_mono_;
  int64_t next_health_mono_ = 0;       // due after a change (heartbeat_period_ns grid)
  int64_t next_idle_health_mono_ = 0;  // due anyway (idle_heartbeat_period_ns grid)
  mutable std::mutex mutex_;
  bool changed_ = true;  // health content changed since the last heartbeat
  bool busy_ = false;    // the last heartbeat had changes: the next is due on the short period
  bool due_with_news(int64_t now);
  // The first 10 s: heartbeats on the short period (the first ones may reach subscribers
  // that are still connecting: ZeroMQ drops them).
  bool starting(int64_t now) const { return now - start_mono_ < 10000000000LL; }
  int changed_fd_ = -1;  // eventfd: readable once changed_ turned true (sleep_until_due)
  void mark_changed();   // with mutex_ held
  std::map<std::string, uint64_t> counters_;
  std::map<std::string, double> gauges_;
  std::map<std::string, std::string> info_;
  struct Slot {
    std::string what;
    std::atomic<int64_t> last{0};
  };
  std::vector<std::unique_ptr<Slot>> slots_;
  void trim_after_start(int64_t now);
  bool trimmed_ = false;
  bool stalled_logged_ = false;
  int parent_ = 0;
};

// Set by SIGTERM/SIGINT in any process that calls install_stop_signals().
extern std::atomic<bool> g_stop;
void install_stop_signals();

}  // namespace mp
