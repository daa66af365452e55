// meterpipe-serve: live web page, REST and WebSocket API and Prometheus /metrics.
// Subscribes to reading/ (process), relay/ (actuate) and health/ (every worker) without
// replay: it only shows what is live and never holds up the real-time path. The state and
// every JSON/metrics rendering are pure (serve/state.*, serve/api.*); civetweb threads
// answer requests under one mutex (serve/worker_http.*); this loop feeds the state from the
// bus and pushes each reading and relay event to the WebSocket clients.
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>

#include "bus/worker.h"
#include "common/clock.h"
#include "common/log.h"
#include "serve/worker_http.h"

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

}  // namespace

int main(int argc, char** argv) {
  // civetweb's threads would each get their own malloc arena; one is plenty for this load
  // and keeps the resident size inside the budget (10 MB with one meter)
  mallopt(M_ARENA_MAX, 1);
  // big transient buffers (a /metrics text, 24 h of history as JSON) go straight back to the
  // system instead of growing the heap, and a freed heap top is returned early
  mallopt(M_MMAP_THRESHOLD, 32 * 1024);
  mallopt(M_TRIM_THRESHOLD, 64 * 1024);
  mp::Worker w(argc, argv, "serve");
  const auto& cfg = w.cfg();
  if (!cfg.general.timezone.empty()) {
    setenv("TZ", cfg.general.timezone.c_str(), 1);
    tzset();
  }

  std::vector<std::string> meters, workers = cfg.workers();
  std::vector<std::pair<std::string, std::string>> relays;
  for (const auto& m : cfg.meters) meters.push_back(m.name);
  for (const auto& r : cfg.relays) relays.push_back({r.name, r.meter});
  bool self_listed = false;
  for (const auto& n : workers) self_listed |= n == "serve";
  if (!self_listed) workers.push_back("serve");

  mp::serve::Shared shared{mp::serve::State(meters, relays, workers)};
  shared.start_mono_ns = mp::clock::mono_ns();
  shared.info.pid = int(getpid());
  shared.info.listen = cfg.serve.listen;

  mp::serve::HttpServer http(cfg.serve.listen, shared, mp::serve::HttpServer::Options{});
  std::string err;
  if (!http.start(err)) {
    mp::log::error("serve: %s", err.c_str());
    return 1;
  }
  mp::log::info("serving http://%s/ (REST /api/..., WebSocket /ws, Prometheus /metrics)",
                cfg.serve.listen.c_str());

  mp::bus::Subscriber sub(cfg.general.run_dir, workers, {"reading/", "relay/", "health/"});
  uint64_t received = 0, readings = 0, relay_events = 0;
  int64_t next_trim = mp::clock::mono_ns() + 5000000000LL;
  while (w.running()) {
    mp::bus::Message m;
    bool got = sub.receive(m, std::min(w.wait_ms(), 200));
    while (got) {
      ++received;
      const auto& env = m.env;
      std::string push;
      if (env.has_reading()) {
        const int64_t t =
            env.reading().receive_time_ns() ? env.reading().receive_time_ns() : env.send_time_ns();
        std::lock_guard<std::mutex> lk(shared.mutex);
        if (shared.state.on_reading(env, local_day(t))) {
          push = shared.state.reading_event_json(env);
          ++readings;
        }
      } else if (env.has_relay()) {
        std::lock_guard<std::mutex> lk(shared.mutex);
        shared.state.on_relay(env);
        push = mp::serve::State::relay_event_json(env);
        ++relay_events;
      } else if (env.has_health()) {
        std::lock_guard<std::mutex> lk(shared.mutex);
        shared.state.on_health(env, mp::clock::mono_ns(), mp::clock::wall_ns());
      }
      if (!push.empty()) http.broadcast(std::move(push));
      got = sub.receive(m, 0);
    }
    {
      std::map<std::string, uint64_t> lost;
      for (const auto& [key, st] : sub.positions())
        if (key.second.rfind("reading/", 0) == 0) lost[key.second.substr(8)] += st.lost;
      std::lock_guard<std::mutex> lk(shared.mutex);
      for (const auto& [meter, n] : lost) shared.state.set_lost(meter, n);
      shared.info.bus_received = received;
      shared.info.bus_lost = sub.lost();
    }
    w.set_counter("bus_received", received);
    w.set_counter("bus_lost", sub.lost());
    w.set_counter("readings", readings);
    w.set_counter("relay_events", relay_events);
    w.set_counter("http_requests", http.requests());
    w.set_counter("http_client_errors", http.client_errors());
    w.set_counter("websocket_messages", http.ws_messages());
    w.set_counter("websocket_dropped", http.dropped());
    w.gauge("websocket_clients", double(http.clients()));
    if (mp::clock::mono_ns() >= next_trim) {
      // give back what start-up (config, descriptors) and bursts of requests left free
      malloc_trim(0);
      next_trim = mp::clock::mono_ns() + 60000000000LL;
    }
    w.tick();
  }
  http.stop();
  return 0;
}
