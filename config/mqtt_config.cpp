#include "config/mqtt_config.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "config/checker.h"
#include "config/mqtt_config_read.h"

namespace mp::config {

bool parse_mqtt_url(const std::string& url, std::string& host, int64_t& port, bool& tls,
                    std::string& error) {
  std::string rest;
  if (url.rfind("mqtt://", 0) == 0) {
    tls = false;
    rest = url.substr(7);
  } else if (url.rfind("mqtts://", 0) == 0) {
    tls = true;
    rest = url.substr(8);
  } else {
    error = "must start with mqtt:// or mqtts://";
    return false;
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find_first_of("/?#@ ") != std::string::npos) {
    error = "only mqtt[s]://HOST[:PORT] (no path, user or query; credentials are separate keys)";
    return false;
  }
  std::string port_text;
  bool have_port = false;
  if (!rest.empty() && rest[0] == '[') {  // [IPv6]:port
    const auto close = rest.find(']');
    if (close == std::string::npos) {
      error = "unclosed [ in the host";
      return false;
    }
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') {
        error = "expected :PORT after ]";
        return false;
      }
      have_port = true;
      port_text = rest.substr(close + 2);
    }
  } else {
    const auto colon = rest.find(':');
    host = rest.substr(0, colon);
    if (colon != std::string::npos) {
      have_port = true;
      port_text = rest.substr(colon + 1);
    }
  }
  if (host.empty()) {
    error = "no host";
    return false;
  }
  port = tls ? 8883 : 1883;
  if (have_port) {
    if (port_text.empty() || port_text.size() > 5 ||
        port_text.find_first_not_of("0123456789") != std::string::npos ||
        std::stol(port_text) < 1 || std::stol(port_text) > 65535) {
      error = "port must be 1..65535";
      return false;
    }
    port = std::stol(port_text);
  }
  return true;
}

bool valid_topic_prefix(const std::string& t) {
  if (t.empty() || t.size() > 200 || t.front() == '/' || t.back() == '/') return false;
  for (char c : t)
    if (c == '+' || c == '#' || c == '\0') return false;
  return true;
}

void read_mqtt(const toml::table* t, const std::string& file, bool check_files, Mqtt& m,
               std::vector<Error>& errors) {
  if (!t) return;
  Checker c(file, errors);
  auto r = c.scope(*t, "mqtt");
  r.boolean("enabled", m.enabled);
  if (r.str("url", m.url)) {
    std::string err;
    if (!parse_mqtt_url(m.url, m.host, m.port, m.tls, err))
      r.error_key("url", "\"" + m.url + "\": " + err + " (like \"mqtt://192.168.1.10:1883\")");
  }
  if (r.str("client_id", m.client_id) && (m.client_id.empty() || m.client_id.size() > 128))
    r.error_key("client_id", "must be 1..128 characters");
  r.str("username", m.username);
  r.str("password_file", m.password_file);
  r.str("password_env", m.password_env);
  r.str("ca_file", m.ca_file);
  r.str("cert_file", m.cert_file);
  r.str("key_file", m.key_file);
  r.boolean("tls_verify", m.tls_verify);
  if (r.str("base_topic", m.base_topic) && !valid_topic_prefix(m.base_topic))
    r.error_key("base_topic", "\"" + m.base_topic +
                                  "\" is not a topic prefix (not empty, no + or #, no / at "
                                  "either end)");
  r.integer("qos", m.qos, 0, 1);
  r.boolean("retain", m.retain);
  r.number("interval_s", m.interval_s, 0, 86400);
  r.boolean("homeassistant", m.homeassistant);
  if (r.str("discovery_prefix", m.discovery_prefix) && !valid_topic_prefix(m.discovery_prefix))
    r.error_key("discovery_prefix",
                "\"" + m.discovery_prefix + "\" is not a topic prefix (not empty, no + or #)");
  r.boolean("per_value_topics", m.per_value_topics);
  r.boolean("homie", m.homie);
  r.boolean("commands", m.commands);
  r.refuse_secrets({"password"});
  r.finish();

  if (!m.password_file.empty() && !m.password_env.empty())
    r.error_key("password_env", "give password_file or password_env, not both");
  if ((!m.password_file.empty() || !m.password_env.empty()) && m.username.empty())
    r.missing("username", " (a password is given)");
  for (const char* k : {"ca_file", "cert_file", "key_file"})
    if (t->get(k) && !m.url.empty() && !m.tls) r.error_key(k, "only with an mqtts:// url");
  if (m.cert_file.empty() != m.key_file.empty())
    r.missing(m.cert_file.empty() ? "cert_file" : "key_file",
              " (a client certificate needs both cert_file and key_file)");
  if (m.enabled && m.url.empty())
    r.missing("url", " (enabled = true; like \"mqtt://127.0.0.1:1883\")");
  if (m.enabled && check_files) {
    r.readable_file("ca_file", m.ca_file,
                    "the PEM file of the CA that signed the broker's certificate");
    r.readable_file("cert_file", m.cert_file, "the client certificate, PEM");
    r.readable_file("key_file", m.key_file, "the client key, PEM");
    r.readable_file("password_file", m.password_file, "first line: the broker password");
  }
}

}  // namespace mp::config
