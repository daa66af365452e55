#include "config/config.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/curve_keys.h"
#include "common/fs.h"
#include "config/checker.h"
#include "config/history_config_read.h"
#include "config/mqtt_config_read.h"
#include "config/relay_spec.h"
#include "config/serve_auth_config_read.h"
#include "protocols/specs.h"

namespace mp::config {

std::string Error::str() const {
  std::string s = file;
  if (line > 0) s += ":" + std::to_string(line) + ":" + std::to_string(column);
  s += ": ";
  if (!key.empty()) s += key + ": ";
  s += message;
  return s;
}

const Meter* Config::meter(const std::string& name) const {
  for (const auto& m : meters)
    if (m.name == name) return &m;
  return nullptr;
}

std::vector<std::string> Config::workers() const {
  std::vector<std::string> w;
  if (!meters.empty()) {
    w.push_back("acquire");
    w.push_back("process");
  }
  if (!relays.empty()) w.push_back("actuate");
  if (upload.enabled && !meters.empty()) w.push_back("upload");
  if (serve.enabled) w.push_back("serve");
  if (mqtt.enabled) w.push_back("mqtt");
  if (history.enabled && !meters.empty()) w.push_back("history");
  if (remote.enabled) w.push_back("remote");
  return w;
}

namespace {

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char ch : s)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-')) return false;
  return true;
}

void read_general(Checker& c, const toml::table* t, General& g) {
  if (!t) return;
  auto s = c.scope(*t, "general");
  s.str("run_dir", g.run_dir);
  s.str("state_dir", g.state_dir);
  s.str("log_level", g.log_level, false, {"debug", "info", "warn", "error"});
  s.number("watchdog_s", g.watchdog_s, 1, 3600);
  s.integer("replay_ring", g.replay_ring, 0, 10000000);
  s.number("durability_s", g.durability_s, 0.01, 60);
  s.integer("realtime_cpu", g.realtime_cpu, -1, 1023);
  if (s.str("timezone", g.timezone) && !g.timezone.empty()) {
    // glibc silently falls back to UTC for an unknown zone: time windows would shift
    const std::string zf = "/usr/share/zoneinfo/" + g.timezone;
    if (g.timezone.find("..") != std::string::npos || access(zf.c_str(), R_OK) != 0)
      c.error_at(t->get("timezone")->source(), "general.timezone",
                 "\"" + g.timezone +
                     "\" is not a time zone of the tz database (like "
                     "\"Europe/Amsterdam\"; see /usr/share/zoneinfo)");
  }
  s.str("bin_dir", g.bin_dir);
  s.finish();
}

void check_source_keys(Checker& c, Checker::Scope& s, const toml::table& t, const Meter& m);
void check_protocol_rules(Checker& c, Checker::Scope& s, const toml::table& t, const Meter& m);

void read_meter(Checker& c, const toml::table& t, const std::string& path, Meter& m) {
  auto s = c.scope(t, path);
  m.line = int(t.source().begin.line);
  if (s.str("name", m.name, true) && !valid_name(m.name))
    c.error_at(t.get("name")->source(), s.key("name"),
               "\"" + m.name + "\" may hold only letters, digits, '_' and '-' (1-64)");
  std::vector<std::string_view> protocol_names;
  for (const auto* d : protocols::all()) protocol_names.push_back(d->name);
  s.str("protocol", m.protocol, false, protocol_names);
  const bool has_source = s.str("source", m.source, true, protocols::all_sources());
  s.str("device", m.device);
  s.str("preset", m.preset, false, protocols::all_preset_names());
  s.integer("baud", m.baud, 300, 4000000);
  s.integer("data_bits", m.data_bits, 5, 8);
  s.str("parity", m.parity, false, {"none", "even", "odd"});
  s.integer("stop_bits", m.stop_bits, 1, 2);
  s.str("host", m.host);
  s.integer("port", m.port, 1, 65535);
  s.str("file", m.file);
  s.number("rate_hz", m.rate_hz, 0.001, 10000);
  s.number("speed", m.speed, 0.001, 1e6);
  s.integer("seed", m.seed, 0, INT64_MAX);
  s.str("key_file", m.key_file);
  s.integer("unit_id", m.unit_id, 0, 255);
  s.str("type", m.type);
  s.integer("interval_ms", m.interval_ms, 10, 3600000);
  // one request may block this long; the worker watchdog allows watchdog_s / 2 per step
  s.integer("timeout_ms", m.timeout_ms, 10, 2000);
  s.str("sunspec_part", m.sunspec_part, false, {"auto", "inverter", "meter"});
  s.integer("sunspec_index", m.sunspec_index, 0, 63);
  s.boolean("invert_power", m.invert_power);
  s.integer("address", m.address, 0, 250);
  s.finish();

  if (!has_source) return;
  check_source_keys(c, s, t, m);
  check_protocol_rules(c, s, t, m);
}

