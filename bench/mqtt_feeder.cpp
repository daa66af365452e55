// Bus feeder for bench/bench_mqtt.py: plays "process" (binds ipc://RUN_DIR/process.pub) and,
// after a line on stdin, publishes COUNT readings round-robin over meters m0..m<METERS-1>
// as fast as it can (or RATE_HZ readings a second), each with the 36 values of a DSMR 5 telegram
// (the simulator's names). The readings are built before "go" (one per meter, only the
// numbers and times change), so the feeder costs little CPU next to the worker it feeds
// (the peer, mosquitto_pub -l, is fed by a plain pipe). Prints "sent COUNT in SECONDS s" and waits
// for stdin to close (so the publisher's ring stays up for late subscribers).
//
// usage: mqtt_feeder RUN_DIR METERS COUNT [RATE_HZ]
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bus/bus.h"
#include "common/clock.h"

namespace {

const char* const kNames[] = {"energy_import_t1_kwh",
                              "energy_import_t2_kwh",
                              "energy_export_t1_kwh",
                              "energy_export_t2_kwh",
                              "tariff",
                              "power_import_w",
                              "power_export_w",
                              "power_failures",
                              "long_power_failures",
                              "voltage_sags_l1",
                              "voltage_sags_l2",
                              "voltage_sags_l3",
                              "voltage_swells_l1",
                              "voltage_swells_l2",
                              "voltage_swells_l3",
                              "voltage_l1_v",
                              "voltage_l2_v",
                              "voltage_l3_v",
                              "current_l1_a",
                              "current_l2_a",
                              "current_l3_a",
                              "power_l1_w",
                              "power_l2_w",
                              "power_l3_w",
                              "power_export_l1_w",
                              "power_export_l2_w",
                              "power_export_l3_w",
                              "gas_m3",
                              "energy_import_kwh",
                              "energy_export_kwh",
                              "power_net_w",
                              "dsmr_version_n",
                              "frequency_hz",
                              "power_factor",
                              "current_a",
                              "voltage_v"};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: mqtt_feeder RUN_DIR METERS COUNT [RATE_HZ]\n");
    return 2;
  }
  const int meters = std::atoi(argv[2]);
  const long count = std::atol(argv[3]);
  const double rate = argc == 5 ? std::atof(argv[4]) : 0;
  mp::bus::Publisher pub(argv[1], "process");
  std::printf("ready\n");
  std::fflush(stdout);
  char c;
  if (::read(0, &c, 1) <= 0) return 0;
  std::vector<meterpipe::Envelope> envs(static_cast<size_t>(meters));
  std::vector<std::string> topics;
  for (int m = 0; m < meters; ++m) {
    const std::string meter = "m" + std::to_string(m);
    auto* r = envs[size_t(m)].mutable_reading();
    r->set_meter(meter);
    r->set_protocol("dsmr");
    r->set_device_id("BENCH" + meter);
    for (const char* n : kNames) r->add_values()->set_name(n);
    topics.push_back(mp::bus::topic_reading(meter));
  }
  const int64_t t0 = mp::clock::mono_ns();
  for (long i = 0; i < count; ++i) {
    if (rate > 0) {
      const int64_t due = t0 + int64_t(double(i) * 1e9 / rate);
      const int64_t now = mp::clock::mono_ns();
      if (due > now) usleep(useconds_t((due - now) / 1000));
    }
    auto& env = envs[size_t(i % meters)];
    auto* r = env.mutable_reading();
    const int64_t now = mp::clock::wall_ns();
    r->set_meter_time_ns(now / 1000000000 * 1000000000);
    r->set_receive_time_ns(now);
    for (int k = 0; k < r->values_size(); ++k)
      r->mutable_values(k)->set_number(1000.0 + double(i % 997) * 0.125 + k);
    pub.publish(topics[size_t(i % meters)], env);
  }
  std::printf("sent %ld in %.3f s\n", count, double(mp::clock::mono_ns() - t0) / 1e9);
  std::fflush(stdout);
  while (::read(0, &c, 1) > 0) {
  }
  return 0;
}
