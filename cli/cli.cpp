#include "cli/cli.h"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "acquire/serial_source.h"
#include "bus/bus.h"
#include "bus/control.h"
#include "bus/remote.h"
#include "bus/worker.h"
#include "cli/history_cmd.h"
#include "cli/user.h"
#include "common/clock.h"
#include "common/curve_keys.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "config/config.h"
#include "protocols/mbus/mbus.h"
#include "protocols/mbus/mbus_poll.h"
#include "protocols/modbus/modbus_maps.h"
#include "protocols/modbus/modbus_poll.h"
#include "protocols/modbus/sunspec.h"
#include "protocols/registry.h"
#include "supervisor/bin_dir.h"
#include "supervisor/supervisor.h"

namespace mp::cli {
namespace {

const char* kDefaultConfig = "/etc/meterpipe/meterpipe.toml";
const std::vector<std::string> kWorkers = {"acquire", "process", "actuate", "upload",
                                           "serve",   "mqtt",    "history", "remote"};

int print_errors(const config::Result& r) {
  for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
  return 2;
}

// run_dir from --run-dir, else from the config file, else the default.
std::string find_run_dir(const std::string& run_dir, const std::string& cfg_file) {
  if (!run_dir.empty()) return run_dir;
  std::string f = cfg_file.empty() ? kDefaultConfig : cfg_file;
  if (!cfg_file.empty() || access(f.c_str(), R_OK) == 0) {
    config::LoadOptions lo;
    lo.check_key_files = false;  // [remote]'s secret key is not for every group member
    auto r = config::load_file(f, lo);
    if (r.config) return r.config->general.run_dir;
    if (!cfg_file.empty()) {
      print_errors(r);
      std::exit(2);
    }
  }
  return config::General{}.run_dir;
}

int cmd_check(const std::string& file) {
  auto r = config::load_file(file);
  if (!r.config) {
    print_errors(r);
    std::fprintf(stderr, "%zu error%s in %s\n", r.errors.size(), r.errors.size() == 1 ? "" : "s",
                 file.c_str());
    return 2;
  }
  const auto& c = *r.config;
  std::printf("%s: ok (%zu meter%s, %zu relay%s; workers:", file.c_str(), c.meters.size(),
              c.meters.size() == 1 ? "" : "s", c.relays.size(), c.relays.size() == 1 ? "" : "s");
  for (const auto& w : c.workers()) std::printf(" %s", w.c_str());
  std::printf(")\n");
  return 0;
}

int cmd_run(const std::string& file, const std::string& bin_dir) {
  log::init("supervisor");
  auto r = config::load_file(file);
  if (!r.config) return print_errors(r);
  log::Level lv;
  if (log::parse_level(r.config->general.log_level, lv) && !std::getenv("MP_LOG_LEVEL"))
    log::set_level(lv);
  supervisor::Options opt;
  opt.config_file = file;
  if (file[0] != '/') {
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd)) opt.config_file = std::string(cwd) + "/" + file;
  }
  opt.bin_dir = !bin_dir.empty()                     ? bin_dir
                : !r.config->general.bin_dir.empty() ? r.config->general.bin_dir
                                                     : supervisor::default_worker_dir();
  return supervisor::run(*r.config, opt);
}

// One request/reply on a worker's control channel; empty on timeout. A socket this user may
// not use ends the command with the reason.
std::string ctl_request(const std::string& run_dir, const std::string& worker,
                        const std::string& request, int timeout_ms) {
  try {
    return bus::control_request(run_dir, worker, request, timeout_ms).value_or("");
  } catch (const bus::ControlAccessError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    std::exit(1);
  }
}

// Minimal reader for the status JSON we produce ourselves.
std::string json_field(const std::string& obj, const std::string& key) {
  std::string k = "\"" + key + "\":";
  auto p = obj.find(k);
  if (p == std::string::npos) return "";
  p += k.size();
  if (obj[p] == '"') {
    auto e = obj.find('"', p + 1);
    return obj.substr(p + 1, e - p - 1);
  }
  auto e = obj.find_first_of(",}", p);
  return obj.substr(p, e - p);
}