// The keys a source needs.
void check_source_keys(Checker&, Checker::Scope& s, const toml::table&, const Meter& m) {
  if (m.source == "serial" && m.device.empty()) s.missing("device", " (source = \"serial\")");
  if (m.source == "tcp") {
    if (m.host.empty()) s.missing("host", " (source = \"tcp\")");
    if (m.port == 0) s.missing("port", " (source = \"tcp\")");
  }
  if (m.source == "file" && m.file.empty()) s.missing("file", " (source = \"file\")");
}

// What the meter's protocol says (protocols/registry.h): its sources, its own rules, and
// the SunSpec keys that belong to no other protocol.
void check_protocol_rules(Checker& c, Checker::Scope& s, const toml::table& t, const Meter& m) {
  const protocols::Spec* d = protocols::find(m.protocol);
  if (!d) return;  // already reported
  if (std::find(d->sources.begin(), d->sources.end(), m.source) == d->sources.end())
    c.error_at(t.get("source")->source(), s.key("source"), std::string(d->sources_note));
  std::vector<protocols::KeyProblem> problems;
  if (d->check) d->check(m, problems);
  for (const auto& p : problems) {
    const toml::node* n = t.get(p.key);
    if (p.missing)
      s.missing(p.key, p.message);
    else
      c.error_at(n ? n->source() : t.source(), s.key(p.key), p.message);
  }
  for (const char* k : {"sunspec_part", "sunspec_index", "invert_power"})
    if (d->id != protocols::Id::sunspec && t.get(k))
      c.error_at(t.get(k)->source(), s.key(k), "only for protocol = \"sunspec\"");
}

// Meters on one serial line (an RS485 bus with several Modbus meters, an M-Bus line with
// several slaves) or one Modbus TCP gateway share that line: acquire opens it once, with the
// settings of the first meter. A later meter that says otherwise would be silently ignored,
// so its differing key is an error, as are a second meter at the same unit id / address and
// two protocols (or two P1 readers) on one device.
struct LineSettings {
  std::string family;  // "dsmr", "modbus" (incl. sunspec), "mbus"
  int64_t baud = 0, data_bits = 0, stop_bits = 0, timeout_ms = -1;
  std::string parity;
};

LineSettings line_settings(const Meter& m) {
  LineSettings l;
  const protocols::Spec* d = protocols::find(m.protocol);
  l.family = d ? std::string(d->family) : m.protocol;
  if (l.family == "dsmr" || l.family == "sml") return l;  // push meters: one per port
  const acquire::SerialSettings s = protocols::serial_settings(m);
  l.baud = s.baud;
  l.data_bits = s.data_bits;
  l.stop_bits = s.stop_bits;
  l.parity = s.parity == acquire::Parity::even  ? "even"
             : s.parity == acquire::Parity::odd ? "odd"
                                                : "none";
  if (l.family == "modbus") l.timeout_ms = m.timeout_ms;
  return l;
}

