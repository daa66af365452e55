#include "mqtt/payloads.h"

#include <cctype>

#include "common/clock.h"
#include "common/json.h"
#include "mqtt/value_classes.h"

namespace mp::mqtt {
namespace {

using json::append_number;
using json::append_string;

constexpr const char* kVersion = "meterpipe 0.1.0";

void key(std::string& s, const char* k) {
  if (s.size() > 1) s += ',';
  append_string(s, k);
  s += ':';
}

void str_field(std::string& s, const char* k, const std::string& v) {
  key(s, k);
  append_string(s, v);
}

void availability(std::string& s, const Topics& t) {
  str_field(s, "availability_topic", t.status());
  str_field(s, "payload_available", "online");
  str_field(s, "payload_not_available", "offline");
}

std::string sanitized(const std::string& s) {
  std::string out;
  for (unsigned char c : s) out += (std::isalnum(c) || c == '_' || c == '-') ? char(c) : '_';
  return out;
}

}  // namespace

std::string model_of(const MeterInfo& m) {
  if (m.protocol == "dsmr") return "DSMR P1 meter";
  if (m.protocol == "modbus") return "Modbus meter" + (m.type.empty() ? "" : " " + m.type);
  if (m.protocol == "sunspec") return "SunSpec device";
  if (m.protocol == "mbus") return "M-Bus meter";
  return m.protocol;
}

std::string object_id_of(const std::string& value) { return sanitized(value); }

std::string Topics::sensor_config(const std::string& meter, const std::string& value) const {
  return discovery + "/sensor/meterpipe_" + meter + "/" + object_id_of(value) + "/config";
}

std::string Topics::relay_of_set_topic(const std::string& topic) const {
  const std::string head = base + "/relay/";
  const std::string tail = "/set";
  if (topic.size() <= head.size() + tail.size() || topic.rfind(head, 0) != 0 ||
      topic.compare(topic.size() - tail.size(), tail.size(), tail) != 0)
    return "";
  std::string name = topic.substr(head.size(), topic.size() - head.size() - tail.size());
  if (name.find('/') != std::string::npos) return "";
  return name;
}

std::string state_json(const meterpipe::Reading& r, int64_t send_time_ns) {
  std::string s;
  s.reserve(160 + 40 * size_t(r.values_size()));  // one allocation for a typical reading
  s += '{';
  for (const auto& v : r.values()) {
    if (v.name().empty() || v.name() == "timestamp" || v.name() == "meter_time" ||
        v.name() == "receive_time" || v.name() == "time_ns")
      continue;
    key(s, v.name().c_str());
    if (v.value_case() == meterpipe::Value::kNumber)
      append_number(s, v.number());
    else
      append_string(s, v.text());
  }
  const int64_t recv = r.receive_time_ns() > 0 ? r.receive_time_ns() : send_time_ns;
  const int64_t ts = r.meter_time_ns() > 0 ? r.meter_time_ns() : recv;
  str_field(s, "timestamp", clock::iso8601(ts));
  key(s, "meter_time");
  s += r.meter_time_ns() > 0 ? json::quote(clock::iso8601(r.meter_time_ns())) : "null";
  str_field(s, "receive_time", clock::iso8601(recv));
  key(s, "time_ns");
  s += std::to_string(ts);
  s += '}';
  return s;
}

std::string relay_state_payload(const RelayView& r) { return r.on ? "ON" : "OFF"; }

std::string relay_attributes_json(const RelayView& r) {
  std::string s = "{";
  str_field(s, "mode", r.mode);
  str_field(s, "override", r.override_mode);
  key(s, "override_left_s");
  s += std::to_string(r.override_left_s);
  str_field(s, "reason", r.reason);
  key(s, "ok");
  s += r.ok ? "true" : "false";
  str_field(s, "error", r.error);
  key(s, "known");
  s += r.known ? "true" : "false";
  s += '}';
  return s;
}

std::string device_ident(const MeterInfo& m) {
  return "meterpipe_" + sanitized(m.device_id.empty() ? m.name : m.device_id);
}

std::string sensor_unique_id(const MeterInfo& m, const std::string& value) {
  return device_ident(m) + "_" + object_id_of(value);
}

std::string sensor_discovery_json(const Topics& t, const MeterInfo& m, const std::string& value,
                                  const std::string& reading_unit) {
  const ValueClass vc = classify(value);
  std::string s = "{";
  str_field(s, "name", display_name(value));
  str_field(s, "unique_id", sensor_unique_id(m, value));
  str_field(s, "object_id", "meterpipe_" + m.name + "_" + object_id_of(value));
  str_field(s, "state_topic", t.meter_state(m.name));
  // value_json['...'] works for every name (a native id may hold '-', ':' or '.')
  std::string quoted;
  for (char c : value) {
    if (c == '\'' || c == '\\') quoted += '\\';
    quoted += c;
  }
  str_field(s, "value_template", "{{ value_json['" + quoted + "'] }}");
  const std::string unit = vc.unit.empty() ? display_unit(reading_unit) : vc.unit;
  if (!unit.empty()) str_field(s, "unit_of_measurement", unit);
  if (*vc.device_class) str_field(s, "device_class", vc.device_class);
  str_field(s, "state_class", vc.state_class);
  availability(s, t);
  key(s, "device");
  std::string d = "{";
  key(d, "identifiers");
  d += "[" + json::quote(device_ident(m)) + "]";
  str_field(d, "name", m.name);
  str_field(d, "model", model_of(m));
  str_field(d, "sw_version", kVersion);
  if (!m.device_id.empty()) str_field(d, "serial_number", m.device_id);
  d += '}';
  s += d;
  s += '}';
  return s;
}

namespace {

void relay_device(std::string& s, const std::string& relay, const std::string& output_type) {
  key(s, "device");
  std::string d = "{";
  key(d, "identifiers");
  d += "[" + json::quote("meterpipe_relay_" + relay) + "]";
  str_field(d, "name", "meterpipe relay " + relay);
  str_field(d, "model", "relay (" + output_type + " output)");
  str_field(d, "sw_version", kVersion);
  d += '}';
  s += d;
}

}  // namespace

std::string relay_switch_discovery_json(const Topics& t, const std::string& relay,
                                        const std::string& output_type, bool commands) {
  std::string s = "{";
  str_field(s, "name", "Relay " + relay);
  str_field(s, "unique_id", "meterpipe_relay_" + relay);
  str_field(s, "object_id", "meterpipe_relay_" + relay);
  str_field(s, "state_topic", t.relay_state(relay));
  str_field(s, "state_on", "ON");
  str_field(s, "state_off", "OFF");
  str_field(s, "json_attributes_topic", t.relay_attributes(relay));
  if (commands) {
    str_field(s, "command_topic", t.relay_set(relay));
    str_field(s, "payload_on", "ON");
    str_field(s, "payload_off", "OFF");
  }
  availability(s, t);
  relay_device(s, relay, output_type);
  s += '}';
  return s;
}

std::string relay_mode_discovery_json(const Topics& t, const std::string& relay,
                                      const std::string& output_type) {
  std::string s = "{";
  str_field(s, "name", "Relay " + relay + " mode");
  str_field(s, "unique_id", "meterpipe_relay_" + relay + "_mode");
  str_field(s, "object_id", "meterpipe_relay_" + relay + "_mode");
  str_field(s, "state_topic", t.relay_attributes(relay));
  str_field(s, "value_template", "{{ value_json.mode }}");
  str_field(s, "icon", "mdi:state-machine");
  availability(s, t);
  relay_device(s, relay, output_type);
  s += '}';
  return s;
}

}  // namespace mp::mqtt