int cmd_status(const std::string& run_dir, bool as_json) {
  const std::string ep = bus::ctl_endpoint(run_dir, "supervisor");
  std::string rep = ctl_request(run_dir, "supervisor", "status", 2000);
  if (rep.empty()) {
    std::fprintf(stderr, "no supervisor answers on %s (is `meterpipe run` running?)\n", ep.c_str());
    return 1;
  }
  if (as_json) {
    std::printf("%s\n", rep.c_str());
    return 0;
  }
  std::printf("supervisor pid %s, up %.0f s, config %s\n",
              json_field(rep, "supervisor_pid").c_str(),
              std::atof(json_field(rep, "uptime_s").c_str()), json_field(rep, "config").c_str());
  std::printf("%-10s %-8s %-9s %8s %10s %12s\n", "WORKER", "PID", "STATE", "RESTARTS", "UPTIME",
              "HEALTH AGE");
  size_t pos = rep.find("\"workers\":[");
  while (pos != std::string::npos) {
    pos = rep.find("{\"name\":", pos);
    if (pos == std::string::npos) break;
    size_t end = rep.find("\"counters\"", pos);
    std::string w = rep.substr(pos, end - pos);
    std::string age = json_field(w, "last_health_age_s");
    char agebuf[32];
    if (age == "null")
      std::snprintf(agebuf, sizeof agebuf, "-");
    else
      std::snprintf(agebuf, sizeof agebuf, "%.1f s", std::atof(age.c_str()));
    const std::string pid = json_field(w, "pid");
    std::printf("%-10s %-8s %-9s %8s %8.0f s %12s\n", json_field(w, "name").c_str(),
                pid == "null" ? "-" : pid.c_str(), json_field(w, "state").c_str(),
                json_field(w, "restarts").c_str(), std::atof(json_field(w, "uptime_s").c_str()),
                agebuf);
    pos = end;
  }
  // Relays: actuate's own view (state, last reason, manual override and its expiry).
  if (rep.find("{\"name\":\"actuate\"") == std::string::npos) return 0;
  const std::string arep = ctl_request(run_dir, "actuate", "status", 1000);
  if (arep.empty()) {
    std::printf("relays: actuate does not answer on its control socket\n");
    return 0;
  }
  std::printf("\n%-12s %-5s %-9s %-22s %s\n", "RELAY", "STATE", "MODE", "OVERRIDE", "LAST REASON");
  for (size_t p = arep.find("{\"name\":"); p != std::string::npos;
       p = arep.find("{\"name\":", p + 1)) {
    const std::string r = arep.substr(p, arep.find('}', p) - p + 1);
    std::string ovr = json_field(r, "override");
    if (ovr == "auto")
      ovr = "-";
    else if (long left = std::atol(json_field(r, "override_left_s").c_str()); left > 0)
      ovr += " (" + std::to_string(left) + " s left)";
    // "on?": believed on, but a failed switch may have changed it (being re-asserted)
    std::string state =
        json_field(r, "known") == "true" ? (json_field(r, "on") == "true" ? "on" : "off") : "?";
    if (state != "?" && json_field(r, "doubt") == "true") state += "?";
    std::printf("%-12s %-5s %-9s %-22s %s\n", json_field(r, "name").c_str(), state.c_str(),
                json_field(r, "mode").c_str(), ovr.c_str(), json_field(r, "last_reason").c_str());
  }
  return 0;
}