void check_shared_lines(Checker& c, const Config& cfg, const toml::array& meters) {
  struct First {
    size_t index;
    LineSettings line;
  };
  std::map<std::string, First> lines;  // line key -> first meter
  std::map<std::pair<std::string, int64_t>, std::vector<size_t>> stations;  // (line, unit)
  for (size_t i = 0; i < cfg.meters.size(); ++i) {
    const Meter& m = cfg.meters[i];
    const toml::table* mt = meters.get(i) ? meters.get(i)->as_table() : nullptr;
    if (!mt) continue;
    std::string key, what;
    if (m.source == "serial" && !m.device.empty()) {
      // two names of one device (/dev/serial/by-id/... -> /dev/ttyUSB0) are one line
      char real[4096];
      key = realpath(m.device.c_str(), real) ? std::string(real) : m.device;
      what = "line " + m.device;
    } else if (m.source == "tcp" && (m.protocol == "modbus" || m.protocol == "sunspec")) {
      key = "tcp:" + m.host + ":" + std::to_string(m.port);
      what = "gateway " + m.host + ":" + std::to_string(m.port);
    } else {
      continue;
    }
    const LineSettings l = line_settings(m);
    const std::string mk = "meter[" + std::to_string(i) + "].";
    auto at = [&](const char* k) {
      const toml::node* n = mt->get(k);
      return n ? n->source() : mt->source();
    };
    auto [it, fresh] = lines.emplace(key, First{i, l});
    if (!fresh) {
      const First& f = it->second;
      const Meter& fm = cfg.meters[f.index];
      const std::string other = "meter[" + std::to_string(f.index) + "] \"" + fm.name + "\"";
      const bool push = l.family == "dsmr" || l.family == "sml";  // one meter per port
      if (l.family != f.line.family || push) {
        c.error_at(at("device"), mk + "device",
                   push && f.line.family == l.family
                       ? "\"" + m.device + "\" is already read by " + other +
                             (l.family == "dsmr" ? " (one P1 port gives one meter's telegrams)"
                                                 : " (one IR head reads one meter)")
                       : "\"" + m.device + "\" is already used by " + other + " (" + fm.protocol +
                             "): one serial line carries one protocol");
        continue;
      }
      auto differs = [&](const char* k, const std::string& mine, const std::string& theirs) {
        if (mine == theirs) return;
        c.error_at(at(k), mk + k,
                   mine + " differs from " + other + " (" + theirs + ") on the same " + what +
                       ": meters sharing it must agree (acquire opens it once)");
      };
      differs("baud", std::to_string(l.baud), std::to_string(f.line.baud));
      differs("data_bits", std::to_string(l.data_bits), std::to_string(f.line.data_bits));
      differs("parity", l.parity, f.line.parity);
      differs("stop_bits", std::to_string(l.stop_bits), std::to_string(f.line.stop_bits));
      if (l.family == "modbus")
        differs("timeout_ms", std::to_string(l.timeout_ms), std::to_string(f.line.timeout_ms));
    }
    if (l.family == "dsmr" || l.family == "sml") continue;
    const bool modbus = l.family == "modbus";
    const int64_t station = modbus ? m.unit_id : m.address;
    auto& taken = stations[std::make_pair(key, station)];
    for (size_t j : taken) {
      const Meter& fm = cfg.meters[j];
      // one SunSpec device may be read as several meters: its inverter and its meter part
      const bool parts = m.protocol == "sunspec" && fm.protocol == "sunspec" &&
                         m.sunspec_part != "auto" && fm.sunspec_part != "auto" &&
                         (m.sunspec_part != fm.sunspec_part || m.sunspec_index != fm.sunspec_index);
      if (parts) continue;
      std::string msg = std::string(modbus ? "unit id " : "M-Bus address ") +
                        std::to_string(station) + " is already used by meter[" + std::to_string(j) +
                        "] \"" + fm.name + "\" on the same " + what;
      if (m.protocol == "sunspec" && fm.protocol == "sunspec")
        msg +=
            " (to read two parts of one SunSpec device, give both sunspec_part = "
            "\"inverter\" / \"meter\", or another sunspec_index)";
      c.error_at(at(modbus ? "unit_id" : "address"), mk + (modbus ? "unit_id" : "address"), msg);
      break;
    }
    taken.push_back(i);
  }
}

