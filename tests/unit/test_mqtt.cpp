// mqtt worker, pure parts: [mqtt] config validation, the value class table, state and
// discovery payloads, relay command parsing, the Outbox hand-off and the discovery store.
#include <doctest/doctest.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/canonical.h"
#include "config/config.h"
#include "mqtt/command.h"
#include "mqtt/discovery_store.h"
#include "mqtt/homie.h"
#include "mqtt/outbox.h"
#include "mqtt/payloads.h"
#include "mqtt/value_classes.h"

using mp::config::load_string;

namespace {

const char* kBase = R"([[meter]]
name = "home"
source = "simulate"
)";

mp::config::Result load_mqtt(const std::string& body) {
  return load_string(std::string(kBase) + "[mqtt]\n" + body, "m.toml");
}

bool has_error(const mp::config::Result& r, int line, const std::string& key,
               const std::string& text) {
  for (const auto& e : r.errors)
    if (e.line == line && e.key == key && e.message.find(text) != std::string::npos &&
        e.file == "m.toml")
      return true;
  return false;
}

google::protobuf::Struct parse(const std::string& json) {
  google::protobuf::Struct s;
  REQUIRE(google::protobuf::util::JsonStringToMessage(json, &s).ok());
  return s;
}

std::string field(const google::protobuf::Struct& s, const std::string& k) {
  auto it = s.fields().find(k);
  return it == s.fields().end() ? "<none>" : it->second.string_value();
}

}  // namespace

TEST_CASE("[mqtt] defaults, the url, and mqtt in the workers only when enabled") {
  auto r = load_mqtt("enabled = true\nurl = \"mqtt://broker.lan\"\n");
  REQUIRE(r.errors.empty());
  const auto& m = r.config->mqtt;
  CHECK(m.host == "broker.lan");
  CHECK(m.port == 1883);
  CHECK(!m.tls);
  CHECK(m.base_topic == "meterpipe");
  CHECK(m.discovery_prefix == "homeassistant");
  CHECK(m.homeassistant);
  CHECK(!m.commands);
  CHECK(!m.homie);
  CHECK(m.qos == 0);
  CHECK(m.interval_s == 0);
  auto w = r.config->workers();
  CHECK(std::count(w.begin(), w.end(), "mqtt") == 1);

  auto off = load_mqtt("enabled = false\n");
  REQUIRE(off.errors.empty());
  for (const auto& n : off.config->workers()) CHECK(n != "mqtt");

  auto tls = load_mqtt("enabled = true\nurl = \"mqtts://[::1]:8884\"\n");
  REQUIRE(tls.errors.empty());
  CHECK(tls.config->mqtt.tls);
  CHECK(tls.config->mqtt.host == "::1");
  CHECK(tls.config->mqtt.port == 8884);
  auto dflt = load_mqtt("enabled = true\nurl = \"mqtts://h\"\n");
  REQUIRE(dflt.errors.empty());
  CHECK(dflt.config->mqtt.port == 8883);
}

TEST_CASE("[mqtt] bad values are FILE:LINE:COL errors naming the key") {
  // the [mqtt] table starts on line 4, its first key on line 5
  CHECK(has_error(load_mqtt("enabled = true\n"), 4, "mqtt.url", "required key is missing"));
  CHECK(has_error(load_mqtt("url = \"http://x\"\n"), 5, "mqtt.url", "mqtt:// or mqtts://"));
  CHECK(has_error(load_mqtt("url = \"mqtt://x:99999\"\n"), 5, "mqtt.url", "port"));
  CHECK(has_error(load_mqtt("url = \"mqtt://u:p@x\"\n"), 5, "mqtt.url", "no path, user"));
  CHECK(has_error(load_mqtt("qos = 2\n"), 5, "mqtt.qos", "out of range 0..1"));
  CHECK(has_error(load_mqtt("base_topic = \"a/#\"\n"), 5, "mqtt.base_topic", "no + or #"));
  CHECK(has_error(load_mqtt("base_topic = \"/a\"\n"), 5, "mqtt.base_topic", "not a topic"));
  CHECK(has_error(load_mqtt("interval_s = -1\n"), 5, "mqtt.interval_s", "out of range"));
  CHECK(has_error(load_mqtt("retain = \"yes\"\n"), 5, "mqtt.retain", "boolean"));
  CHECK(has_error(load_mqtt("colour = 1\n"), 5, "mqtt.colour", "unknown key"));
  CHECK(has_error(load_mqtt("password = \"x\"\n"), 5, "mqtt.password", "password_file or"));
  CHECK(has_error(load_mqtt("url = \"mqtt://h\"\nca_file = \"/etc/hostname\"\n"), 6, "mqtt.ca_file",
                  "only with an mqtts:// url"));
  CHECK(has_error(load_mqtt("url = \"mqtts://h\"\ncert_file = \"/etc/hostname\"\n"), 4,
                  "mqtt.key_file", "both cert_file and key_file"));
  CHECK(has_error(load_mqtt("password_env = \"P\"\n"), 4, "mqtt.username", "a password is given"));
  CHECK(has_error(load_mqtt("enabled = true\nurl = \"mqtt://h\"\nusername = \"u\"\n"
                            "password_file = \"/nonexistent/pw\"\n"),
                  8, "mqtt.password_file", "cannot read /nonexistent/pw"));
  CHECK(has_error(load_mqtt("homie = 1\n"), 5, "mqtt.homie", ""));
  CHECK(has_error(load_mqtt("per_value_topics = \"yes\"\n"), 5, "mqtt.per_value_topics", ""));
}