// One bus message as the JSON line `tap` prints.
void print_tap_line(const bus::Message& m) {
  google::protobuf::util::JsonPrintOptions jo;
  jo.preserve_proto_field_names = true;
  std::string body;
  (void)google::protobuf::util::MessageToJsonString(m.env, &body, jo);
  std::string line = "{\"topic\":" + json::quote(m.topic) +
                     ",\"publisher\":" + json::quote(m.env.publisher()) +
                     ",\"seq\":" + std::to_string(m.env.seq()) + ",\"envelope\":" + body + "}\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

int cmd_tap(const std::string& run_dir, std::vector<std::string> prefixes, long count,
            double seconds, long backlog) {
  install_stop_signals();
  // replay on, so a restarted worker's first messages are not missed; at the first message
  // of a topic, up to `backlog` earlier ones from the publisher's ring (none by default)
  bus::Subscriber::Options so;
  so.replay = true;
  so.first_contact_max = uint64_t(backlog);  // 0..10000 (checked)
  bus::Subscriber sub(run_dir, kWorkers, prefixes, so);
  long n = 0;
  const int64_t deadline = seconds > 0 ? clock::mono_ns() + int64_t(seconds * 1e9) : 0;
  while (!g_stop && (count <= 0 || n < count)) {
    if (deadline && clock::mono_ns() > deadline) break;
    bus::Message m;
    if (!sub.receive(m, 200)) continue;
    print_tap_line(m);
    ++n;
  }
  return (count > 0 && n < count) ? 1 : 0;
}

// A key file named on the command line: its one key, or a one-line error on stderr.
bool read_key_arg(const std::string& what, const std::string& path, std::string& key) {
  std::string text, err;
  keys::Problem p;
  if (!fs::read_file(path, text, err)) {
    std::fprintf(stderr, "tap: %s: %s\n", what.c_str(), err.c_str());
    return false;
  }
  const bool ok = keys::parse_key_text(text, key, p);
  std::fill(text.begin(), text.end(), '\0');
  if (!ok) {
    std::fprintf(stderr, "tap: %s: %s%s: %s\n", what.c_str(), path.c_str(),
                 p.line ? (":" + std::to_string(p.line)).c_str() : "", p.message.c_str());
    return false;
  }
  return true;
}

bool is_file(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// `tap --remote`: the same lines, from a remote endpoint ([remote] of the server's config).
int cmd_tap_remote(const std::string& server, const std::string& server_key_arg,
                   const std::string& key_arg, std::vector<std::string> prefixes, long count,
                   double seconds) {
  bus::RemoteSubscriber::Options o;
  o.server = server;
  o.prefixes = std::move(prefixes);
  if (server.rfind(':') == std::string::npos || server.rfind(':') == 0) {
    std::fprintf(stderr, "tap: --remote: \"%s\" is not HOST:PORT\n", server.c_str());
    return 2;
  }
  // --server-key: the server's NAME.pub, or the key itself
  if (keys::valid_z85_key(server_key_arg) && !is_file(server_key_arg)) {
    o.server_key = server_key_arg;
  } else if (!read_key_arg("--server-key", server_key_arg, o.server_key)) {
    return 2;
  }
  // --key: this client's NAME.key, or NAME (then NAME.key); the public key follows from it
  std::string key_file = key_arg;
  if (key_arg.size() > 4 && key_arg.compare(key_arg.size() - 4, 4, ".pub") == 0) {
    std::fprintf(stderr,
                 "tap: --key: %s is a public key; give the secret key (NAME.key, or NAME)\n",
                 key_arg.c_str());
    return 2;
  }
  if (!is_file(key_file) && is_file(key_arg + ".key")) key_file = key_arg + ".key";
  if (!is_file(key_file)) {
    std::fprintf(stderr,
                 "tap: --key: neither %s nor %s.key is a file (make one with `meterpipe "
                 "keygen NAME`)\n",
                 key_arg.c_str(), key_arg.c_str());
    return 2;
  }
  if (!read_key_arg("--key", key_file, o.secret_key)) return 2;
  if (!bus::curve_public_key(o.secret_key, o.public_key)) {
    std::fprintf(stderr, "tap: --key: %s: not a CurveZMQ secret key\n", key_file.c_str());
    return 2;
  }
  install_stop_signals();
  std::unique_ptr<bus::RemoteSubscriber> sub;
  try {
    sub = std::make_unique<bus::RemoteSubscriber>(std::move(o));  // wipes the secret
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tap: %s\n", e.what());
    return 2;
  }
  long n = 0;
  const int64_t start = clock::mono_ns();
  const int64_t deadline = seconds > 0 ? start + int64_t(seconds * 1e9) : 0;
  bool said_waiting = false;
  while (!g_stop && (count <= 0 || n < count)) {
    if (deadline && clock::mono_ns() > deadline) break;
    bus::Message m;
    if (!sub->receive(m, 200)) {
      if (!sub->failure().empty()) {
        std::fprintf(stderr, "tap: %s: %s\n", server.c_str(), sub->failure().c_str());
        return 1;
      }
      if (!said_waiting && !sub->connected() && clock::mono_ns() - start > 5000000000LL) {
        std::fprintf(stderr,
                     "tap: no connection to %s yet, still trying (is [remote] enabled there, "
                     "and the port reachable?)\n",
                     server.c_str());
        said_waiting = true;
      }
      continue;
    }
    print_tap_line(m);
    ++n;
  }
  return (count > 0 && n < count) ? 1 : 0;
}

// `keygen BASE`: BASE.key (secret, 0600) and BASE.pub; never overwrites.
int cmd_keygen(const std::string& base) {
  const std::string key_path = base + ".key", pub_path = base + ".pub";
  for (const auto& p : {key_path, pub_path}) {
    if (access(p.c_str(), F_OK) == 0) {
      std::fprintf(stderr, "keygen: %s exists: not overwritten\n", p.c_str());
      return 1;
    }
  }
  std::string pub, sec;
  if (!bus::curve_keypair(pub, sec)) {
    std::fprintf(stderr, "keygen: this libzmq has no CurveZMQ support\n");
    return 1;
  }
  auto write_new = [](const std::string& path, const std::string& text, mode_t mode) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
      std::fprintf(stderr, "keygen: cannot create %s: %s\n", path.c_str(), std::strerror(errno));
      return false;
    }
    bool ok = mode != 0600 || fchmod(fd, 0600) == 0;  // never wider than 0600
    ok = ok && ::write(fd, text.data(), text.size()) == ssize_t(text.size());
    ok = ::fsync(fd) == 0 && ok;
    if (::close(fd) != 0) ok = false;
    if (!ok) {
      std::fprintf(stderr, "keygen: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
      ::unlink(path.c_str());
    }
    return ok;
  };
  std::string sec_text = sec + "\n";
  std::fill(sec.begin(), sec.end(), '\0');
  const bool key_ok = write_new(key_path, sec_text, 0600);
  std::fill(sec_text.begin(), sec_text.end(), '\0');
  if (!key_ok) return 1;
  if (!write_new(pub_path, pub + "\n", 0644)) {
    ::unlink(key_path.c_str());
    return 1;
  }
  std::printf(
      "%s: secret key (mode 0600; keep it on this machine)\n"
      "%s: public key %s\n",
      key_path.c_str(), pub_path.c_str(), pub.c_str());
  return 0;
}

// "2h", "30m", "90s", "1h30m", "45" (seconds) -> seconds; -1 when malformed.
double parse_duration(const std::string& t) {
  double total = 0, num = 0;
  bool have = false;
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    if (std::isdigit(static_cast<unsigned char>(c))) {
      num = num * 10 + (c - '0');
      have = true;
    } else if ((c == 'h' || c == 'm' || c == 's' || c == 'd') && have) {
      total += num * (c == 'd' ? 86400 : c == 'h' ? 3600 : c == 'm' ? 60 : 1);
      num = 0;
      have = false;
    } else {
      return -1;
    }
  }
  return total + num;
}