void read_upload(Checker& c, const toml::table* t, Upload& u) {
  if (!t) return;
  auto s = c.scope(*t, "upload");
  s.boolean("enabled", u.enabled);
  s.str("target", u.target, false, {"file", "influxdb1", "influxdb2"});
  s.str("url", u.url);
  s.str("database", u.database);
  s.str("retention_policy", u.retention_policy);
  s.str("username", u.username);
  s.str("password_file", u.password_file);
  s.str("password_env", u.password_env);
  s.str("org", u.org);
  s.str("bucket", u.bucket);
  s.str("token_file", u.token_file);
  s.str("token_env", u.token_env);
  s.str("precision", u.precision, false, {"s", "ms", "us", "ns"});
  s.boolean("gzip", u.gzip);
  s.boolean("tls_verify", u.tls_verify);
  if (s.str("ca_file", u.ca_file) && !u.ca_file.empty() && access(u.ca_file.c_str(), R_OK) != 0)
    c.error_at(t->get("ca_file")->source(), "upload.ca_file",
               "cannot read " + u.ca_file + ": " + std::strerror(errno) +
                   " (the PEM file of the CA that signed the server's certificate)");
  s.str("measurement", u.measurement);
  s.str("spool_dir", u.spool_dir);
  s.integer("spool_max_mb", u.spool_max_mb, 1, 1 << 20);
  s.integer("batch_size", u.batch_size, 1, 1000000);
  s.number("batch_age_s", u.batch_age_s, 0.01, 3600);
  s.number("timeout_s", u.timeout_s, 0.1, 3600);
  s.str("data_dir", u.data_dir);
  s.integer("keep_days", u.keep_days, 0, 36500);
  s.boolean("compress", u.compress);
  s.refuse_secrets({"token", "password"});
  if (const toml::table* tags = s.table("tags")) {
    for (const auto& [k, v] : *tags) {
      if (!v.is_string()) {
        c.error_at(v.source(), "upload.tags." + std::string(k.str()),
                   std::string("must be a string, not ") + type_name(v.type()));
        continue;
      }
      u.tags[std::string(k.str())] = v.as_string()->get();
    }
  }
  s.finish();
  if (!u.enabled) return;
  if (u.target != "file" && u.url.empty()) s.missing("url", " (target = \"" + u.target + "\")");
  if (u.target == "influxdb1" && u.database.empty())
    s.missing("database", " (target = \"influxdb1\")");
  if (u.target == "influxdb2") {
    if (u.org.empty()) s.missing("org", " (target = \"influxdb2\")");
    if (u.bucket.empty()) s.missing("bucket", " (target = \"influxdb2\")");
    if (u.token_file.empty() && u.token_env.empty())
      s.missing("token_file", " (or token_env; target = \"influxdb2\")");
  }
}

void read_output(Checker& c, const toml::table& t, const std::string& path, Output& o) {
  auto s = c.scope(t, path);
  s.str("type", o.type, true, {"sim", "command", "http", "gpiod"});
  s.str("chip", o.chip);
  s.integer("line", o.line, 0, 4095);
  s.boolean("active_low", o.active_low);
  s.str_array("on_command", o.on_command);
  s.str_array("off_command", o.off_command);
  s.str("url", o.url);
  s.str("on_url", o.on_url);
  s.str("off_url", o.off_url);
  s.str("method", o.method, false, {"GET", "POST", "PUT", "PATCH"});
  s.str("on_method", o.on_method, false, {"GET", "POST", "PUT", "PATCH"});
  s.str("off_method", o.off_method, false, {"GET", "POST", "PUT", "PATCH"});
  s.str("on_body", o.on_body);
  s.str("off_body", o.off_body);
  s.str_array("headers", o.headers);
  // below the engine's 60 s limit for an unconfirmed switch
  s.number("timeout_s", o.timeout_s, 0.05, 50);
  s.finish();
  if (o.type == "gpiod") {
    if (o.chip.empty()) s.missing("chip", " (type = \"gpiod\")");
    if (o.line < 0) s.missing("line", " (type = \"gpiod\")");
  } else if (o.type == "command") {
    if (o.on_command.empty()) s.missing("on_command", " (type = \"command\")");
    if (o.off_command.empty()) s.missing("off_command", " (type = \"command\")");
  } else if (o.type == "http") {
    if (o.url.empty() && (o.on_url.empty() || o.off_url.empty()))
      s.missing("url", " (or on_url and off_url; type = \"http\")");
  }
}

bool valid_window(const std::string& w) {
  int h1, m1, h2, m2;
  char tail;
  if (std::sscanf(w.c_str(), "%d:%d-%d:%d%c", &h1, &m1, &h2, &m2, &tail) != 4) return false;
  return h1 >= 0 && h1 <= 24 && h2 >= 0 && h2 <= 24 && m1 >= 0 && m1 < 60 && m2 >= 0 && m2 < 60;
}

