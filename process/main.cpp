// meterpipe-process: raw/<meter> frames in, reading/<meter> typed readings out.
// Decoding itself is pure (protocols/<name>/, docs/ARCHITECTURE.md); this file only wires
// config + bus + decoders, counts what happens and logs it (rate-limited).
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <map>
#include <string>

#include "bus/worker.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/rate_limit.h"
#include "process/decoder.h"
#include "process/positions.h"
#include "process/reading_proto.h"

int main(int argc, char** argv) {
  mp::Worker w(argc, argv, "process");  // (sets TZ: M-Bus meters send local times)
  mp::process::Decoders decoders(w.cfg());
  for (const auto& e : decoders.setup_errors()) mp::log::error("%s", e.c_str());
  mp::bus::Subscriber::Options so;
  so.replay = true;  // a restarted process fetches the frames it missed from acquire
  mp::bus::Subscriber sub(w.cfg().general.run_dir, {"acquire"}, {"raw/"}, so);
  // where this worker got to (process/positions.h)
  const std::string pos_file = w.cfg().general.run_dir + "/process.position";
  const size_t restored = sub.load_positions(pos_file);
  mp::process::Positions pos(pos_file, sub.positions());
  if (restored)
    mp::log::info("resuming after %zu saved bus positions, %zu frames fetched from acquire",
                  restored, sub.catch_up());
  mp::LogLimiter limiter;
  uint64_t readings = 0;
  while (w.running()) {
    mp::bus::Message m;
    if (sub.receive(m, w.wait_ms()) && m.env.has_raw()) {
      const auto& raw = m.env.raw();
      const std::string& meter = raw.source();
      w.count("frames_" + meter);
      meterpipe::Envelope out;
      std::string error;
      const auto status = decoders.decode(raw, *out.mutable_reading(), error);
      if (status != mp::process::Status::pending) pos.decoded(m);
      if (status == mp::process::Status::reading) {
        w.pub().publish(mp::bus::topic_reading(meter), out);
        w.count("readings_" + meter);
        if (++readings == 1) mp::log::info("first reading from %s", meter.c_str());
      } else if (status == mp::process::Status::error) {
        w.count("errors_" + meter);
        uint64_t held = 0;
        if (limiter.allow(meter + ":" + error.substr(0, 20), mp::clock::mono_ns(), held)) {
          if (held)
            mp::log::warn("%s: %s (%llu more like it since the last report)", meter.c_str(),
                          error.c_str(), (unsigned long long)held);
          else
            mp::log::warn("%s: %s", meter.c_str(), error.c_str());
        }
      }
    }
    pos.save_when_due(mp::clock::mono_ns());
    w.set_counter("bus_lost", sub.lost());
    w.set_counter("bus_replayed", sub.replayed());
    w.tick();
  }
  pos.save_when_due(INT64_MAX);
  return 0;
}