int cmd_relay(const std::string& run_dir, const std::string& name, const std::string& state,
              const std::string& for_text) {
  if (state != "on" && state != "off" && state != "auto") {
    std::fprintf(stderr, "state must be on, off or auto, not \"%s\"\n", state.c_str());
    return 2;
  }
  std::string req = "relay " + name + " " + state;
  if (!for_text.empty()) {
    double secs = parse_duration(for_text);
    if (secs <= 0) {
      std::fprintf(stderr, "--for: \"%s\" is not a duration like 2h, 30m, 90s\n", for_text.c_str());
      return 2;
    }
    req += " " + std::to_string(int64_t(secs));
  }
  const std::string ep = bus::ctl_endpoint(run_dir, "actuate");
  std::string rep = ctl_request(run_dir, "actuate", req, 3000);
  if (rep.empty()) {
    std::fprintf(stderr,
                 "actuate does not answer on %s (is a relay configured and meterpipe running?)\n",
                 ep.c_str());
    return 1;
  }
  if (rep.find("\"error\"") != std::string::npos) {
    std::fprintf(stderr, "%s\n", json_field(rep, "error").c_str());
    return 1;
  }
  std::printf("relay %s: %s%s\n", name.c_str(), state.c_str(),
              for_text.empty() ? "" : (" for " + for_text).c_str());
  return 0;
}

bool parse_ids(const std::string& text, std::vector<int>& ids) {
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) {
    int a = 0, b = 0;
    char dash;
    std::stringstream ps(part);
    if (!(ps >> a)) return false;
    if (ps >> dash) {
      if (dash != '-' || !(ps >> b)) return false;
    } else {
      b = a;
    }
    if (a < 0 || b > 255 || a > b) return false;
    for (int i = a; i <= b; ++i) ids.push_back(i);
  }
  return !ids.empty();
}