// windows = ["08:00-17:30", ...], weekdays = ["mon", ...], tariff = N
void read_relay_time_rules(Checker& c, Checker::Scope& s, const toml::table& t, Relay& r) {
  if (s.str_array("windows", r.windows)) {
    for (size_t i = 0; i < r.windows.size(); ++i)
      if (!valid_window(r.windows[i]))
        c.error_at(t.get("windows")->as_array()->get(i)->source(),
                   s.key("windows") + "[" + std::to_string(i) + "]",
                   "\"" + r.windows[i] + "\" is not a time window like \"08:00-17:30\"");
  }
  if (s.str_array("weekdays", r.weekdays)) {
    static const std::set<std::string> days{"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
    for (size_t i = 0; i < r.weekdays.size(); ++i)
      if (!days.count(r.weekdays[i]))
        c.error_at(t.get("weekdays")->as_array()->get(i)->source(),
                   s.key("weekdays") + "[" + std::to_string(i) + "]",
                   "\"" + r.weekdays[i] + "\" is not one of mon tue wed thu fri sat sun");
  }
  int64_t tariff = 0;
  if (s.integer("tariff", tariff, 1, 9)) r.tariff = tariff;
}

// [[relay.condition]]: name, min and/or max of a value of the relay's meter
void read_relay_conditions(Checker& c, Checker::Scope& s, Relay& r) {
  if (const toml::node* n = s.node("condition")) {
    const toml::array* a = n->as_array();
    if (!a || !a->is_array_of_tables()) {
      s.type_error(*n, "condition", "an array of tables ([[relay.condition]])");
    } else {
      for (size_t i = 0; i < a->size(); ++i) {
        const toml::table& ct = *a->get(i)->as_table();
        auto cs = c.scope(ct, s.key("condition") + "[" + std::to_string(i) + "]");
        ValueCondition vc;
        cs.str("name", vc.name, true);
        double v;
        if (cs.number("min", v, -1e12, 1e12)) vc.min = v;
        if (cs.number("max", v, -1e12, 1e12)) vc.max = v;
        cs.finish();
        if (!vc.min && !vc.max) cs.missing("min", " (or max)");
        r.conditions.push_back(vc);
      }
    }
  }
}

// on_below_w < off_above_w (r holds the defaults for a key not given: the pair is checked
// whenever either is valid)
void check_hysteresis(Checker& c, Checker::Scope& s, const toml::table& t, const Relay& r) {
  if (!(r.on_below_w < r.off_above_w))
    c.error_at(t.get("on_below_w")    ? t.get("on_below_w")->source()
               : t.get("off_above_w") ? t.get("off_above_w")->source()
                                      : t.source(),
               s.key(t.get("on_below_w") || !t.get("off_above_w") ? "on_below_w" : "off_above_w"),
               "must be below off_above_w (" + std::to_string(int64_t(r.off_above_w)) +
                   " W): the two thresholds form the hysteresis");
}

// The engine's spec conditions come from windows, weekdays, tariff and [[relay.condition]]
// (in that order, see to_relay_spec): the key the user wrote for "conditions[i].rest".
const toml::node* condition_key(const toml::table& t, const Relay& r,
                                const actuate::RelaySpec& spec, std::string& field) {
  const size_t i = std::strtoul(field.c_str() + 11, nullptr, 10);
  const std::string rest = field.substr(field.find('.') + 1);  // "windows[1]", "max"
  const size_t values = spec.conditions.size() - r.conditions.size();
  const toml::node* n = nullptr;
  if (i >= values) {
    field = "condition[" + std::to_string(i - values) + "]." + rest;
    n = t.get("condition");
    if (n && n->as_array() && n->as_array()->get(i - values)) {
      n = n->as_array()->get(i - values);
      if (const toml::table* ct = n->as_table(); ct && ct->get(rest)) n = ct->get(rest);
    }
  } else if (spec.conditions[i].kind == actuate::Condition::Kind::time_window) {
    field = rest;
    n = t.get("windows");
    const size_t j = std::strtoul(rest.c_str() + 8, nullptr, 10);
    if (n && n->as_array() && n->as_array()->get(j)) n = n->as_array()->get(j);
  } else {
    field = spec.conditions[i].kind == actuate::Condition::Kind::weekdays ? "weekdays" : "tariff";
    n = t.get(field);
  }
  return n;
}

// The engine's own rules (one source of truth for what a relay may be), named by TOML key.
void check_engine_rules(Checker& c, Checker::Scope& s, const toml::table& t, const Relay& r) {
  const actuate::RelaySpec spec = to_relay_spec(r);
  for (const auto& p : actuate::validate(spec)) {
    if (p.field == "on_below_w" || p.field == "name" || p.field == "meter") continue;
    std::string field = p.field;
    const toml::node* n = field.rfind("conditions[", 0) == 0
                              ? condition_key(t, r, spec, field)
                              : t.get(field.substr(0, field.find_first_of("[.")));
    c.error_at(n ? n->source() : t.source(), s.key(field), p.message);
  }
}

void read_relay(Checker& c, const toml::table& t, const std::string& path, Relay& r) {
  auto s = c.scope(t, path);
  r.line = int(t.source().begin.line);
  if (s.str("name", r.name, true) && !valid_name(r.name))
    c.error_at(t.get("name")->source(), s.key("name"),
               "\"" + r.name + "\" may hold only letters, digits, '_' and '-' (1-64)");
  s.str("meter", r.meter, true);
  s.integer("priority", r.priority, -1000, 1000);
  s.number("load_w", r.load_w, 0, 1e6);
  const bool on_ok = s.number("on_below_w", r.on_below_w, -1e6, 1e6);
  const bool off_ok = s.number("off_above_w", r.off_above_w, -1e6, 1e6);
  s.number("on_delay_s", r.on_delay_s, 0, 86400);
  s.number("off_delay_s", r.off_delay_s, 0, 86400);
  s.number("min_on_s", r.min_on_s, 0, 86400);
  s.number("min_off_s", r.min_off_s, 0, 86400);
  s.integer("max_switches_per_hour", r.max_switches_per_hour, 0, 3600);
  s.str("failsafe", r.failsafe, false, {"off", "on", "keep"});
  s.number("stale_after_s", r.stale_after_s, 1, 86400);
  read_relay_time_rules(c, s, t, r);
  read_relay_conditions(c, s, r);
  if (const toml::node* n = s.node("output")) {
    if (!n->is_table())
      s.type_error(*n, "output", "a table ([relay.output])");
    else
      read_output(c, *n->as_table(), s.key("output"), r.output);
  } else {
    s.missing("output");
  }
  s.finish();
  if (on_ok || off_ok) check_hysteresis(c, s, t, r);
  check_engine_rules(c, s, t, r);
}

void read_actuate(Checker& c, const toml::table* t, Actuate& a) {
  if (!t) return;
  auto s = c.scope(*t, "actuate");
  double v;
  if (s.number("demand_limit_w", v, 100, 1e7)) a.demand_limit_w = v;
  const bool margin_ok = s.number("demand_margin_w", a.demand_margin_w, 0, 1e6);
  s.str("state_file", a.state_file);
  s.finish();
  if (margin_ok && a.demand_limit_w && a.demand_margin_w >= *a.demand_limit_w)
    c.error_at(t->get("demand_margin_w")->source(), "actuate.demand_margin_w",
               "must be below demand_limit_w");
}

void read_serve(Checker& c, const toml::table* t, Serve& sv, bool check_files) {
  if (!t) return;
  auto s = c.scope(*t, "serve");
  s.boolean("enabled", sv.enabled);
  if (s.str("listen", sv.listen)) {
    const auto colon = sv.listen.rfind(':');
    const long port = colon == std::string::npos ? 0 : std::atol(sv.listen.c_str() + colon + 1);
    if (colon == std::string::npos || colon == 0 || port < 1 || port > 65535 ||
        sv.listen.find_first_not_of("0123456789", colon + 1) != std::string::npos)
      c.error_at(t->get("listen")->source(), "serve.listen",
                 "\"" + sv.listen + "\" is not HOST:PORT (like \"127.0.0.1:8080\")");
  }
  read_serve_auth(s, sv.listen, sv.enabled, check_files, sv.auth);
  s.finish();
}

// HOST:PORT that ZeroMQ can bind: HOST a numeric IPv4 address, "*" or "[IPv6]" (ZeroMQ
// resolves no host names when it binds, so "localhost" would fail only at start).
bool bindable_host_port(const std::string& v) {
  const auto colon = v.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= v.size() ||
      v.find_first_not_of("0123456789", colon + 1) != std::string::npos || v.size() - colon - 1 > 5)
    return false;
  const long port = std::atol(v.c_str() + colon + 1);
  if (port < 1 || port > 65535) return false;
  std::string host = v.substr(0, colon);
  if (host == "*") return true;
  unsigned char buf[16];
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    return inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), buf) == 1;
  return inet_pton(AF_INET, host.c_str(), buf) == 1;
}

