#include "bus/worker.h"

#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "common/clock.h"
#include "common/log.h"
#include "common/wake.h"

namespace mp {

std::atomic<bool> g_stop{false};

namespace {
void on_stop(int) {
  g_stop = true;
  wake::request_stop();  // wakes every thread waiting on it (common/wake.h)
}
}  // namespace

void install_stop_signals() {
  (void)wake::stop_fd();  // made before the handler may use it
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

// One malloc arena for the whole process instead of one per thread that allocates: the
// workers' threads are few and mostly asleep, and each arena keeps its own pages resident.
// Before any thread starts (the bus's are made with the publisher).
static void one_malloc_arena() { mallopt(M_ARENA_MAX, 1); }

Worker::Worker(int argc, char** argv, const std::string& name) : name_(name) {
  one_malloc_arena();
  log::init(name_);
  std::string file;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--config" || a == "-c") && i + 1 < argc)
      file = argv[++i];
    else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: meterpipe-%s --config FILE\n"
          "A meterpipe worker; normally started by `meterpipe run`.\n",
          name_.c_str());
      std::exit(0);
    } else {
      log::error("unknown argument %s (usage: meterpipe-%s --config FILE)", a.c_str(),
                 name_.c_str());
      std::exit(2);
    }
  }
  if (file.empty()) {
    log::error("no config file given (usage: meterpipe-%s --config FILE)", name_.c_str());
    std::exit(2);
  }
  auto res = config::load_file(file);
  if (!res.config) {
    for (const auto& e : res.errors) log::error("%s", e.str().c_str());
    std::exit(2);
  }
  cfg_ = std::move(*res.config);
  // Local times (M-Bus meters' clocks, days and tariffs, the rules' schedules) are in
  // general.timezone in every worker, whatever the system's zone; set before any thread
  // starts (setenv is not thread-safe).
  if (!cfg_.general.timezone.empty()) setenv("TZ", cfg_.general.timezone.c_str(), 1);
  tzset();
  log::Level lv;
  if (log::parse_level(cfg_.general.log_level, lv) && !std::getenv("MP_LOG_LEVEL"))
    log::set_level(lv);
  install_stop_signals();
  try {
    bus::Publisher::Options opt;
    opt.ring_size = size_t(cfg_.general.replay_ring);
    pub_ = std::make_unique<bus::Publisher>(cfg_.general.run_dir, name_, opt);
  } catch (const std::exception& e) {
    log::error("%s", e.what());
    std::exit(1);
  }
  start_mono_ = clock::mono_ns();
  next_health_mono_ = next_idle_health_mono_ = start_mono_;
  changed_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  // half of what a stuck thread may take (tick); the byte sources' reads and the runners'
  // sleeps end on the stop notice, so it does not delay a stop
  wake::set_progress_period_ns(int64_t(cfg_.general.watchdog_s * 1e9 / 4));
  parent_ = getppid();
}

Worker::~Worker() {
  if (changed_fd_ >= 0) ::close(changed_fd_);
}

bool Worker::running() const { return !g_stop.load(); }

int Worker::wait_ms() const {
  int64_t due;
  {
    std::lock_guard<std::mutex> l(mutex_);
    due = changed_ || busy_ ? next_health_mono_ : next_idle_health_mono_;
  }
  const int64_t left = due - clock::mono_ns();
  if (left <= 0) return 0;
  return int(left / 1000000 + 1);
}

void Worker::sleep_until_due() {
  pollfd p[2] = {{wake::stop_fd(), POLLIN, 0}, {changed_fd_, POLLIN, 0}};
  const int ms = wait_ms();
  if (ms > 0 && ::poll(p, 2, ms) > 0 && p[1].revents) {
    uint64_t n;
    (void)!::read(changed_fd_, &n, sizeof n);
    if (const int again = wait_ms(); again > 0) (void)::poll(p, 1, again);  // until due
  }
}

void Worker::mark_changed() {
  if (changed_) return;
  changed_ = true;
  // while busy, the main loop wakes at the next heartbeat_period_ns point anyway
  const uint64_t one = 1;
  if (!busy_ && changed_fd_ >= 0) (void)!::write(changed_fd_, &one, sizeof one);
}