TEST_CASE("value classes from the canonical table: energy and gas counters are total_increasing") {
  using mp::mqtt::classify;
  auto is = [](const char* name, std::string dc, std::string sc, std::string unit) {
    const auto c = classify(name);
    CHECK_MESSAGE(std::string(c.device_class) == dc, name);
    CHECK_MESSAGE(std::string(c.state_class) == sc, name);
    CHECK_MESSAGE(std::string(c.unit) == unit, name);
  };
  is("energy_import_t1_kwh", "energy", "total_increasing", "kWh");
  is("energy_export_kwh", "energy", "total_increasing", "kWh");
  is("energy_reactive_import_kvarh", "", "total_increasing", "kvarh");
  is("gas_m3", "gas", "total_increasing", "m³");
  is("water_m3", "water", "total_increasing", "m³");
  is("power_net_w", "power", "measurement", "W");
  is("power_l1_w", "power", "measurement", "W");
  is("power_factor_l1", "power_factor", "measurement", "");
  is("power_failures", "", "total_increasing", "");
  is("voltage_l1_v", "voltage", "measurement", "V");
  is("current_l2_a", "current", "measurement", "A");
  is("frequency_hz", "frequency", "measurement", "Hz");
  is("dsmr_1-0:99.1.0", "", "measurement", "");
  is("demand_avg_w", "power", "measurement", "W");
  is("pv_energy_kwh", "energy", "total_increasing", "kWh");
  is("heat_gj", "energy", "total_increasing", "GJ");
  is("temperature_sink_c", "temperature", "measurement", "°C");
  is("voltage_thd_l1_pct", "", "measurement", "%");
  is("tariff", "", "measurement", "");
  // every canonical counter is total_increasing, every unit of the table shows
  for (const auto& n : mp::canonical::all()) {
    const auto c = classify(n.name);
    CHECK_MESSAGE(std::string(c.state_class) ==
                      (n.kind == mp::canonical::Kind::counter ? "total_increasing" : "measurement"),
                  n.name);
    CHECK_MESSAGE(c.unit == mp::mqtt::display_unit(n.unit), n.name);
  }
  CHECK(mp::mqtt::display_name("energy_import_t1_kwh") == "Energy import t1");
  CHECK(mp::mqtt::display_name("gas_m3") == "Gas");
  CHECK(mp::mqtt::display_name("power_factor") == "Power factor");
}

TEST_CASE("state JSON holds every value and the meter's timestamp") {
  meterpipe::Reading r;
  r.set_meter("home");
  r.set_meter_time_ns(1700000000000000000LL);
  r.set_receive_time_ns(1700000000250000000LL);
  auto* v = r.add_values();
  v->set_name("power_net_w");
  v->set_number(-123.5);
  v = r.add_values();
  v->set_name("tariff_text");
  v->set_text("a \"b\"");
  auto s = parse(mp::mqtt::state_json(r, 0));
  CHECK(s.fields().at("power_net_w").number_value() == -123.5);
  CHECK(s.fields().at("tariff_text").string_value() == "a \"b\"");
  CHECK(field(s, "timestamp") == "2023-11-14T22:13:20Z");
  CHECK(field(s, "meter_time") == "2023-11-14T22:13:20Z");
  CHECK(field(s, "receive_time") == "2023-11-14T22:13:20.250Z");
  r.set_meter_time_ns(0);
  auto s2 = parse(mp::mqtt::state_json(r, 0));
  CHECK(s2.fields().at("meter_time").kind_case() == google::protobuf::Value::kNullValue);
  CHECK(field(s2, "timestamp") == "2023-11-14T22:13:20.250Z");
}