struct ModbusTarget {
  std::string rtu, tcp;
  int baud = 0;  // 0 = the protocol's default (RTU 9600, M-Bus 2400)
  std::string parity = "none";
};

bool make_bus_config(const ModbusTarget& t, modbus::BusConfig& bc) {
  if (!t.tcp.empty() == !t.rtu.empty()) {
    std::fprintf(stderr, "give exactly one of --rtu DEVICE or --tcp HOST:PORT\n");
    return false;
  }
  if (!t.tcp.empty()) {
    bc.kind = modbus::BusConfig::Kind::tcp;
    auto colon = t.tcp.rfind(':');
    bc.host = t.tcp.substr(0, colon);
    bc.port = colon == std::string::npos ? 502 : std::atoi(t.tcp.c_str() + colon + 1);
  } else {
    bc.kind = modbus::BusConfig::Kind::rtu;
    bc.device = t.rtu;
    bc.baud = t.baud ? t.baud : 9600;
    bc.parity = t.parity == "even" ? 'E' : t.parity == "odd" ? 'O' : 'N';
  }
  return true;
}

int cmd_scan(const ModbusTarget& t, const std::string& mbus_dev, const std::string& ids_text,
             int timeout_ms) {
  std::vector<int> ids;
  if (!mbus_dev.empty()) {
    if (!parse_ids(ids_text.empty() ? "0-250" : ids_text, ids)) {
      std::fprintf(stderr, "--ids: \"%s\" is not like 1-247 or 1,2,5\n", ids_text.c_str());
      return 2;
    }
    acquire::SerialSettings s;
    s.device = mbus_dev;
    protocols::apply_preset("mbus", s);
    if (t.baud) s.baud = t.baud;
    acquire::SerialSource src(s);
    if (!src.open()) {
      std::fprintf(stderr, "cannot open %s: %s\n", mbus_dev.c_str(), src.last_error().c_str());
      return 1;
    }
    std::printf("%-8s %-18s %-6s %s\n", "ADDRESS", "ID", "MANUF", "MEDIUM");
    int found = 0;
    for (int id : ids) {
      std::string err;
      mbus_link::FcbState fcb;
      if (!mbus_poll::reset(src, uint8_t(id), unsigned(s.baud), err)) continue;
      fcb.reset();
      auto res = mbus_poll::read(src, uint8_t(id), unsigned(s.baud), fcb, 1);
      if (res.frames.empty()) {
        std::printf("%-8d %-18s %-6s %s\n", id, "?", "?", "(acknowledged, no data)");
        ++found;
        continue;
      }
      const auto& f = res.frames[0];
      auto dec = mbus::decode(
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(f.data()), f.size()));
      std::string js = dec.ok() ? mbus::to_json(dec.frame) : "";
      std::printf("%-8d %-18s %-6s %s\n", id, json_field(js, "id").c_str(),
                  json_field(js, "manufacturer").c_str(), json_field(js, "medium").c_str());
      ++found;
    }
    std::printf("%d of %zu addresses answered\n", found, ids.size());
    return 0;
  }
  modbus::BusConfig bc;
  if (!make_bus_config(t, bc)) return 2;
  if (!parse_ids(ids_text.empty() ? "1-247" : ids_text, ids)) {
    std::fprintf(stderr, "--ids: \"%s\" is not like 1-247 or 1,2,5\n", ids_text.c_str());
    return 2;
  }
  modbus::Bus bus(bc);
  auto hits = bus.scan(ids, timeout_ms);
  std::printf("%-6s %-14s %s\n", "ID", "TYPE", "L1 VOLTAGE");
  for (const auto& h : hits)
    std::printf("%-6d %-14s %.1f V\n", h.unit_id, h.type.c_str(), h.voltage_l1_v);
  std::printf(
      "%zu of %zu ids answered. Devices with register maps we do not know (or that\n"
      "report no L1 voltage, such as SunSpec inverters) may be missed.\n",
      hits.size(), ids.size());
  return 0;
}

