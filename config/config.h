// meterpipe configuration: one TOML file, validated as a whole.
//
// load() collects EVERY problem, each as "FILE:LINE:COL: key.path: message" (wrong type,
// out of range, missing required key, unknown key, duplicate names, references to
// undefined meters). config/meterpipe.example.toml documents every key and its default.
// Secrets (InfluxDB token/password) are never in the TOML: only *_file / *_env keys name
// where they are, and resolve_secret() reads them when needed.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/history_config.h"
#include "config/mqtt_config.h"
#include "config/serve_auth_config.h"

namespace mp::config {

struct General {
  std::string run_dir = "/run/meterpipe";
  std::string state_dir = "/var/lib/meterpipe";
  std::string log_level = "info";
  double watchdog_s = 20;
  int64_t replay_ring = 10000;
  // Frames and relay events reach the journal on disk (write()) at most this long after they
  // were published (docs/DURABILITY.md): what a kill -9 of the supervisor can cost.
  double durability_s = 1;
  std::string timezone = "Europe/Amsterdam";
  std::string bin_dir;  // where worker executables are; default: next to `meterpipe`
  // CPU for the real-time path (acquire, actuate); the other workers run on the rest.
  // kRealtimeCpuAuto: the last usable CPU when there are two or more; -1: no pinning.
  static constexpr int64_t kRealtimeCpuAuto = -2;
  int64_t realtime_cpu = kRealtimeCpuAuto;
};

struct Meter {
  std::string name;
  std::string protocol = "dsmr";  // dsmr | modbus | mbus | sunspec
  std::string source;             // serial | tcp | simulate | file
  // serial
  std::string device;
  std::string preset;  // dsmr2 dsmr3 dsmr4 dsmr5 fluvius mbus
  int64_t baud = 0;    // 0 = from preset / protocol default
  int64_t data_bits = 0;
  std::string parity;  // none | even | odd ("" = from preset)
  int64_t stop_bits = 0;
  // tcp
  std::string host;
  int64_t port = 0;
  // file / simulate
  std::string file;
  double rate_hz = 1.0;  // telegrams per second (file replay, simulate)
  double speed = 1.0;    // simulate: simulated seconds per real second
  int64_t seed = 1;
  // encrypted P1 (Luxembourg Smarty, Austria)
  std::string key_file;
  // modbus / sunspec
  int64_t unit_id = 1;
  std::string type;  // register map (sdm630, ...) for modbus
  int64_t interval_ms = 1000;
  int64_t timeout_ms = 500;
  // sunspec: which model of a device that has several (an inverter with a grid meter behind
  // it): "auto" (first inverter model, else first meter model) | "inverter" | "meter", and
  // the Nth model of that part (0 = first); invert_power flips the meter models' W sign.
  std::string sunspec_part = "auto";
  int64_t sunspec_index = 0;
  bool invert_power = false;
  // mbus
  int64_t address = 1;
  int line = 0;  // where the [[meter]] starts (for messages)
};

struct Upload {
  bool enabled = true;
  std::string target = "file";  // file | influxdb1 | influxdb2
  std::string url;
  std::string database, retention_policy, username, password_file, password_env;
  std::string org, bucket, token_file, token_env;
  std::string precision = "s";  // s | ms | us | ns
  bool gzip = false;
  bool tls_verify = true;
  std::string ca_file;
  std::string measurement = "electricity";
  std::map<std::string, std::string> tags;
  std::string spool_dir;       // unused since the journals (accepted for old configs)
  int64_t spool_max_mb = 256;  // bound of each journal (<state_dir>/journal/<worker>)
  int64_t batch_size = 5000;
  double batch_age_s = 5;
  double timeout_s = 30;
  std::string data_dir;   // default <state_dir>/data (target = "file")
  int64_t keep_days = 0;  // day files older than this are deleted; 0 = keep all
  bool compress = true;   // finished day files are gzipped (YYYY-MM-DD.lp.gz)
};

struct Output {
  std::string type = "sim";  // sim | command | http | gpiod
  // gpiod
  std::string chip;
  int64_t line = -1;
  bool active_low = false;
  // command
  std::vector<std::string> on_command, off_command;
  // http
  std::string url, on_url, off_url, method = "POST", on_body, off_body;
  std::string on_method, off_method;  // empty = method
  std::vector<std::string> headers;
  double timeout_s = 5;
};

struct ValueCondition {
  std::string name;
  std::optional<double> min, max;
};

struct Relay {
  std::string name;
  std::string meter;
  int64_t priority = 0;
  double load_w = 0;
  double on_below_w = -1500;
  double off_above_w = 100;
  double on_delay_s = 60;
  double off_delay_s = 60;
  double min_on_s = 300;
  double min_off_s = 300;
  int64_t max_switches_per_hour = 6;
  std::string failsafe = "off";  // off | on | keep
  double stale_after_s = 30;
  std::vector<std::string> windows;   // "HH:MM-HH:MM" local time
  std::vector<std::string> weekdays;  // mon tue wed thu fri sat sun
  std::optional<int64_t> tariff;
  std::vector<ValueCondition> conditions;
  Output output;
  int line = 0;
};

struct Actuate {
  std::optional<double> demand_limit_w;  // Belgian capacity tariff peak shaving
  double demand_margin_w = 100;
  std::string state_file;  // default <state_dir>/actuate.state
};

struct Serve {
  bool enabled = false;
  std::string listen = "127.0.0.1:8080";
  ServeAuth auth;  // accounts and HTTPS (config/serve_auth_config.h)
};

// Remote taps: the bus forwarded to tcp://<listen>, CurveZMQ only (clients must hold a key
// listed in authorized_keys_file). Key files are checked when the config is loaded.
struct Remote {
  bool enabled = false;
  std::string listen = "127.0.0.1:7558";
  std::string secret_key_file;          // the server's (`meterpipe keygen NAME`: NAME.key)
  std::string authorized_keys_file;     // client public keys, one per line, a name after each
  std::vector<std::string> publishers;  // workers forwarded; default: every worker of the config
};

struct Config {
  std::string file;
  General general;
  std::vector<Meter> meters;
  Upload upload;
  Actuate actuate;
  std::vector<Relay> relays;
  Serve serve;
  Remote remote;
  Mqtt mqtt;
  History history;
  std::vector<Tariff> tariffs;

  const Meter* meter(const std::string& name) const;
  // Workers to run, in start order: acquire, process, actuate, upload, serve, mqtt, history,
  // remote.
  std::vector<std::string> workers() const;
};

struct Error {
  std::string file;
  int line = 0, column = 0;
  std::string key;
  std::string message;
  std::string str() const;  // "FILE:LINE:COL: key: message"
};

struct Result {
  std::optional<Config> config;  // set only when errors is empty
  std::vector<Error> errors;
};

// Reads and validates a file.
Result load_file(const std::string& path);
// Validates TOML text; `name` is used as FILE in messages.
Result load_string(const std::string& text, const std::string& name);

// What loading checks beyond the TOML itself. Commands that need only run_dir (status, tap,
// relay) skip the key files [remote] names: members of group meterpipe cannot read the
// server's secret key, and need not.
struct LoadOptions {
  bool check_key_files = true;
};
Result load_file(const std::string& path, const LoadOptions& opt);
Result load_string(const std::string& text, const std::string& name, const LoadOptions& opt);

// Reads a secret from a file (first line, trimmed) or an environment variable into
// `secret` (empty when neither is given). False with `error` (never the secret) when it
// cannot be read.
bool resolve_secret(const std::string& file, const std::string& env, std::string& secret,
                    std::string& error);

}  // namespace mp::config