TEST_CASE("discovery: identifiers from the equipment id, stable ids, table classes") {
  mp::mqtt::Topics t{"mp", "ha"};
  mp::mqtt::MeterInfo m{"home", "dsmr", "", "E0043/7"};
  CHECK(mp::mqtt::device_ident(m) == "meterpipe_E0043_7");
  auto s = parse(mp::mqtt::sensor_discovery_json(t, m, "energy_import_t1_kwh", "kWh"));
  CHECK(field(s, "unique_id") == "meterpipe_E0043_7_energy_import_t1_kwh");
  CHECK(field(s, "state_topic") == "mp/home/state");
  CHECK(field(s, "device_class") == "energy");
  CHECK(field(s, "state_class") == "total_increasing");
  CHECK(field(s, "unit_of_measurement") == "kWh");
  CHECK(field(s, "availability_topic") == "mp/status");
  CHECK(field(s, "value_template") == "{{ value_json['energy_import_t1_kwh'] }}");
  const auto& dev = s.fields().at("device").struct_value();
  CHECK(dev.fields().at("identifiers").list_value().values(0).string_value() ==
        "meterpipe_E0043_7");
  // no equipment id: the config name
  mp::mqtt::MeterInfo plain{"solar", "modbus", "sdm630", ""};
  CHECK(mp::mqtt::sensor_unique_id(plain, "power_net_w") == "meterpipe_solar_power_net_w");
  // native ids are made topic-safe
  CHECK(t.sensor_config("home", "dsmr_1-0:99.1.0") ==
        "ha/sensor/meterpipe_home/dsmr_1-0_99_1_0/config");
  auto odd = parse(mp::mqtt::sensor_discovery_json(t, plain, "x_y", "bar"));
  CHECK(field(odd, "unit_of_measurement") == "bar");  // the reading's unit when the table has none

  auto sw = parse(mp::mqtt::relay_switch_discovery_json(t, "boiler", "sim", false));
  CHECK(field(sw, "state_topic") == "mp/relay/boiler/state");
  CHECK(field(sw, "command_topic") == "<none>");
  auto swc = parse(mp::mqtt::relay_switch_discovery_json(t, "boiler", "sim", true));
  CHECK(field(swc, "command_topic") == "mp/relay/boiler/set");
  CHECK(t.relay_of_set_topic("mp/relay/boiler/set") == "boiler");
  CHECK(t.relay_of_set_topic("mp/relay//set") == "");
  CHECK(t.relay_of_set_topic("mp/relay/a/b/set") == "");
  CHECK(t.relay_of_set_topic("other/relay/boiler/set") == "");
}

TEST_CASE("relay commands: text and JSON, with durations; garbage refused") {
  using mp::mqtt::parse_command;
  std::string err;
  auto c = parse_command("ON", err);
  REQUIRE(c);
  CHECK(mp::mqtt::control_request_text("boiler", *c) == "relay boiler on");
  c = parse_command(" off 3600 ", err);
  REQUIRE(c);
  CHECK(mp::mqtt::control_request_text("boiler", *c) == "relay boiler off 3600");
  c = parse_command("On 2h", err);
  REQUIRE(c);
  CHECK(c->for_s == 7200);
  c = parse_command("auto", err);
  REQUIRE(c);
  CHECK(c->state == "auto");
  c = parse_command(R"({"state":"ON","for_s":90})", err);
  REQUIRE(c);
  CHECK(mp::mqtt::control_request_text("b", *c) == "relay b on 90");
  for (const char* bad : {"", "TOGGLE", "ON -5", "ON 0", "ON 5x", "ON 1 2", "AUTO 60", "{",
                          R"({"state":"ON","for_s":"x"})", R"({"for_s":5})",
                          R"({"state":"ON","colour":1})", "\xff\xfe"}) {
    err.clear();
    CHECK_MESSAGE(!parse_command(bad, err), bad);
    CHECK(!err.empty());
  }
  CHECK(!parse_command(std::string(300, 'O'), err));
}