void read_remote(Checker& c, const toml::table* t, Remote& r, bool check_files) {
  if (!t) return;
  auto s = c.scope(*t, "remote");
  s.boolean("enabled", r.enabled);
  if (s.str("listen", r.listen) && !bindable_host_port(r.listen))
    c.error_at(t->get("listen")->source(), "remote.listen",
               "\"" + r.listen +
                   "\" is not IP:PORT (like \"127.0.0.1:7558\", or \"0.0.0.0:7558\" for the LAN)");
  s.str("secret_key_file", r.secret_key_file);
  s.str("authorized_keys_file", r.authorized_keys_file);
  s.str_array("publishers", r.publishers);
  s.finish();
  if (!r.enabled) return;
  // the key files are read now, so `check-config` finds what would stop the worker
  if (r.secret_key_file.empty()) {
    s.missing("secret_key_file", " (enabled = true; `meterpipe keygen NAME` writes NAME.key)");
  } else if (check_files) {
    const auto& at = t->get("secret_key_file")->source();
    const std::string& f = r.secret_key_file;
    std::string text, err, key;
    keys::Problem p;
    struct stat st {};
    if (!fs::read_file(f, text, err)) {
      c.error_at(at, "remote.secret_key_file", err);
    } else if (!keys::parse_key_text(text, key, p)) {
      // the problem names the line, never its text: this is a secret
      c.error_at(at, "remote.secret_key_file",
                 f + (p.line ? ":" + std::to_string(p.line) : "") + ": " + p.message);
    } else if (stat(f.c_str(), &st) == 0 && (st.st_mode & S_IROTH)) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
      c.error_at(at, "remote.secret_key_file",
                 f + " is readable by every user (mode " + mode + "): chmod 600 " + f);
    }
    std::fill(text.begin(), text.end(), '\0');
    std::fill(key.begin(), key.end(), '\0');
  }
  if (r.authorized_keys_file.empty()) {
    s.missing("authorized_keys_file", " (enabled = true; one client public key per line)");
  } else if (check_files) {
    const auto& at = t->get("authorized_keys_file")->source();
    const std::string& f = r.authorized_keys_file;
    std::string text, err;
    std::vector<keys::Problem> problems;
    if (!fs::read_file(f, text, err)) {
      c.error_at(at, "remote.authorized_keys_file", err);
    } else {
      const auto found = keys::parse_authorized_keys(text, problems);
      for (const auto& p : problems)
        c.error_at(at, "remote.authorized_keys_file",
                   f + ":" + std::to_string(p.line) + ": " + p.message);
      if (found.empty() && problems.empty())
        c.error_at(at, "remote.authorized_keys_file",
                   f + " holds no key: add the public key (NAME.pub) of each client, one per line");
    }
  }
}

