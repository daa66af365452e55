// [mqtt]: readings and relays on an MQTT broker (the mqtt worker). The keys and their
// defaults are documented in config/meterpipe.example.toml; the parsing lives in
// config/mqtt_config.cpp so config.cpp only calls it.
#pragma once

#include <cstdint>
#include <string>

namespace mp::config {

struct Mqtt {
  bool enabled = false;
  std::string url;  // mqtt://host[:port] or mqtts://host[:port]
  // parsed from url when it is valid
  std::string host;
  int64_t port = 0;
  bool tls = false;
  std::string client_id;  // default "meterpipe-<hostname>" (chosen by the worker)
  std::string username;
  std::string password_file, password_env;
  std::string ca_file, cert_file, key_file;
  bool tls_verify = true;
  std::string base_topic = "meterpipe";
  int64_t qos = 0;  // 0 or 1
  bool retain = true;
  double interval_s = 0;  // 0 = every reading; else at most one state per meter per interval
  bool homeassistant = true;
  std::string discovery_prefix = "homeassistant";
  bool per_value_topics = false;  // also <base>/<meter>/<value> with the plain value (mbmd style)
  bool homie = false;             // Homie 4 device under homie/ (a second connection)
  bool commands = false;
};

// Splits "mqtt://host[:port]" / "mqtts://host[:port]" (IPv6 as [addr]); false with `error`
// saying what is wrong.
bool parse_mqtt_url(const std::string& url, std::string& host, int64_t& port, bool& tls,
                    std::string& error);

// A topic prefix an MQTT client may publish under: not empty, no wildcards (+ #), no NUL,
// no leading or trailing '/'.
bool valid_topic_prefix(const std::string& t);

}  // namespace mp::config
