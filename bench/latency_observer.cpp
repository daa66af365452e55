// Bus observer for bench/bench_latency.py: subscribes to relay/ on actuate's publisher like
// any C++ consumer (bus::Subscriber) and prints one line per event, stamped the moment the
// event was taken off the socket, so the Python driver's own delays never enter the figures:
//
//   <new_state 0|1> <ok 0|1> <trigger_mono_ns> <trigger_wall_ns> <publish_wall_ns>
//   <seen_mono_ns> <seen_wall_ns>
//
// usage: latency_observer RUN_DIR   (runs until stdin closes or SIGTERM)
#include <poll.h>
#include <unistd.h>

#include <cstdio>

#include "bus/bus.h"
#include "common/clock.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: latency_observer RUN_DIR\n");
    return 2;
  }
  mp::bus::Subscriber sub(argv[1], {"actuate"}, {"relay/"});
  std::printf("ready\n");
  std::fflush(stdout);
  while (true) {
    mp::bus::Message m;
    if (sub.receive(m, 200)) {
      const int64_t seen_mono = mp::clock::mono_ns(), seen_wall = mp::clock::wall_ns();
      if (!m.env.has_relay()) continue;
      const auto& r = m.env.relay();
      std::printf("%d %d %lld %lld %lld %lld %lld\n", r.new_state() ? 1 : 0, r.ok() ? 1 : 0,
                  (long long)r.trigger_receive_mono_ns(), (long long)r.trigger_receive_time_ns(),
                  (long long)m.env.send_time_ns(), (long long)seen_mono, (long long)seen_wall);
      std::fflush(stdout);
    }
    pollfd p{0, POLLIN, 0};  // the driver closed our stdin: done
    if (::poll(&p, 1, 0) > 0) {
      char c;
      if (::read(0, &c, 1) <= 0) return 0;
    }
  }
}