void Worker::count(const std::string& c, uint64_t n) {
  std::lock_guard<std::mutex> l(mutex_);
  auto [it, added] = counters_.try_emplace(c, 0);
  it->second += n;
  if (added || n) mark_changed();
}
void Worker::set_counter(const std::string& c, uint64_t v) {
  std::lock_guard<std::mutex> l(mutex_);
  auto [it, added] = counters_.try_emplace(c, v);
  if (added || it->second != v) mark_changed();
  it->second = v;
}
void Worker::gauge(const std::string& n, double v) {
  std::lock_guard<std::mutex> l(mutex_);
  auto [it, added] = gauges_.try_emplace(n, v);
  if (added || it->second != v) mark_changed();
  it->second = v;
}
void Worker::info(const std::string& k, const std::string& v) {
  std::lock_guard<std::mutex> l(mutex_);
  auto [it, added] = info_.try_emplace(k, v);
  if (added || it->second != v) mark_changed();
  it->second = v;
}

int Worker::add_thread(const std::string& what) {
  std::lock_guard<std::mutex> l(mutex_);
  slots_.push_back(std::make_unique<Slot>());
  slots_.back()->what = what;
  slots_.back()->last = clock::mono_ns();
  return int(slots_.size() - 1);
}

void Worker::progress(int slot) {
  std::lock_guard<std::mutex> l(mutex_);
  if (slot >= 0 && size_t(slot) < slots_.size()) slots_[slot]->last = clock::mono_ns();
}

// A busy worker's heartbeat point (heartbeat_period_ns) that finds nothing new: no
// heartbeat, the idle rhythm again. False then.
bool Worker::due_with_news(int64_t now) {
  std::lock_guard<std::mutex> l(mutex_);
  if (changed_ || now >= next_idle_health_mono_ || starting(now)) return true;
  busy_ = false;
  return false;
}

void Worker::tick() {
  const int64_t now = clock::mono_ns();
  if (wait_ms() > 0 || !due_with_news(now)) return;
  if (std::getenv("MP_SUPERVISED") && getppid() != parent_) {
    // the supervisor is gone (PR_SET_PDEATHSIG covers most cases; this covers the rest)
    log::warn("supervisor gone: stopping");
    g_stop = true;
    wake::request_stop();
    return;
  }
  // No more often than the watchdog and serve need: each one wakes every subscriber. On
  // grids of the (machine-wide) monotonic clock, so the workers' heartbeats leave together
  // and the supervisor and serve take them in one wake-up instead of one each
  // (docs/ARCHITECTURE.md, "Threading").
  const int64_t period = heartbeat_period_ns(now), idle = idle_heartbeat_period_ns();
  meterpipe::Envelope env;
  auto* h = env.mutable_health();
  {
    std::lock_guard<std::mutex> l(mutex_);
    next_health_mono_ = (now / period + 1) * period;
    next_idle_health_mono_ = (now / idle + 1) * idle;
    busy_ = changed_ || starting(now);
    changed_ = false;
    uint64_t n;
    if (changed_fd_ >= 0) (void)!::read(changed_fd_, &n, sizeof n);
    // A stuck worker thread must make the whole worker look hung to the supervisor.
    const int64_t limit = int64_t(cfg_.general.watchdog_s * 1e9) / 2;
    for (const auto& s : slots_) {
      if (now - s->last > limit) {
        if (!stalled_logged_)
          log::error("thread '%s' made no progress for %.1f s: stopping heartbeats",
                     s->what.c_str(), double(now - s->last) / 1e9);
        stalled_logged_ = true;
        return;
      }
    }
    h->set_worker(name_);
    h->set_pid(getpid());
    h->set_uptime_s(double(now - start_mono_) / 1e9);
    h->set_send_mono_ns(now);
    for (const auto& [k, v] : counters_) (*h->mutable_counters())[k] = v;
    for (const auto& [k, v] : gauges_) (*h->mutable_gauges())[k] = v;
    for (const auto& [k, v] : info_) (*h->mutable_info())[k] = v;
  }
  pub_->publish(bus::topic_health(name_), env);
  trim_after_start(now);
}

// Once, a few seconds after the start: what loading the config and opening everything left
// free goes back to the system (docs/ARCHITECTURE.md, "Threading").
void Worker::trim_after_start(int64_t now) {
  if (trimmed_ || now - start_mono_ < 5000000000LL) return;
  trimmed_ = true;
  malloc_trim(0);
}

}  // namespace mp
