#include "supervisor/cli.h"

#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <zmq.hpp>

#include "bus/bus.h"
#include "bus/worker.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "config/config.h"
#include "supervisor/supervisor.h"

namespace mp::cli {
namespace {

const char* kDefaultConfig = "/etc/meterpipe/meterpipe.toml";
const std::vector<std::string> kWorkers = {"acquire", "process", "actuate", "upload", "serve"};

int print_errors(const config::Result& r) {
  for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
  return 2;
}

// run_dir from --run-dir, else from the config file, else the default.
std::string find_run_dir(const std::string& run_dir, const std::string& cfg_file) {
  if (!run_dir.empty()) return run_dir;
  std::string f = cfg_file.empty() ? kDefaultConfig : cfg_file;
  if (!cfg_file.empty() || access(f.c_str(), R_OK) == 0) {
    auto r = config::load_file(f);
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
  opt.bin_dir = !bin_dir.empty()                       ? bin_dir
                : !r.config->general.bin_dir.empty() ? r.config->general.bin_dir
                                                     : supervisor::self_dir();
  return supervisor::run(*r.config, opt);
}

// One request/reply on a control socket; empty on timeout.
std::string ctl_request(const std::string& endpoint, const std::string& request,
                        int timeout_ms) {
  zmq::socket_t s(bus::context(), zmq::socket_type::req);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, timeout_ms);
  s.set(zmq::sockopt::sndtimeo, timeout_ms);
  s.connect(endpoint);
  if (!s.send(zmq::buffer(request))) return {};
  zmq::message_t rep;
  if (!s.recv(rep)) return {};
  return rep.to_string();
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
  std::string rep = ctl_request(ep, "status", 2000);
  if (rep.empty()) {
    std::fprintf(stderr, "no supervisor answers on %s (is `meterpipe run` running?)\n",
                 ep.c_str());
    return 1;
  }
  if (as_json) {
    std::printf("%s\n", rep.c_str());
    return 0;
  }
  std::printf("supervisor pid %s, up %.0f s, config %s\n", json_field(rep, "supervisor_pid").c_str(),
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
    if (age == "null") std::snprintf(agebuf, sizeof agebuf, "-");
    else std::snprintf(agebuf, sizeof agebuf, "%.1f s", std::atof(age.c_str()));
    std::printf("%-10s %-8s %-9s %8s %8.0f s %12s\n", json_field(w, "name").c_str(),
                json_field(w, "pid").c_str(), json_field(w, "state").c_str(),
                json_field(w, "restarts").c_str(), std::atof(json_field(w, "uptime_s").c_str()),
                agebuf);
    pos = end;
  }
  return 0;
}

int cmd_tap(const std::string& run_dir, std::vector<std::string> prefixes, long count,
            double seconds) {
  install_stop_signals();
  bus::Subscriber sub(run_dir, kWorkers, prefixes);
  google::protobuf::util::JsonPrintOptions jo;
  jo.preserve_proto_field_names = true;
  long n = 0;
  const int64_t deadline = seconds > 0 ? clock::mono_ns() + int64_t(seconds * 1e9) : 0;
  while (!g_stop && (count <= 0 || n < count)) {
    if (deadline && clock::mono_ns() > deadline) break;
    bus::Message m;
    if (!sub.receive(m, 200)) continue;
    std::string body;
    (void)google::protobuf::util::MessageToJsonString(m.env, &body, jo);
    std::string line = "{\"topic\":" + json::quote(m.topic) + ",\"publisher\":" +
                       json::quote(m.env.publisher()) +
                       ",\"seq\":" + std::to_string(m.env.seq()) + ",\"envelope\":" + body + "}\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
    ++n;
  }
  return (count > 0 && n < count) ? 1 : 0;
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
  long count = 0;
  double seconds = 0;
  auto* tap = app.add_subcommand("tap", "Print bus messages as JSON lines");
  tap->add_option("PREFIX", prefixes, "Topic prefixes (default: everything)");
  tap->add_option("-c,--config", cfg_file, "Config file (for run_dir)");
  tap->add_option("--run-dir", run_dir, "Run directory (default from config)");
  tap->add_option("-n,--count", count, "Stop after N messages (exit 1 if fewer came)");
  tap->add_option("--seconds", seconds, "Stop after this many seconds");

  CLI11_PARSE(app, argc, argv);
  if (*run) return cmd_run(cfg_file, bin_dir);
  if (*check) return cmd_check(check_file);
  if (*status) return cmd_status(find_run_dir(run_dir, cfg_file), as_json);
  if (*tap) {
    if (prefixes.empty()) prefixes.push_back("");
    return cmd_tap(find_run_dir(run_dir, cfg_file), prefixes, count, seconds);
  }
  return 0;
}

}  // namespace mp::cli
