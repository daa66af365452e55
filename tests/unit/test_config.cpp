// Config validation: every bad configuration names its file, line and key path.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/relay_spec.h"

using mp::config::load_file;
using mp::config::load_string;

namespace {

const char* kMeter = R"([[meter]]
name = "home"
source = "simulate"
)";

struct Bad {
  const char* what;
  std::string toml;
  int line;          // expected line of the (first) error
  const char* key;   // expected key path
  const char* text;  // expected fragment of the message
};

bool has_error(const mp::config::Result& r, int line, const std::string& key,
               const std::string& text) {
  for (const auto& e : r.errors)
    if (e.line == line && e.key == key && e.message.find(text) != std::string::npos &&
        e.file == "bad.toml")
      return true;
  return false;
}

std::string dump(const mp::config::Result& r) {
  std::string s;
  for (const auto& e : r.errors) s += e.str() + "\n";
  return s;
}

}  // namespace

TEST_CASE("bad configurations name file, line, column and key") {
  const std::string M = kMeter;  // lines 1-3
  const std::vector<Bad> table = {
      {"unknown top-level table", "[genral]\nrun_dir = \"/tmp\"\n", 1, "genral", "unknown key"},
      {"unknown key in general", "[general]\nrun_dir = \"/tmp/x\"\nwatchdog = 5\n", 3,
       "general.watchdog", "unknown key"},
      {"wrong type", "[general]\nwatchdog_s = \"5\"\n", 2, "general.watchdog_s",
       "must be a number"},
      {"out of range", "[general]\nwatchdog_s = 0\n", 2, "general.watchdog_s", "out of range"},
      {"sunspec_part on a modbus meter",
       "[[meter]]\nname = \"m\"\nprotocol = \"modbus\"\ntype = \"sdm630\"\nsource = \"tcp\"\n"
       "host = \"h\"\nport = 502\nsunspec_part = \"meter\"\n",
       8, "meter[0].sunspec_part", "only for protocol = \"sunspec\""},
      {"bad sunspec_part",
       "[[meter]]\nname = \"m\"\nprotocol = \"sunspec\"\nsource = \"tcp\"\n"
       "host = \"h\"\nport = 502\nsunspec_part = \"battery\"\n",
       7, "meter[0].sunspec_part", "is not one of"},
      {"unreadable ca_file",
       "[upload]\ntarget = \"influxdb1\"\nurl = \"https://h:8086\"\n"
       "database = \"d\"\nca_file = \"/nonexistent/ca.pem\"\n",
       5, "upload.ca_file", "cannot read /nonexistent/ca.pem: No such file or directory"},
      {"realtime_cpu below -1", "[general]\nrealtime_cpu = -2\n", 2, "general.realtime_cpu",
       "out of range"},
      {"realtime_cpu as text", "[general]\nrealtime_cpu = \"auto\"\n", 2, "general.realtime_cpu",
       "must be an integer"},
      {"bad log level", "[general]\nlog_level = \"loud\"\n", 2, "general.log_level",
       "is not one of"},
      {"meter without name", "[[meter]]\nsource = \"simulate\"\n", 1, "meter[0].name",
       "required key is missing"},
      {"meter without source", "[[meter]]\nname = \"a\"\n", 1, "meter[0].source",
       "required key is missing"},
      {"bad source", "[[meter]]\nname = \"a\"\nsource = \"usb\"\n", 3, "meter[0].source",
       "is not one of"},
      {"bad meter name", "[[meter]]\nname = \"my meter\"\nsource = \"simulate\"\n", 2,
       "meter[0].name", "letters, digits"},
      {"serial without device", "[[meter]]\nname = \"a\"\nsource = \"serial\"\n", 1,
       "meter[0].device", "required key is missing"},
      {"tcp without host", "[[meter]]\nname = \"a\"\nsource = \"tcp\"\nport = 23\n", 1,
       "meter[0].host", "required key is missing"},
      {"baud out of range", M + "baud = 12\n", 4, "meter[0].baud", "out of range"},
      {"typo in meter key", M + "devcie = \"/dev/ttyUSB0\"\n", 4, "meter[0].devcie", "unknown key"},
      {"bad parity", M + "parity = \"mark\"\n", 4, "meter[0].parity", "is not one of"},
      {"duplicate meter", M + M, 5, "meter[1].name", "duplicate meter name"},
      {"modbus without type",
       "[[meter]]\nname = \"a\"\nprotocol = \"modbus\"\nsource = \"tcp\"\nhost = \"h\"\nport = "
       "502\n",
       1, "meter[0].type", "required key is missing"},
      {"meter must be an array of tables", "meter = 3\n", 1, "meter", "array of tables"},
      {"token in the config", M + "[upload]\ntoken = \"abc\"\n", 5, "upload.token",
       "secrets are not kept"},
      {"influxdb2 without bucket",
       M + "[upload]\ntarget = \"influxdb2\"\nurl = \"http://x\"\norg = \"o\"\ntoken_env = \"T\"\n",
       4, "upload.bucket", "required key is missing"},
      {"bad precision", M + "[upload]\nprecision = \"m\"\n", 5, "upload.precision",
       "is not one of"},
      {"tag not a string", M + "[upload]\ntags = { site = 3 }\n", 5, "upload.tags.site",
       "must be a string"},
      {"relay to an undefined meter",
       M + "[[relay]]\nname = \"boiler\"\nmeter = \"garage\"\n[relay.output]\ntype = \"sim\"\n", 6,
       "relay[0].meter", "no [[meter]] is named \"garage\""},
      {"relay hysteresis inverted",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\non_below_w = 200\noff_above_w = 100\n"
           "[relay.output]\ntype = \"sim\"\n",
       7, "relay[0].on_below_w", "must be below off_above_w"},
      {"relay without output", M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\n", 4,
       "relay[0].output", "required key is missing"},
      {"bad output type",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\n[relay.output]\ntype = \"relay\"\n", 8,
       "relay[0].output.type", "is not one of"},
      {"gpiod without line",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\n[relay.output]\ntype = \"gpiod\"\n"
           "chip = \"gpiochip0\"\n",
       7, "relay[0].output.line", "required key is missing"},
      {"command not an array",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\n[relay.output]\ntype = \"command\"\n"
           "on_command = \"curl x\"\noff_command = [\"true\"]\n",
       9, "relay[0].output.on_command", "array of strings"},
      {"bad time window",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\nwindows = [\"8-17\"]\n"
           "[relay.output]\ntype = \"sim\"\n",
       7, "relay[0].windows[0]", "is not a time window"},
      {"empty second time window",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\nwindows = [\n  \"07:00-09:00\",\n"
           "  \"10:00-10:00\",\n]\n[relay.output]\ntype = \"sim\"\n",
       9, "relay[0].windows[1]", "must end at another time than it starts"},
      {"time window past 24:00",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\nwindows = [\"24:30-06:00\"]\n"
           "[relay.output]\ntype = \"sim\"\n",
       7, "relay[0].windows[0]", "between 00:00 and 24:00"},
      {"value condition after windows and tariff (named by its own index)",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\nwindows = [\"07:00-09:00\"]\n"
           "tariff = 2\n[relay.output]\ntype = \"sim\"\n[[relay.condition]]\n"
           "name = \"voltage_l1_v\"\nmin = 250\nmax = 210\n",
       14, "relay[0].condition[0].max", "must not be below min"},
      {"bad weekday",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\nweekdays = [\"monday\"]\n"
           "[relay.output]\ntype = \"sim\"\n",
       7, "relay[0].weekdays[0]", "is not one of mon"},
      {"duplicate relay",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\n[relay.output]\ntype = \"sim\"\n"
           "[[relay]]\nname = \"b\"\nmeter = \"home\"\n[relay.output]\ntype = \"sim\"\n",
       10, "relay[1].name", "duplicate relay name"},
      {"unknown failsafe",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\nfailsafe = \"maybe\"\n"
           "[relay.output]\ntype = \"sim\"\n",
       7, "relay[0].failsafe", "is not one of"},
      {"condition without bounds",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\n[relay.output]\ntype = \"sim\"\n"
           "[[relay.condition]]\nname = \"voltage_l1_v\"\n",
       9, "relay[0].condition[0].min", "required key is missing"},
      {"negative demand limit", M + "[actuate]\ndemand_limit_w = -5\n", 5, "actuate.demand_limit_w",
       "out of range"},
      {"serve enabled not boolean", "[serve]\nenabled = \"yes\"\n", 2, "serve.enabled",
       "must be a boolean"},
      {"TOML syntax error", "[general\nrun_dir = 1\n", 1, "", "TOML syntax"},
      {"time zone typo", "[general]\ntimezone = \"Europe/Amsterdm\"\n", 2, "general.timezone",
       "is not a time zone"},
      {"M-Bus over tcp",
       "[[meter]]\nname = \"m\"\nprotocol = \"mbus\"\nsource = \"tcp\"\nhost = \"h\"\nport = 1\n",
       4, "meter[0].source", "M-Bus meters are read over"},
      {"serve listen without port", "[serve]\nlisten = \"0.0.0.0\"\n", 2, "serve.listen",
       "is not HOST:PORT"},
      {"one threshold given, above the default off threshold",
       M + "[[relay]]\nname = \"b\"\nmeter = \"home\"\non_below_w = 500\n"
           "[relay.output]\ntype = \"sim\"\n",
       7, "relay[0].on_below_w", "must be below off_above_w (100 W)"},
  };
  CHECK(table.size() >= 25);
  for (const auto& b : table) {
    const std::string what = b.what;
    CAPTURE(what);
    auto r = load_string(b.toml, "bad.toml");
    CHECK_FALSE(r.config.has_value());
    INFO(dump(r));
    CHECK(has_error(r, b.line, b.key, b.text));
    for (const auto& e : r.errors) {
      // every message is "FILE:LINE:COL: key: message"
      std::string s = e.str();
      CHECK(s.rfind("bad.toml:" + std::to_string(e.line) + ":" + std::to_string(e.column) + ": ",
                    0) == 0);
      CHECK(e.line > 0);
    }
  }
}

TEST_CASE("all errors are collected, not only the first") {
  auto r = load_string(
      "[general]\nwatchdog_s = -1\nlog_level = 3\nfoo = 1\n[[meter]]\nname = \"a\"\n", "bad.toml");
  REQUIRE_FALSE(r.config);
  CHECK(r.errors.size() == 4);
  CHECK(has_error(r, 2, "general.watchdog_s", "out of range"));
  CHECK(has_error(r, 3, "general.log_level", "must be a string"));
  CHECK(has_error(r, 4, "general.foo", "unknown key"));
  CHECK(has_error(r, 5, "meter[0].source", "required key is missing"));
}

TEST_CASE("a minimal config gets documented defaults") {
  auto r = load_string(kMeter, "ok.toml");
  INFO(dump(r));
  REQUIRE(r.config);
  const auto& c = *r.config;
  CHECK(c.general.run_dir == "/run/meterpipe");
  CHECK(c.general.watchdog_s == 20);
  CHECK(c.general.realtime_cpu == mp::config::General::kRealtimeCpuAuto);
  CHECK(c.upload.spool_dir == "/var/lib/meterpipe/spool");
  CHECK(c.upload.spool_max_mb == 256);
  CHECK(c.upload.batch_size == 5000);
  CHECK(c.meters.size() == 1);
  CHECK(c.meters[0].protocol == "dsmr");
  CHECK(c.workers() == std::vector<std::string>{"acquire", "process", "upload", "history"});
}

TEST_CASE("missing config file is one clear error") {
  auto r = load_file("/nonexistent/meterpipe.toml");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].str() == "/nonexistent/meterpipe.toml: cannot read: No such file or directory");
}

TEST_CASE("shipped example and demo configs validate") {
  for (const char* f : {"config/meterpipe.example.toml", "config/demo.toml"}) {
    CAPTURE(f);
    auto r = load_file(std::string(MP_SOURCE_DIR) + "/" + f);
    INFO(dump(r));
    CHECK(r.config.has_value());
  }
}

TEST_CASE("secrets come from a file or the environment, never the TOML") {
  std::string err;
  setenv("MP_TEST_TOKEN", "s3cret", 1);
  std::string v;
  REQUIRE(mp::config::resolve_secret("", "MP_TEST_TOKEN", v, err));
  CHECK(v == "s3cret");
  const std::string path = "/tmp/mp_test_token_file";
  { std::ofstream(path) << "filetoken \nsecond line\n"; }
  REQUIRE(mp::config::resolve_secret(path, "", v, err));
  CHECK(v == "filetoken");
  std::remove(path.c_str());
  CHECK_FALSE(mp::config::resolve_secret(path, "", v, err));
  CHECK(v.empty());
  CHECK(err.find(path) != std::string::npos);
  CHECK(err.find("filetoken") == std::string::npos);
  CHECK(mp::config::resolve_secret("", "", v, err));
  CHECK(v.empty());
  unsetenv("MP_TEST_TOKEN_MISSING");
  CHECK_FALSE(mp::config::resolve_secret("", "MP_TEST_TOKEN_MISSING", v, err));
  CHECK(err == "environment variable MP_TEST_TOKEN_MISSING is not set");
}

TEST_CASE("meters sharing a serial line or a Modbus gateway must agree on it") {
  // lines 1-7: an SDM630 on an RS485 line at 9600 (default) 8N1
  const std::string first =
      "[[meter]]\nname = \"a\"\nprotocol = \"modbus\"\ntype = \"sdm630\"\n"
      "source = \"serial\"\ndevice = \"/dev/ttyUSB7\"\nunit_id = 1\n";
  auto second = [](const std::string& extra) {  // starts at line 8
    return "[[meter]]\nname = \"b\"\nprotocol = \"modbus\"\ntype = \"sdm120\"\n"
           "source = \"serial\"\ndevice = \"/dev/ttyUSB7\"\n" +
           extra;
  };
  SUBCASE("same settings, another unit id: fine (defaults and explicit values compare alike)") {
    auto r =
        load_string(first + second("unit_id = 2\nbaud = 9600\nparity = \"none\"\n"), "ok.toml");
    CHECK_MESSAGE(r.config.has_value(), dump(r));
  }
  SUBCASE("another baud rate") {
    auto r = load_string(first + second("unit_id = 2\nbaud = 19200\n"), "bad.toml");
    INFO(dump(r));
    CHECK(r.errors.size() == 1);
    CHECK(has_error(r, 15, "meter[1].baud",
                    "19200 differs from meter[0] \"a\" (9600) on the same line /dev/ttyUSB7"));
  }
  SUBCASE("parity and timeout") {
    auto r = load_string(first + second("unit_id = 2\nparity = \"even\"\ntimeout_ms = 300\n"),
                         "bad.toml");
    INFO(dump(r));
    CHECK(r.errors.size() == 2);
    CHECK(has_error(r, 15, "meter[1].parity", "even differs from meter[0] \"a\" (none)"));
    CHECK(has_error(r, 16, "meter[1].timeout_ms", "300 differs from meter[0] \"a\" (500)"));
  }
  SUBCASE("the same unit id twice") {
    auto r = load_string(first + second("unit_id = 1\n"), "bad.toml");
    INFO(dump(r));
    CHECK(has_error(r, 14, "meter[1].unit_id",
                    "unit id 1 is already used by meter[0] \"a\" on the same line /dev/ttyUSB7"));
  }
  SUBCASE("a P1 meter on the Modbus line") {
    auto r = load_string(first +
                             "[[meter]]\nname = \"p1\"\nsource = \"serial\"\n"
                             "device = \"/dev/ttyUSB7\"\n",
                         "bad.toml");
    INFO(dump(r));
    CHECK(has_error(r, 11, "meter[1].device",
                    "\"/dev/ttyUSB7\" is already used by meter[0] \"a\" (modbus): one serial "
                    "line carries one protocol"));
  }
  SUBCASE("two P1 readers of one port") {
    auto r = load_string(
        "[[meter]]\nname = \"p1\"\nsource = \"serial\"\ndevice = \"/dev/ttyS9\"\n"
        "[[meter]]\nname = \"p2\"\nsource = \"serial\"\ndevice = \"/dev/ttyS9\"\n",
        "bad.toml");
    INFO(dump(r));
    CHECK(has_error(r, 8, "meter[1].device", "is already read by meter[0] \"p1\""));
  }
  SUBCASE("one device under two names is one line") {
    char dir[] = "/tmp/mp-cfg-XXXXXX";
    REQUIRE(mkdtemp(dir));
    const std::string real = std::string(dir) + "/ttyUSB7", link = std::string(dir) + "/by-id";
    { std::ofstream(real.c_str()) << ""; }
    REQUIRE(symlink(real.c_str(), link.c_str()) == 0);
    auto r = load_string(
        "[[meter]]\nname = \"a\"\nprotocol = \"mbus\"\nsource = \"serial\"\n"
        "device = \"" +
            real +
            "\"\naddress = 5\n"
            "[[meter]]\nname = \"b\"\nprotocol = \"mbus\"\nsource = \"serial\"\n"
            "device = \"" +
            link + "\"\naddress = 5\nbaud = 300\n",
        "bad.toml");
    INFO(dump(r));
    CHECK(r.errors.size() == 2);
    CHECK(has_error(r, 13, "meter[1].baud", "300 differs from meter[0] \"a\" (2400)"));
    CHECK(has_error(r, 12, "meter[1].address", "M-Bus address 5 is already used by meter[0]"));
    unlink(link.c_str());
    unlink(real.c_str());
    rmdir(dir);
  }
  SUBCASE("a Modbus TCP gateway") {
    const std::string tcp =
        "[[meter]]\nname = \"inv\"\nprotocol = \"sunspec\"\nsource = \"tcp\"\n"
        "host = \"10.0.0.9\"\nport = 502\nunit_id = 1\n";
    auto r = load_string(tcp +
                             "[[meter]]\nname = \"m\"\nprotocol = \"modbus\"\ntype = \"sdm630\"\n"
                             "source = \"tcp\"\nhost = \"10.0.0.9\"\nport = 502\nunit_id = 1\n",
                         "bad.toml");
    INFO(dump(r));
    CHECK(has_error(r, 15, "meter[1].unit_id",
                    "unit id 1 is already used by meter[0] \"inv\" on the same gateway "
                    "10.0.0.9:502"));
    // one SunSpec device read twice: its inverter part and its meter part
    const std::string part =
        "[[meter]]\nname = \"grid\"\nprotocol = \"sunspec\"\n"
        "source = \"tcp\"\nhost = \"10.0.0.9\"\nport = 502\nunit_id = 1\n";
    r = load_string(tcp + part, "bad.toml");  // the first one is "auto": ambiguous
    INFO(dump(r));
    CHECK(has_error(r, 14, "meter[1].unit_id", "give both sunspec_part = \"inverter\""));
    r = load_string(tcp + "sunspec_part = \"inverter\"\n" + part + "sunspec_part = \"meter\"\n",
                    "ok.toml");
    CHECK_MESSAGE(r.config.has_value(), dump(r));
    r = load_string(tcp + "sunspec_part = \"meter\"\n" + part +
                        "sunspec_part = \"meter\"\nsunspec_index = 1\ninvert_power = true\n",
                    "ok.toml");
    REQUIRE_MESSAGE(r.config.has_value(), dump(r));
    CHECK(r.config->meters[1].sunspec_part == "meter");
    CHECK(r.config->meters[1].sunspec_index == 1);
    CHECK(r.config->meters[1].invert_power);
    r = load_string(tcp + "sunspec_part = \"meter\"\n" + part + "sunspec_part = \"meter\"\n",
                    "bad.toml");
    CHECK(has_error(r, 15, "meter[1].unit_id", "unit id 1 is already used by meter[0]"));
    // another port is another gateway
    r = load_string(tcp +
                        "[[meter]]\nname = \"m\"\nprotocol = \"modbus\"\ntype = \"sdm630\"\n"
                        "source = \"tcp\"\nhost = \"10.0.0.9\"\nport = 503\nunit_id = 1\n",
                    "ok.toml");
    CHECK_MESSAGE(r.config.has_value(), dump(r));
  }
}

namespace {

// A scratch dir with key files for [remote] (valid Z85 keys; no ZeroMQ needed to make them).
struct RemoteFiles {
  std::string dir;
  std::string key, auth;
  RemoteFiles() {
    char tmpl[] = "/tmp/mpcfgremote.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    key = dir + "/server.key";
    auth = dir + "/authorized_keys";
    write(key, std::string(39, '0') + "1\n", 0600);
    write(auth, "# clients\n" + std::string(39, '0') + "2 laptop\n", 0644);
  }
  ~RemoteFiles() {
    std::remove(key.c_str());
    std::remove(auth.c_str());
    rmdir(dir.c_str());
  }
  static void write(const std::string& path, const std::string& text, mode_t mode) {
    std::remove(path.c_str());
    std::ofstream(path) << text;
    chmod(path.c_str(), mode);
  }
  // [remote] at line 1, enabled, both files; `extra` follows on line 5
  std::string toml(const std::string& extra = "") const {
    return "[remote]\nenabled = true\nsecret_key_file = \"" + key +
           "\"\nauthorized_keys_file = \"" + auth + "\"\n" + extra;
  }
};

}  // namespace

TEST_CASE("[remote]: off by default; enabled needs both key files") {
  auto r = load_string(kMeter, "ok.toml");
  REQUIRE(r.config);
  CHECK_FALSE(r.config->remote.enabled);
  CHECK(r.config->remote.listen == "127.0.0.1:7558");
  for (const auto& w : r.config->workers()) CHECK(w != "remote");

  r = load_string("[remote]\nenabled = true\n", "bad.toml");
  INFO(dump(r));
  CHECK(has_error(r, 1, "remote.secret_key_file", "required key is missing"));
  CHECK(has_error(r, 1, "remote.authorized_keys_file", "required key is missing"));
  r = load_string("[remote]\nenabled = true\nsecret_key_file = \"\"\nauthorized_keys_file = \"\"\n",
                  "bad.toml");
  CHECK(has_error(r, 1, "remote.secret_key_file", "meterpipe keygen"));
  r = load_string("[remote]\nenabled = true\nport = 7558\n", "bad.toml");
  CHECK(has_error(r, 3, "remote.port", "unknown key"));
  // not enabled: the files are not looked at
  r = load_string("[remote]\nsecret_key_file = \"/nonexistent/k\"\n", "ok.toml");
  CHECK_MESSAGE(r.config.has_value(), dump(r));

  RemoteFiles f;
  r = load_string(std::string(kMeter) + f.toml(), "ok.toml");
  REQUIRE_MESSAGE(r.config.has_value(), dump(r));
  const auto& rc = r.config->remote;
  CHECK(rc.enabled);
  CHECK(rc.secret_key_file == f.key);
  CHECK(rc.authorized_keys_file == f.auth);
  const auto workers = r.config->workers();
  REQUIRE_FALSE(workers.empty());
  CHECK(workers.back() == "remote");
  CHECK(rc.publishers == workers);  // default: every worker of the config
}

TEST_CASE("[remote]: listen is IP:PORT") {
  for (const char* ok :
       {"0.0.0.0:7558", "127.0.0.1:1", "192.168.1.20:65535", "*:7558", "[::1]:7558", "[::]:7558"}) {
    CAPTURE(ok);
    auto r = load_string(std::string("[remote]\nlisten = \"") + ok + "\"\n", "ok.toml");
    CHECK_MESSAGE(r.config.has_value(), dump(r));
  }
  for (const char* bad :
       {"localhost:7558", "127.0.0.1", ":7558", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:75x",
        "::1:7558", "127.0.0.1:*", "256.0.0.1:7558", "127.0.0.1:000007558"}) {
    CAPTURE(bad);
    auto r = load_string(std::string("[remote]\nlisten = \"") + bad + "\"\n", "bad.toml");
    INFO(dump(r));
    CHECK(has_error(r, 2, "remote.listen", "is not IP:PORT"));
  }
}

TEST_CASE("[remote]: unreadable or malformed key files name the file and line") {
  RemoteFiles f;
  SUBCASE("missing files") {
    auto r = load_string(
        "[remote]\nenabled = true\nsecret_key_file = \"/nonexistent/s.key\"\n"
        "authorized_keys_file = \"/nonexistent/auth\"\n",
        "bad.toml");
    INFO(dump(r));
    CHECK(has_error(r, 3, "remote.secret_key_file",
                    "cannot read /nonexistent/s.key: No such file or directory"));
    CHECK(has_error(r, 4, "remote.authorized_keys_file", "cannot read /nonexistent/auth"));
  }
  SUBCASE("a secret key file that is not one key, never echoed") {
    const std::string secretish = "Zq" + std::string(36, 'x') + "Q";  // 39 characters
    RemoteFiles::write(f.key, "# server\n" + secretish + "\n", 0600);
    auto r = load_string(f.toml(), "bad.toml");
    INFO(dump(r));
    CHECK(has_error(r, 3, "remote.secret_key_file", f.key + ":2: not a key"));
    CHECK(dump(r).find(secretish) == std::string::npos);
    RemoteFiles::write(f.key, "\n", 0600);
    r = load_string(f.toml(), "bad.toml");
    CHECK(has_error(r, 3, "remote.secret_key_file", f.key + ": holds no key"));
  }
  SUBCASE("a secret key every user can read") {
    chmod(f.key.c_str(), 0644);
    auto r = load_string(f.toml(), "bad.toml");
    INFO(dump(r));
    CHECK(has_error(r, 3, "remote.secret_key_file", "readable by every user (mode 0644)"));
  }
  SUBCASE("bad lines of authorized_keys") {
    RemoteFiles::write(f.auth,
                       "# clients\n" + std::string(39, '0') + "2 laptop\nssh-rsa AAAA me@host\n" +
                           std::string(39, '0') + "2 again\n",
                       0644);
    auto r = load_string(f.toml(), "bad.toml");
    INFO(dump(r));
    CHECK(has_error(r, 4, "remote.authorized_keys_file", f.auth + ":3: not a public key"));
    CHECK(has_error(r, 4, "remote.authorized_keys_file", f.auth + ":4: the same key as line 2"));
    CHECK(dump(r).find("ssh-rsa") == std::string::npos);
  }
  SUBCASE("an authorized_keys_file without a key") {
    RemoteFiles::write(f.auth, "# nobody yet\n", 0644);
    auto r = load_string(f.toml(), "bad.toml");
    CHECK(has_error(r, 4, "remote.authorized_keys_file", "holds no key"));
  }
}

TEST_CASE("[remote]: publishers are workers of the config") {
  RemoteFiles f;
  auto r = load_string(std::string(kMeter) + f.toml("publishers = [\"process\", \"actuate\"]\n"),
                       "bad.toml");
  INFO(dump(r));
  CHECK(has_error(r, 8, "remote.publishers[1]",
                  "\"actuate\" is not a worker of this config (acquire, process, upload, "
                  "history, remote)"));
  r = load_string(std::string(kMeter) + f.toml("publishers = [\"process\"]\n"), "ok.toml");
  REQUIRE_MESSAGE(r.config.has_value(), dump(r));
  CHECK(r.config->remote.publishers == std::vector<std::string>{"process"});
  r = load_string(std::string(kMeter) + f.toml("publishers = \"process\"\n"), "bad.toml");
  CHECK(has_error(r, 8, "remote.publishers", "must be an array of strings"));
}

TEST_CASE("[remote]: commands that need only run_dir do not read the key files") {
  mp::config::LoadOptions lo;
  lo.check_key_files = false;
  const std::string toml =
      "[general]\nrun_dir = \"/tmp/x\"\n[remote]\nenabled = true\n"
      "secret_key_file = \"/nonexistent/s.key\"\nauthorized_keys_file = \"/nonexistent/auth\"\n";
  auto r = load_string(toml, "ok.toml", lo);
  REQUIRE_MESSAGE(r.config.has_value(), dump(r));
  CHECK(r.config->general.run_dir == "/tmp/x");
  CHECK_FALSE(load_string(toml, "bad.toml").config.has_value());
  // a missing key is still an error
  r = load_string("[remote]\nenabled = true\n", "bad.toml", lo);
  CHECK(has_error(r, 1, "remote.secret_key_file", "required key is missing"));
}

TEST_CASE("several relay windows are one condition that holds in any of them") {
  auto r = load_string(std::string(kMeter) +
                           "[[relay]]\nname = \"b\"\nmeter = \"home\"\n"
                           "windows = [\"07:00-09:00\", \"17:00-20:00\"]\n"
                           "[relay.output]\ntype = \"sim\"\n",
                       "ok.toml");
  INFO(dump(r));
  REQUIRE(r.config);
  REQUIRE(r.config->relays.size() == 1);
  const auto spec = mp::config::to_relay_spec(r.config->relays[0]);
  REQUIRE(spec.conditions.size() == 1);
  CHECK(spec.conditions[0].describe() == "time 07:00-09:00 or 17:00-20:00");
}

TEST_CASE("http output: one method for both states, or one per state") {
  const std::string relay = std::string(kMeter) +
                            "[[relay]]\nname = \"b\"\nmeter = \"home\"\n[relay.output]\n"
                            "type = \"http\"\nurl = \"http://tasmota/cm\"\n";
  auto r = load_string(relay + "method = \"PUT\"\noff_method = \"GET\"\n", "ok.toml");
  INFO(dump(r));
  REQUIRE(r.config);
  const auto& o = r.config->relays[0].output;
  CHECK(o.method == "PUT");
  CHECK(o.on_method.empty());  // falls back to method
  CHECK(o.off_method == "GET");
  auto bad = load_string(relay + "on_method = \"DELETE\"\n", "bad.toml");
  CHECK_FALSE(bad.config);
  INFO(dump(bad));
  CHECK(has_error(bad, 10, "relay[0].output.on_method", "is not one of"));
}
