#include "serve/worker_serve.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>

#include "common/clock.h"
#include "common/log.h"
#include "serve/assets.h"
#include "serve/history_api.h"
#include "serve/worker_auth.h"

namespace mp::serve {

namespace {

// Local day number (days since 1970-01-01 in the configured time zone) of a wall time.
int64_t local_day(int64_t unix_ns) {
  const time_t t = time_t(unix_ns / 1000000000);
  struct tm lt {};
  if (!localtime_r(&t, &lt)) return unix_ns / 86400000000000LL;
  struct tm d {};
  d.tm_year = lt.tm_year;
  d.tm_mon = lt.tm_mon;
  d.tm_mday = lt.tm_mday;
  return int64_t(timegm(&d) / 86400);
}

// The workers serve shows: the config's, and serve itself.
std::vector<std::string> shown_workers(const config::Config& cfg) {
  std::vector<std::string> workers = cfg.workers();
  bool self_listed = false;
  for (const auto& n : workers) self_listed |= n == "serve";
  if (!self_listed) workers.push_back("serve");
  return workers;
}

HttpServer::Options http_options(const config::Config& cfg) {
  HttpServer::Options o;
  o.tls_cert_file = cfg.serve.auth.tls_cert_file;
  o.tls_key_file = cfg.serve.auth.tls_key_file;
  return o;
}

AuthGate::Options gate_options(const config::Config& cfg) {
  const auto& a = cfg.serve.auth;
  AuthGate::Options o;
  o.users_file = a.users_file;
  o.loopback = config::loopback_listen(cfg.serve.listen);
  o.metrics_open = a.metrics_open;
  o.sessions.idle_ns = a.session_idle_s * 1000000000;
  o.sessions.absolute_ns = a.session_max_s * 1000000000;
  return o;
}

State initial_state(const config::Config& cfg) {
  std::vector<std::string> meters;
  std::vector<std::pair<std::string, std::string>> relays;
  for (const auto& m : cfg.meters) meters.push_back(m.name);
  for (const auto& r : cfg.relays) relays.push_back({r.name, r.meter});
  State s(meters, relays, shown_workers(cfg));
  s.set_health_stale_s(cfg.general.watchdog_s);
  return s;
}

}  // namespace

void tune_malloc() {
  // civetweb's threads would each get their own malloc arena; one is plenty for this load
  // and keeps the resident size inside the budget (10 MB with one meter)
  mallopt(M_ARENA_MAX, 1);
  // big transient buffers (a /metrics text, 24 h of history as JSON) go straight back to the
  // system instead of growing the heap, and a freed heap top is returned early
  mallopt(M_MMAP_THRESHOLD, 32 * 1024);
  mallopt(M_TRIM_THRESHOLD, 64 * 1024);
}

ServeWorker::ServeWorker(Worker& w)
    : w_(w),
      shared_{initial_state(w.cfg())},
      http_(w.cfg().serve.listen, shared_, http_options(w.cfg())),
      gate_(std::make_unique<AuthGate>(gate_options(w.cfg()), &web_assets(),
                                       relay_control(w.cfg().general.run_dir, http_))) {
  http_.set_gate(gate_.get());
  // set before the HTTP threads start; a no-op until run() made the subscriber and after
  shared_.take_heartbeats = [this] { take_heartbeats(); };
  if (!w.cfg().general.timezone.empty()) {
    setenv("TZ", w.cfg().general.timezone.c_str(), 1);
    tzset();
  }
  history_api::configure(w.cfg());
  shared_.start_mono_ns = clock::mono_ns();
  shared_.info.pid = int(getpid());
  shared_.info.listen = w.cfg().serve.listen;
  next_trim_mono_ = clock::mono_ns() + 5000000000LL;
}

int ServeWorker::run() {
  const auto& cfg = w_.cfg();
  std::string err;
  if (!http_.start(err)) {
    log::error("serve: %s", err.c_str());
    return 1;
  }
  log::info("serving %s://%s/ (REST /api/..., WebSocket /ws, Prometheus /metrics; accounts: %s)",
            cfg.serve.auth.tls_cert_file.empty() ? "http" : "https", cfg.serve.listen.c_str(),
            gate_->accounts_state().c_str());
  bus::Subscriber sub(cfg.general.run_dir, shown_workers(cfg), {"reading/", "relay/"});
  // Heartbeats wait in their socket until the loop wakes anyway (a reading, a relay event,
  // serve's own heartbeat: at least every idle heartbeat period) or a request asks (the
  // page's /api/status, /metrics): each worker's heartbeat no longer wakes serve.
  {
    std::lock_guard<std::mutex> lk(health_mutex_);
    health_ = std::make_unique<bus::Subscriber>(cfg.general.run_dir, shown_workers(cfg),
                                                std::vector<std::string>{"health/"});
  }
  while (w_.running()) {
    bus::Message m;
    bool got = sub.receive(m, wait_ms());  // asleep until a message or the next deadline
    while (got) {
      dispatch(m);
      got = sub.receive(m, 0);
    }
    take_heartbeats();
    update_bus_counters(sub);
    report();
    end_lapsed_websockets_when_due();
    trim_memory_when_due();
    w_.tick();
  }
  http_.stop();
  std::lock_guard<std::mutex> lk(health_mutex_);
  health_.reset();
  return 0;
}

void ServeWorker::take_heartbeats() {
  std::lock_guard<std::mutex> hl(health_mutex_);
  if (!health_) return;
  bus::Message m;
  while (health_->receive(m, 0)) {
    ++heartbeats_;
    if (!m.env.has_health()) continue;
    // a heartbeat counts from when it was sent (the monotonic clock is the machine's), not
    // from when it was taken
    const int64_t now = clock::mono_ns(), sent = m.env.health().send_mono_ns();
    const int64_t mono = sent > 0 && sent <= now ? sent : now;
    const int64_t wall = m.env.send_time_ns() ? m.env.send_time_ns() : clock::wall_ns();
    std::lock_guard<std::mutex> lk(shared_.mutex);
    shared_.state.on_health(m.env, mono, wall);
  }
  health_lost_ = health_->lost();
}

void ServeWorker::dispatch(const bus::Message& m) {
  ++received_;
  const auto& env = m.env;
  std::string push;
  if (env.has_reading()) {
    const int64_t t =
        env.reading().receive_time_ns() ? env.reading().receive_time_ns() : env.send_time_ns();
    std::lock_guard<std::mutex> lk(shared_.mutex);
    if (shared_.state.on_reading(env, local_day(t))) {
      // the event for open pages only: a page that opens later fetches /api/last itself
      if (http_.clients() > 0) push = shared_.state.reading_event_json(env);
      ++readings_;
    }
  } else if (env.has_relay()) {
    std::lock_guard<std::mutex> lk(shared_.mutex);
    shared_.state.on_relay(env);
    push = State::relay_event_json(env);
    ++relay_events_;
  }
  if (!push.empty()) http_.broadcast(std::move(push));
}

void ServeWorker::update_bus_counters(const bus::Subscriber& sub) {
  std::map<std::string, uint64_t> lost;
  for (const auto& [key, st] : sub.positions())
    if (key.second.rfind("reading/", 0) == 0) lost[key.second.substr(8)] += st.lost;
  std::lock_guard<std::mutex> lk(shared_.mutex);
  for (const auto& [meter, n] : lost) shared_.state.set_lost(meter, n);
  shared_.info.bus_received = received_ + heartbeats_;
  shared_.info.bus_lost = sub.lost() + health_lost_;
}

void ServeWorker::report() {
  // readings and relay events only: a counter that moved with every heartbeat taken (serve's
  // own too) would make each of serve's heartbeats one "with news" (bus/worker.h)
  w_.set_counter("bus_received", received_);
  w_.set_counter("bus_lost", shared_.info.bus_lost);
  w_.set_counter("readings", readings_);
  w_.set_counter("relay_events", relay_events_);
  w_.set_counter("http_requests", http_.requests());
  w_.set_counter("http_client_errors", http_.client_errors());
  w_.set_counter("websocket_messages", http_.ws_messages());
  w_.set_counter("websocket_dropped", http_.dropped());
  w_.gauge("websocket_clients", double(http_.clients()));
}

int ServeWorker::wait_ms() const {
  const int heartbeat = w_.wait_ms();
  if (http_.clients() == 0) return heartbeat;
  // open WebSockets: their sessions expire and the users file changes without a request, so
  // the loop also wakes for the once-a-second look (only while a page is open)
  const int64_t left = (next_ws_check_mono_ - clock::mono_ns()) / 1000000 + 1;
  return int(std::clamp<int64_t>(left, 0, heartbeat));
}

void ServeWorker::end_lapsed_websockets_when_due() {
  // sessions expire and users files change without a request: look once a second while
  // WebSockets are open (wait_ms)
  const int64_t now = clock::mono_ns();
  if (now < next_ws_check_mono_) return;
  http_.end_lapsed_clients();
  next_ws_check_mono_ = now + 1000000000LL;
}

void ServeWorker::trim_memory_when_due() {
  if (clock::mono_ns() < next_trim_mono_) return;
  // give back what start-up (config, descriptors) and bursts of requests left free
  malloc_trim(0);
  next_trim_mono_ = clock::mono_ns() + 60000000000LL;
}

}  // namespace mp::serve