TEST_CASE("Outbox: in order while connected, latest per topic while away, bounded") {
  mp::mqtt::Outbox box(4);
  box.set_connected(true);
  for (int i = 0; i < 3; ++i) box.push({"a", std::to_string(i), false});
  CHECK(box.size() == 3);
  box.set_connected(false);  // going away: only the latest of "a" stays
  CHECK(box.size() == 1);
  CHECK(box.dropped() == 2);
  for (int i = 3; i < 1000; ++i) box.push({"a", std::to_string(i), false});
  box.push({"b", "x", true});
  CHECK(box.size() == 2);
  mp::mqtt::OutMessage m;
  REQUIRE(box.pop(m));
  CHECK(m.topic == "a");
  CHECK(m.payload == "999");
  REQUIRE(box.pop(m));
  CHECK(m.topic == "b");
  CHECK(m.retain);
  CHECK(!box.pop(m));
  // connected but full: coalesces too
  box.set_connected(true);
  for (int i = 0; i < 10; ++i) box.push({"t" + std::to_string(i % 5), std::to_string(i), false});
  CHECK(box.size() == 5);
  // a message put back loses against a newer one of its topic
  REQUIRE(box.pop(m));
  CHECK(m.topic == "t0");
  box.push({"t0", "new", false});
  box.push_front(m);
  std::set<std::string> payloads;
  while (box.pop(m))
    if (m.topic == "t0") payloads.insert(m.payload);
  CHECK(payloads == std::set<std::string>{"new"});
}

TEST_CASE("discovery store remembers topics across restarts") {
  char dir[] = "/tmp/mqttstoreXXXXXX";
  REQUIRE(mkdtemp(dir));
  const std::string path = std::string(dir) + "/mqtt.discovery";
  {
    mp::mqtt::DiscoveryStore s(path);
    s.load();
    CHECK(s.add({"meter", "home", "ha/sensor/meterpipe_home/gas_m3/config"}));
    CHECK(!s.add({"meter", "home", "ha/sensor/meterpipe_home/gas_m3/config"}));
    CHECK(s.add({"relay", "old", "ha/switch/meterpipe_relay_old/switch/config"}));
  }
  mp::mqtt::DiscoveryStore s(path);
  s.load();
  CHECK(s.entries().size() == 2);
  auto gone = s.remove_unless([](const mp::mqtt::DiscoveryEntry& e) { return e.name == "home"; });
  REQUIRE(gone.size() == 1);
  CHECK(gone[0].topic == "ha/switch/meterpipe_relay_old/switch/config");
  mp::mqtt::DiscoveryStore again(path);
  again.load();
  CHECK(again.entries().size() == 1);
  std::remove(path.c_str());
  rmdir(dir);
}

TEST_CASE("[mqtt] homie and per_value_topics are accepted") {
  auto r = load_mqtt("enabled = true\nurl = \"mqtt://h\"\nhomie = true\nper_value_topics = true\n");
  REQUIRE(r.errors.empty());
  CHECK(r.config->mqtt.homie);
  CHECK(r.config->mqtt.per_value_topics);
  mp::mqtt::Topics t;
  CHECK(t.meter_value("home", "power_net_w") == "meterpipe/home/power_net_w");
  CHECK(t.meter_value("home", "dsmr_1-0:99.1.0") == "meterpipe/home/dsmr_1-0_99_1_0");
}

TEST_CASE("Homie ids: lowercase letters, digits and hyphens") {
  using mp::mqtt::homie_id;
  CHECK(homie_id("energy_import_t1_kwh") == "energy-import-t1-kwh");
  CHECK(homie_id("Home_Meter 2") == "home-meter-2");
  CHECK(homie_id("dsmr_1-0:99.1.0") == "dsmr-1-0-99-1-0");
  CHECK(homie_id("_x_") == "x");
  CHECK(homie_id("--") == "x");
  CHECK(homie_id("meterpipe-Pi") == "meterpipe-pi");
}

namespace {

std::map<std::string, std::string> drain(mp::mqtt::Outbox& box, std::vector<std::string>* order) {
  std::map<std::string, std::string> out;
  mp::mqtt::OutMessage m;
  while (box.pop(m)) {
    CHECK_MESSAGE(m.retain, m.topic);
    if (order) order->push_back(m.topic + "=" + m.payload);
    out[m.topic] = m.payload;
  }
  return out;
}

}  // namespace

