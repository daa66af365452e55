// Topics and payloads of the mqtt worker (pure: no sockets, no clock).
//
//   <base>/status                        online (retained) / offline (Last Will)
//   <base>/<meter>/state                 JSON: every value of a reading + its timestamps
//   <base>/<meter>/<value>               the plain value (number or text), per_value_topics
//   <base>/relay/<name>/state            ON | OFF
//   <base>/relay/<name>/attributes       JSON: mode, override, override_left_s, reason, ...
//   <base>/relay/<name>/set              commands in (with [mqtt] commands = true)
//   <prefix>/sensor/meterpipe_<meter>/<value>/config      HA discovery, one per value
//   <prefix>/switch/meterpipe_relay_<name>/switch/config  HA discovery of a relay
//   <prefix>/sensor/meterpipe_relay_<name>/mode/config    HA discovery of the relay's mode
#pragma once

#include <cstdint>
#include <string>

#include "meterpipe.pb.h"

namespace mp::mqtt {

std::string object_id_of(const std::string& value);

struct Topics {
  std::string base = "meterpipe";
  std::string discovery = "homeassistant";

  std::string status() const { return base + "/status"; }
  std::string meter_state(const std::string& meter) const { return base + "/" + meter + "/state"; }
  // <base>/<meter>/<value> (per_value_topics): `value` made topic-safe (object_id_of)
  std::string meter_value(const std::string& meter, const std::string& value) const {
    return base + "/" + meter + "/" + object_id_of(value);
  }
  std::string relay_state(const std::string& r) const { return base + "/relay/" + r + "/state"; }
  std::string relay_attributes(const std::string& r) const {
    return base + "/relay/" + r + "/attributes";
  }
  std::string relay_set(const std::string& r) const { return base + "/relay/" + r + "/set"; }
  std::string relay_set_filter() const { return base + "/relay/+/set"; }
  std::string ha_status() const { return discovery + "/status"; }
  // `value` is made topic-safe (object_id_of).
  std::string sensor_config(const std::string& meter, const std::string& value) const;
  std::string switch_config(const std::string& relay) const {
    return discovery + "/switch/meterpipe_relay_" + relay + "/switch/config";
  }
  std::string relay_mode_config(const std::string& relay) const {
    return discovery + "/sensor/meterpipe_relay_" + relay + "/mode/config";
  }
  // The relay name of a <base>/relay/<name>/set topic, "" when `topic` is not one.
  std::string relay_of_set_topic(const std::string& topic) const;
};

// A value name as HA wants ids and object ids: letters, digits, _ and - kept, others as _
// ("dsmr_1-0:99.1.0" -> "dsmr_1-0_99_1_0").
std::string object_id_of(const std::string& value);

// {"<value name>": number or text, ..., "timestamp": ISO 8601 (meter time, else receive
// time), "meter_time": ISO or null, "receive_time": ISO, "time_ns": ns of timestamp}.
std::string state_json(const meterpipe::Reading& r, int64_t send_time_ns);

// What is known of a relay (from relay/ events and actuate's status).
struct RelayView {
  bool known = false;
  bool on = false;
  std::string mode;                    // auto | manual | failsafe | ...
  std::string override_mode = "auto";  // auto | on | off
  int64_t override_left_s = 0;
  std::string reason;
  bool ok = true;
  std::string error;
};
std::string relay_state_payload(const RelayView& r);  // "ON" / "OFF"
std::string relay_attributes_json(const RelayView& r);

// A meter as discovery describes it.
struct MeterInfo {
  std::string name;       // config name
  std::string protocol;   // dsmr, modbus, ...
  std::string type;       // register map (modbus)
  std::string device_id;  // equipment id / serial from the readings ("" = unknown)
};
// "DSMR P1 meter", "Modbus meter sdm630", ...
std::string model_of(const MeterInfo& m);
// Stable HA device identifier: "meterpipe_" + the equipment id (letters, digits, _ and -
// kept, others as _) when the meter gives one, else the config name.
std::string device_ident(const MeterInfo& m);
std::string sensor_unique_id(const MeterInfo& m, const std::string& value);
// HA discovery config of one numeric value of a meter. `reading_unit` is used when the value
// table has no unit for it.
std::string sensor_discovery_json(const Topics& t, const MeterInfo& m, const std::string& value,
                                  const std::string& reading_unit);
std::string relay_switch_discovery_json(const Topics& t, const std::string& relay,
                                        const std::string& output_type, bool commands);
std::string relay_mode_discovery_json(const Topics& t, const std::string& relay,
                                      const std::string& output_type);

}  // namespace mp::mqtt