template <class T, class F>
void read_array(Checker& c, Checker::Scope& top, const char* key, std::vector<T>& out, F f) {
  const toml::node* n = top.node(key);
  if (!n) return;
  const toml::array* a = n->as_array();
  if (!a || !a->is_array_of_tables()) {
    top.type_error(*n, key, (std::string("an array of tables ([[") + key + "]])").c_str());
    return;
  }
  for (size_t i = 0; i < a->size(); ++i) {
    T item;
    f(c, *a->get(i)->as_table(), std::string(key) + "[" + std::to_string(i) + "]", item);
    out.push_back(std::move(item));
  }
}

}  // namespace

Result load_string(const std::string& text, const std::string& name) {
  return load_string(text, name, LoadOptions{});
}

Result load_string(const std::string& text, const std::string& name, const LoadOptions& opt) {
  Result res;
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    res.errors.push_back(Error{name, int(b.line), int(b.column), "",
                               "TOML syntax: " + std::string(e.description())});
    return res;
  }
  Config cfg;
  cfg.file = name;
  Checker c(name, res.errors);
  auto top = c.scope(root, "");
  read_general(c, top.table("general"), cfg.general);
  read_array(c, top, "meter", cfg.meters, read_meter);
  read_upload(c, top.table("upload"), cfg.upload);
  read_actuate(c, top.table("actuate"), cfg.actuate);
  read_array(c, top, "relay", cfg.relays, read_relay);
  read_serve(c, top.table("serve"), cfg.serve, opt.check_key_files);
  read_remote(c, top.table("remote"), cfg.remote, opt.check_key_files);
  if (const toml::table* mt = top.table("mqtt"))
    read_mqtt(mt, name, opt.check_key_files, cfg.mqtt, res.errors);
  read_history(top.table("history"), name, cfg.history, res.errors);
  read_tariffs(top.node("tariff"), name, cfg.tariffs, res.errors);
  top.finish();

  const toml::array* meters = root["meter"].as_array();
  std::set<std::string> names;
  for (size_t i = 0; i < cfg.meters.size(); ++i) {
    const auto& m = cfg.meters[i];
    if (m.name.empty()) continue;
    if (!names.insert(m.name).second && meters) {
      const toml::node* n = meters->get(i)->as_table()->get("name");
      c.error_at(n->source(), "meter[" + std::to_string(i) + "].name",
                 "duplicate meter name \"" + m.name + "\"");
    }
  }
  const toml::array* relays = root["relay"].as_array();
  std::set<std::string> rnames;
  for (size_t i = 0; i < cfg.relays.size(); ++i) {
    const auto& r = cfg.relays[i];
    const toml::table* rt = relays ? relays->get(i)->as_table() : nullptr;
    if (!rt) continue;
    if (!r.name.empty() && !rnames.insert(r.name).second)
      c.error_at(rt->get("name")->source(), "relay[" + std::to_string(i) + "].name",
                 "duplicate relay name \"" + r.name + "\"");
    if (!r.meter.empty() && !names.count(r.meter))
      c.error_at(rt->get("meter")->source(), "relay[" + std::to_string(i) + "].meter",
                 "no [[meter]] is named \"" + r.meter + "\"");
  }

  for (size_t i = 0; i < cfg.meters.size() && meters; ++i) {
    const auto& m = cfg.meters[i];
    if ((m.protocol == "modbus" || m.protocol == "sunspec") &&
        double(m.timeout_ms) >= cfg.general.watchdog_s * 500) {
      const toml::table* mt = meters->get(i)->as_table();
      const toml::node* n = mt->get("timeout_ms");
      c.error_at(n ? n->source() : mt->source(), "meter[" + std::to_string(i) + "].timeout_ms",
                 "must be below half of general.watchdog_s (a request blocks that long)");
    }
  }

  if (meters) check_shared_lines(c, cfg, *meters);

  // remote.publishers: workers this config starts (a name that is not would forward nothing)
  if (const toml::array* pubs = root["remote"]["publishers"].as_array();
      pubs && cfg.remote.enabled) {
    const auto running = cfg.workers();
    std::string list;
    for (const auto& w : running) list += (list.empty() ? "" : ", ") + w;
    for (size_t i = 0; i < cfg.remote.publishers.size() && i < pubs->size(); ++i) {
      const std::string& p = cfg.remote.publishers[i];
      if (std::find(running.begin(), running.end(), p) == running.end())
        c.error_at(pubs->get(i)->source(), "remote.publishers[" + std::to_string(i) + "]",
                   "\"" + p + "\" is not a worker of this config (" + list + ")");
    }
  }

  // defaults that depend on other keys
  if (cfg.upload.spool_dir.empty()) cfg.upload.spool_dir = cfg.general.state_dir + "/spool";
  if (cfg.upload.data_dir.empty()) cfg.upload.data_dir = cfg.general.state_dir + "/data";
  if (cfg.actuate.state_file.empty())
    cfg.actuate.state_file = cfg.general.state_dir + "/actuate.state";
  if (cfg.remote.publishers.empty()) cfg.remote.publishers = cfg.workers();
  if (cfg.history.db_file.empty()) cfg.history.db_file = cfg.general.state_dir + "/history.sqlite";

  std::stable_sort(res.errors.begin(), res.errors.end(), [](const Error& a, const Error& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  });
  if (res.errors.empty()) res.config = std::move(cfg);
  return res;
}

Result load_file(const std::string& path) { return load_file(path, LoadOptions{}); }

Result load_file(const std::string& path, const LoadOptions& opt) {
  std::string text, error;
  if (!fs::read_file(path, text, error)) {
    Result r;
    r.errors.push_back(Error{path, 0, 0, "", std::string("cannot read: ") + std::strerror(errno)});
    return r;
  }
  return load_string(text, path, opt);
}

bool resolve_secret(const std::string& file, const std::string& env, std::string& secret,
                    std::string& error) {
  secret.clear();
  if (!file.empty()) {
    std::string text;
    if (!fs::read_file(file, text, error)) {
      error = "cannot read secret file " + file + ": " + std::strerror(errno);
      return false;
    }
    std::string line = text.substr(0, text.find('\n'));
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.pop_back();
    if (line.empty()) {
      error = "secret file " + file + " is empty";
      return false;
    }
    secret = std::move(line);
    return true;
  }
  if (!env.empty()) {
    const char* v = std::getenv(env.c_str());
    if (!v || !*v) {
      error = "environment variable " + env + " is not set";
      return false;
    }
    secret = v;
  }
  return true;
}

}  // namespace mp::config