int cmd_read(const ModbusTarget& t, int id, const std::string& type) {
  modbus::BusConfig bc;
  if (!make_bus_config(t, bc)) return 2;
  modbus::Bus bus(bc);
  modbus::DeviceConfig dc;
  dc.name = "device";
  dc.unit_id = id;
  dc.type = type;
  std::string err;
  if (!bus.add_device(dc, err)) {
    std::string types;
    for (auto tn : modbus::map_types()) types += " " + std::string(tn);
    std::fprintf(stderr, "%s (types: sunspec%s)\n", err.c_str(), types.c_str());
    return 2;
  }
  std::vector<Value> values;
  const modbus::MeterMap* map = modbus::find_map(type);
  bool ok = bus.poll_device(0, [&](const modbus::RawBlock& b) {
    if (type == "sunspec")
      sunspec::decode_block_bytes(b.start, b.bytes.data(), b.bytes.size(), values);
    else if (map)
      modbus::decode_bytes(*map, b.fc, b.start, b.bytes.data(), b.bytes.size(), values);
  });
  if (type != "sunspec") modbus::complete(values);
  std::string js = "{\"ok\":" + std::string(ok ? "true" : "false") +
                   ",\"unit_id\":" + std::to_string(id) + ",\"type\":" + json::quote(type) +
                   ",\"values\":[";
  for (size_t i = 0; i < values.size(); ++i) {
    const auto& v = values[i];
    if (i) js += ',';
    js += "{\"name\":" + json::quote(v.name) + ",\"register\":" + json::quote(v.native_id) +
          ",\"value\":";
    if (v.is_text)
      json::append_string(js, v.text);
    else
      json::append_number(js, v.number);
    js += ",\"unit\":" + json::quote(v.unit) + "}";
  }
  js += "],\"errors\":[";
  if (!ok) {
    auto st = bus.status();
    js += json::quote(st.empty() ? "poll failed" : st[0].last_error);
  }
  js += "]}";
  std::printf("%s\n", js.c_str());
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"meterpipe: meter reading, load switching and upload for a Raspberry Pi"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "meterpipe 0.1.0");

  std::string cfg_file, bin_dir, run_dir;
  auto* run = app.add_subcommand("run", "Start and supervise every worker (foreground)");
  run->add_option("-c,--config", cfg_file, "Config file")->default_val(kDefaultConfig);
  run->add_option("--bin-dir", bin_dir, "Where the meterpipe-<worker> executables are");

  std::string check_file;
  auto* check = app.add_subcommand("check-config", "Validate a config file, list every error");
  check->add_option("FILE", check_file, "Config file")->required();

  bool as_json = false;
  auto* status = app.add_subcommand("status", "Show the workers of a running supervisor");
  status->add_option("-c,--config", cfg_file, "Config file (for run_dir)");
  status->add_option("--run-dir", run_dir, "Run directory (default from config)");
  status->add_flag("--json", as_json, "Print the raw JSON");

  std::vector<std::string> prefixes;
  long count = 0, backlog = 0;
  double seconds = 0;
  std::string remote, server_key, client_key;
  auto* tap = app.add_subcommand("tap", "Print bus messages as JSON lines");
  tap->add_option("PREFIX", prefixes, "Topic prefixes (default: everything)");
  tap->add_option("-c,--config", cfg_file, "Config file (for run_dir)");
  tap->add_option("--run-dir", run_dir, "Run directory (default from config)");
  tap->add_option("-n,--count", count, "Stop after N messages (exit 1 if fewer came)");
  tap->add_option("--seconds", seconds, "Stop after this many seconds");
  tap->add_option("--backlog", backlog,
                  "At a topic's first message, print first the earlier ones the publisher "
                  "still holds, when they are at most N (a tap started with the pipeline "
                  "sees its first messages)")
      ->check(CLI::Range(0L, 10000L));
  auto* tap_remote = tap->add_option(
      "--remote", remote,
      "Tap a meterpipe on another machine ([remote] of its config) at HOST:PORT, over "
      "CurveZMQ. No replay over --remote: a message lost on the way stays lost (seq shows it)");
  tap->add_option("--server-key", server_key,
                  "With --remote: the server's public key (its NAME.pub, or the 40 Z85 characters)")
      ->needs(tap_remote);
  tap->add_option("--key", client_key,
                  "With --remote: this client's secret key, NAME.key or NAME (from `meterpipe "
                  "keygen NAME`; the server's authorized_keys_file lists NAME.pub)")
      ->needs(tap_remote);

  std::string keygen_base;
  auto* keygen = app.add_subcommand(
      "keygen", "Make a CurveZMQ key pair for remote taps: BASE.key (secret, 0600) and BASE.pub");
  keygen->add_option("OUT_BASENAME", keygen_base, "Path without extension, e.g. ./laptop")
      ->required();

  auto* decode = app.add_subcommand("decode", "Decode telegrams or frames from a file or stdin");
  decode->require_subcommand(1);
  std::vector<protocols::CliCommand> protocol_commands;
  for (const auto* d : protocols::all())
    if (auto add = protocols::runtime(*d).add_cli) add(app, *decode, protocol_commands);
  add_history_commands(app, protocol_commands);  // export

  std::string relay_name, relay_state, relay_for;
  auto* relay = app.add_subcommand("relay", "Manual override of a relay: on, off or auto");
  relay->add_option("NAME", relay_name, "Relay name")->required();
  relay->add_option("STATE", relay_state, "on | off | auto")->required();
  relay->add_option("--for", relay_for, "Override expires after e.g. 2h, 30m, 90s");
  relay->add_option("-c,--config", cfg_file, "Config file (for run_dir)");
  relay->add_option("--run-dir", run_dir, "Run directory (default from config)");

  ModbusTarget mt;
  std::string ids_text, mbus_dev;
  int timeout_ms = 1000;
  auto* scan = app.add_subcommand("scan", "Find Modbus or M-Bus devices on a bus");
  scan->add_option("--rtu", mt.rtu, "Modbus RTU serial device");
  scan->add_option("--tcp", mt.tcp, "Modbus TCP host:port");
  scan->add_option("--mbus", mbus_dev, "M-Bus serial device (2400 8E1)");
  scan->add_option("--baud", mt.baud, "Baud rate (RTU default 9600, M-Bus 2400)");
  scan->add_option("--parity", mt.parity, "none | even | odd (RTU)");
  scan->add_option("--ids", ids_text, "Ids to try, e.g. 1-247 or 1,2,5 (M-Bus: 0-250)");
  scan->add_option("--timeout-ms", timeout_ms, "Wait per id (Modbus)")->default_val(1000);

  int read_id = 1;
  std::string read_type;
  auto* read = app.add_subcommand("read", "Poll one Modbus device once, print JSON");
  read->add_option("--rtu", mt.rtu, "Modbus RTU serial device");
  read->add_option("--tcp", mt.tcp, "Modbus TCP host:port");
  read->add_option("--baud", mt.baud, "Baud rate (RTU)");
  read->add_option("--parity", mt.parity, "none | even | odd (RTU)");
  read->add_option("--id", read_id, "Unit id")->default_val(1);
  read->add_option("--type", read_type, "Register map (sdm630, ...) or sunspec")->required();

  UserCommands user_commands(app);
  CLI11_PARSE(app, argc, argv);
  if (user_commands.chosen()) return user_commands.run();
  for (const auto& pc : protocol_commands)
    if (*pc.sub) return pc.run();
  if (*relay) return cmd_relay(find_run_dir(run_dir, cfg_file), relay_name, relay_state, relay_for);
  if (*scan) {
    log::init("scan", log::Level::warn);
    return cmd_scan(mt, mbus_dev, ids_text, timeout_ms);
  }
  if (*read) {
    log::init("read", log::Level::warn);
    return cmd_read(mt, read_id, read_type);
  }
  if (*run) return cmd_run(cfg_file, bin_dir);
  if (*check) return cmd_check(check_file);
  if (*status) return cmd_status(find_run_dir(run_dir, cfg_file), as_json);
  if (*keygen) return cmd_keygen(keygen_base);
  if (*tap && !remote.empty()) {
    if (server_key.empty() || client_key.empty()) {
      std::fprintf(stderr, "tap: --remote needs --server-key and --key\n");
      return 2;
    }
    if (backlog > 0) {
      std::fprintf(stderr,
                   "tap: --backlog works on the local bus only (a remote tap has no "
                   "replay)\n");
      return 2;
    }
    return cmd_tap_remote(remote, server_key, client_key, prefixes, count, seconds);
  }
  if (*tap) {
    if (prefixes.empty()) prefixes.push_back("");
    return cmd_tap(find_run_dir(run_dir, cfg_file), prefixes, count, seconds, backlog);
  }
  return 0;
}

}  // namespace mp::cli
