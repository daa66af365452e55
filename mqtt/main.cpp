// meterpipe-mqtt: readings (reading/ from process) and relays (relay/ from actuate) on an
// MQTT broker, with Home Assistant discovery and optional relay commands. The bus loop
// (mqtt/worker_bridge.*) hands messages to the network thread (mqtt/client.*) through a
// bounded Outbox, so a slow or absent broker never holds up the bus.
#include <unistd.h>

#include "bus/worker.h"
#include "common/log.h"
#include "mqtt/worker_bridge.h"

int main(int argc, char** argv) {
  mp::Worker w(argc, argv, "mqtt");
  const auto& m = w.cfg().mqtt;
  std::string err;
  std::string password;
  if (!mp::config::resolve_secret(m.password_file, m.password_env, password, err)) {
    // a config problem a restart cannot fix: say so once and idle (no restart storm)
    mp::log::error("mqtt password: %s", err.c_str());
    w.info("broker_error", "password: " + err);
    while (w.running()) {
      usleep(w.wait_ms() * 1000);
      w.tick();
    }
    return 0;
  }
  mp::mqtt::Bridge bridge(w, password);
  return bridge.run();
}