TEST_CASE("Homie device: attributes, nodes, properties, values, ready last") {
  mp::mqtt::Outbox box(10000);
  box.set_connected(true);
  mp::mqtt::HomieDevice dev("meterpipe-Pi", "meterpipe pi", true, box);
  dev.add_meter("home", "DSMR P1 meter");
  dev.add_relay("boiler", "sim");
  dev.announce();
  std::vector<std::string> order;
  auto t = drain(box, &order);
  CHECK(order.front() == "homie/meterpipe-pi/$state=init");
  CHECK(order.back() == "homie/meterpipe-pi/$state=ready");
  CHECK(t["homie/meterpipe-pi/$homie"] == "4.0.0");
  CHECK(t["homie/meterpipe-pi/$nodes"] == "home,relay-boiler");
  CHECK(t.count("homie/meterpipe-pi/$extensions"));
  CHECK(t["homie/meterpipe-pi/home/$type"] == "DSMR P1 meter");
  CHECK(t["homie/meterpipe-pi/home/$properties"] == "");
  CHECK(t["homie/meterpipe-pi/relay-boiler/$properties"] == "state,override,mode,reason");
  CHECK(t["homie/meterpipe-pi/relay-boiler/state/$datatype"] == "boolean");
  CHECK(t["homie/meterpipe-pi/relay-boiler/state/$settable"] == "true");
  CHECK(t["homie/meterpipe-pi/relay-boiler/override/$format"] == "auto,on,off");

  meterpipe::Reading r;
  r.set_meter("home");
  auto* v = r.add_values();
  v->set_name("energy_import_t1_kwh");
  v->set_number(4426.25);
  v = r.add_values();
  v->set_name("equipment_id");
  v->set_text("E0040");
  dev.publish_values(r);
  order.clear();
  t = drain(box, &order);
  CHECK(t["homie/meterpipe-pi/home/energy-import-t1-kwh"] == "4426.25");
  CHECK(t["homie/meterpipe-pi/home/energy-import-t1-kwh/$datatype"] == "float");
  CHECK(t["homie/meterpipe-pi/home/energy-import-t1-kwh/$unit"] == "kWh");
  CHECK(t["homie/meterpipe-pi/home/energy-import-t1-kwh/$name"] == "Energy import t1");
  CHECK(t["homie/meterpipe-pi/home/equipment-id"] == "E0040");
  CHECK(t["homie/meterpipe-pi/home/equipment-id/$datatype"] == "string");
  CHECK(t["homie/meterpipe-pi/home/$properties"] == "energy-import-t1-kwh,equipment-id");
  CHECK(order.back() == "homie/meterpipe-pi/home/equipment-id=E0040");
  // the reading's two new properties: one init, announced, one ready, then the values
  CHECK(std::count(order.begin(), order.end(), "homie/meterpipe-pi/$state=init") == 1);
  CHECK(std::count(order.begin(), order.end(), "homie/meterpipe-pi/$state=ready") == 1);
  const auto ready = std::find(order.begin(), order.end(), "homie/meterpipe-pi/$state=ready");
  CHECK(std::find(ready, order.end(),
                  "homie/meterpipe-pi/home/$properties=energy-import-t1-kwh,"
                  "equipment-id") == order.end());
  CHECK(std::find(order.begin(), ready, "homie/meterpipe-pi/home/energy-import-t1-kwh=4426.25") ==
        ready);
  // known properties: values only
  dev.publish_values(r);
  t = drain(box, nullptr);
  CHECK(t.size() == 2);
  // a reconnect announces the last values again, before ready
  dev.announce();
  order.clear();
  t = drain(box, &order);
  CHECK(t["homie/meterpipe-pi/home/energy-import-t1-kwh"] == "4426.25");
  CHECK(order.back() == "homie/meterpipe-pi/$state=ready");

  mp::mqtt::RelayView rv;
  rv.known = true;
  rv.on = true;
  rv.override_mode = "on";
  rv.mode = "manual";
  dev.publish_relay("boiler", rv);
  t = drain(box, nullptr);
  CHECK(t["homie/meterpipe-pi/relay-boiler/state"] == "true");
  CHECK(t["homie/meterpipe-pi/relay-boiler/override"] == "on");
}

