// The mqtt worker's bus loop: readings and relay events from the bus become state topics
// (and per-value topics, Homie properties) and Home Assistant discovery configs in the
// Outbox; commands and HA's birth message come back from the Client; relay commands go to
// actuate through the ControlQueue. Only this loop builds payloads; it never waits for the
// broker or for actuate. It sleeps in one poll (bus::Poller) on the bus socket and an
// eventfd the clients and the ControlQueue write: idle, it wakes for the heartbeat only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "bus/worker.h"
#include "common/rate_limit.h"
#include "mqtt/client.h"
#include "mqtt/control_queue.h"
#include "mqtt/discovery_store.h"
#include "mqtt/homie.h"
#include "mqtt/outbox.h"
#include "mqtt/payloads.h"

namespace mp::mqtt {

class Bridge {
 public:
  // `password`: resolved from password_file / password_env by the caller.
  Bridge(Worker& w, const std::string& password);
  ~Bridge();
  int run();

 private:
  struct MeterSlot {
    MeterInfo info;
    std::set<std::string> announced;  // values with a discovery config sent
    std::map<std::string, std::string> units;
    meterpipe::Reading pending;  // not sent yet (interval_s > 0)
    int64_t pending_send_ns = 0;
    bool has_pending = false;
    int64_t last_sent_ns = INT64_MIN / 2;
  };
  struct RelaySlot {
    std::string output_type;
    RelayView view;
    bool have = false;
  };

  void stop_clients();  // both connections say goodbye, at once
  void on_bus(bus::Message& m);
  void on_reading(meterpipe::Envelope& env);  // may take the reading (Swap)
  void on_relay_event(const meterpipe::RelayEvent& ev);
  void on_incoming(const Incoming& in);
  void on_command(const std::string& relay, const std::string& payload, const std::string& topic);
  void on_control_result(const ControlResult& r);
  void apply_actuate_status(const std::string& json);
  void announce_meter(MeterSlot& m, const meterpipe::Reading& r);
  void announce_relays();
  void republish_all();
  void clear_stale_discovery();
  void flush_due(int64_t now_ns);
  int next_due_ms(int64_t now_ns) const;  // until a held-back state is due (<= 1000)
  void send_reading(const std::string& name, MeterSlot& m, const meterpipe::Reading& r,
                    int64_t send_time_ns);
  void on_homie_incoming(const Incoming& in);
  void publish_relay(const std::string& name, RelaySlot& r, bool force);
  void publish(const std::string& topic, std::string payload, bool retain);
  void publish_discovery(const std::string& kind, const std::string& name, const std::string& topic,
                         const std::string& payload);
  void note(const std::string& key, const std::string& text);  // rate-limited warning
  void update_health();

  Worker& w_;
  const config::Mqtt& cfg_;
  Topics topics_;
  Outbox outbox_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<ControlQueue> control_;
  int notify_fd_ = -1;  // written by the clients and the ControlQueue
  // Homie ([mqtt] homie = true): a device on a connection of its own
  std::unique_ptr<Outbox> homie_out_;
  std::unique_ptr<HomieDevice> homie_;
  std::unique_ptr<Client> homie_client_;
  uint64_t homie_generation_ = 0;
  DiscoveryStore store_;
  std::map<std::string, MeterSlot> meters_;
  std::map<std::string, RelaySlot> relays_;
  std::map<std::string, std::string> last_retained_;  // topic -> payload (states, discovery)
  uint64_t generation_ = 0;
  int64_t next_status_poll_ns_ = 0;
  LogLimiter limiter_;
  uint64_t readings_ = 0, states_ = 0, relay_events_ = 0, commands_ = 0, commands_refused_ = 0,
           discovery_sent_ = 0, births_ = 0;
  uint64_t coalesced_ = 0;  // readings replaced by a newer one before they went out
};

}  // namespace mp::mqtt