TEST_CASE("Homie set topics become relay commands; others are not ours") {
  mp::mqtt::Outbox box;
  mp::mqtt::HomieDevice dev("mp", "mp", true, box);
  dev.add_relay("boiler", "sim");
  CHECK(dev.set_filter() == "homie/mp/+/+/set");
  auto r = dev.set_request("homie/mp/relay-boiler/state/set", "true");
  REQUIRE(r);
  CHECK(r->relay == "boiler");
  CHECK(r->command == "ON");
  r = dev.set_request("homie/mp/relay-boiler/state/set", "FALSE");
  REQUIRE(r);
  CHECK(r->command == "OFF");
  r = dev.set_request("homie/mp/relay-boiler/override/set", "auto");
  REQUIRE(r);
  CHECK(r->command == "auto");
  r = dev.set_request("homie/mp/relay-boiler/state/set", "maybe");
  REQUIRE(r);
  CHECK(r->command.empty());
  CHECK(!r->error.empty());
  CHECK(!dev.set_request("homie/mp/relay-boiler/mode/set", "x"));
  CHECK(!dev.set_request("homie/mp/relay-garage/state/set", "true"));
  CHECK(!dev.set_request("homie/other/relay-boiler/state/set", "true"));
}

TEST_CASE("Homie: a node no longer configured is cleared, topic by topic; ours stay") {
  mp::mqtt::Outbox box(10000);
  box.set_connected(true);
  mp::mqtt::HomieDevice dev("mp", "mp", true, box);
  dev.add_meter("home", "DSMR P1 meter");
  dev.add_relay("boiler", "sim");
  CHECK(dev.nodes_filter() == "homie/mp/+/$properties");
  // configured nodes, empty payloads (our own clearing coming back), other levels: not stale
  CHECK(dev.clear_stale_node("homie/mp/home/$properties", "power-w") == "");
  CHECK(dev.clear_stale_node("homie/mp/relay-boiler/$properties", "state") == "");
  CHECK(dev.clear_stale_node("homie/mp/old/$properties", "") == "");
  CHECK(dev.clear_stale_node("homie/other/old/$properties", "x") == "");
  CHECK(dev.clear_stale_node("homie/mp/Old_Meter/$properties", "x") == "");
  CHECK(dev.clear_stale_node("homie/mp/$properties", "x") == "");
  CHECK(drain(box, nullptr).empty());

  CHECK(dev.clear_stale_node("homie/mp/old-meter/$properties", "power-w,gas-m3,,Bad/#") ==
        "homie/mp/old-meter");
  auto t = drain(box, nullptr);
  for (const char* k :
       {"homie/mp/old-meter/$name", "homie/mp/old-meter/$type", "homie/mp/old-meter/$properties",
        "homie/mp/old-meter/power-w", "homie/mp/old-meter/power-w/$datatype",
        "homie/mp/old-meter/power-w/$unit", "homie/mp/old-meter/gas-m3/$name",
        "homie/mp/old-meter/gas-m3/$settable", "homie/mp/old-meter/gas-m3/$retained"}) {
    CAPTURE(k);
    REQUIRE(t.count(k));
    CHECK(t[k] == "");
  }
  for (const auto& [topic, payload] : t) {
    CAPTURE(topic);
    CHECK(topic.rfind("homie/mp/old-meter/", 0) == 0);  // nothing of ours, no wildcard
    CHECK(topic.find_first_of("#+") == std::string::npos);
    CHECK(payload.empty());
  }
  CHECK(t.size() == 3 + 2 * 7);
}

TEST_CASE("Outbox: congested from half full (or away); a pop below half wakes the producer") {
  mp::mqtt::Outbox box(8);
  const int fd = eventfd(0, EFD_NONBLOCK);
  REQUIRE(fd >= 0);
  box.set_drain_fd(fd);
  CHECK(box.congested());  // not connected
  box.set_connected(true);
  CHECK(!box.congested());
  for (int i = 0; i < 4; ++i) box.push({"t" + std::to_string(i), "x", false});
  CHECK(box.congested());
  std::vector<mp::mqtt::OutMessage> out;
  uint64_t v = 0;
  CHECK(box.pop_batch(out, 1) == 1);
  CHECK(!box.congested());
  CHECK(::read(fd, &v, sizeof v) == sizeof v);  // woken once
  CHECK(box.pop_batch(out, 10) == 3);
  CHECK(::read(fd, &v, sizeof v) < 0);  // not again
  CHECK(out.size() == 4);
  ::close(fd);
}
