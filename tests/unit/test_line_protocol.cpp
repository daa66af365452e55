// Line protocol encoder: exact text for ordinary readings, escaping of nasty names,
// refusals, timestamp choice and precision.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "meterpipe.pb.h"
#include "upload/line_protocol.h"

using mp::upload::EncodeResult;
using mp::upload::LineProtocolOptions;
using mp::upload::Precision;

namespace {

constexpr int64_t kT = 1700000000123456789;  // 2023-11-14T22:13:20.123456789Z
constexpr int64_t kSec = 1000000000;

meterpipe::Reading make_reading(std::string meter = "home") {
  meterpipe::Reading r;
  r.set_meter(meter);
  r.set_protocol("dsmr");
  r.set_receive_time_ns(kT);
  r.set_clock_synced(true);
  return r;
}

void add_number(meterpipe::Reading& r, const std::string& name, double v, int64_t t = 0) {
  auto* val = r.add_values();
  val->set_name(name);
  val->set_number(v);
  val->set_time_ns(t);
}

void add_text(meterpipe::Reading& r, const std::string& name, const std::string& v) {
  auto* val = r.add_values();
  val->set_name(name);
  val->set_text(v);
}

std::string only_line(const EncodeResult& res) {
  REQUIRE(res.ok());
  REQUIRE(res.points.size() == 1);
  return res.points[0].line;
}

}  // namespace

TEST_CASE("ordinary reading: floats, integers, text, sorted tags") {
  auto r = make_reading();
  add_number(r, "energy_import_t1_kwh", 1234.567);
  add_number(r, "power_net_w", -830);
  add_number(r, "voltage_l1_v", 229.9);
  add_number(r, "tariff", 2);
  add_number(r, "power_failures", 17);
  add_text(r, "dsmr_0-0:96.13.0", "hello");
  LineProtocolOptions o;
  o.tags = {{"site", "b"}, {"a_first", "x"}};
  auto res = mp::upload::encode(r, o);
  CHECK(only_line(res) ==
        "electricity,a_first=x,meter=home,site=b energy_import_t1_kwh=1234.567,power_net_w=-830,"
        "voltage_l1_v=229.9,tariff=2i,power_failures=17i,dsmr_0-0:96.13.0=\"hello\" "
        "1700000000123456789");
  CHECK(res.points[0].time_ns == kT);
  CHECK(res.skipped.empty());
}

TEST_CASE("floats use the shortest exact representation") {
  std::string s;
  mp::upload::append_float(s, 0.1);
  CHECK(s == "0.1");
  s.clear();
  mp::upload::append_float(s, 1.0 / 3.0);
  CHECK(s == "0.3333333333333333");
  s.clear();
  mp::upload::append_float(s, 1e21);
  CHECK(s == "1e+21");
  s.clear();
  mp::upload::append_float(s, 5e-324);
  CHECK(s == "5e-324");
  s.clear();
  mp::upload::append_float(s, 123456789.125);
  CHECK(s == "123456789.125");
}

TEST_CASE("NaN and infinity are skipped and reported") {
  auto r = make_reading();
  add_number(r, "power_net_w", std::nan(""));
  add_number(r, "power_import_w", std::numeric_limits<double>::infinity());
  add_number(r, "power_export_w", -std::numeric_limits<double>::infinity());
  add_number(r, "frequency_hz", 50.01);
  auto res = mp::upload::encode(r, {});
  CHECK(only_line(res) == "electricity,meter=home frequency_hz=50.01 1700000000123456789");
  REQUIRE(res.skipped.size() == 3);
  CHECK(res.skipped[0] == "power_net_w: not a finite number");
}

TEST_CASE("a reading with only skipped values gives no point and no error") {
  auto r = make_reading();
  add_number(r, "power_net_w", std::nan(""));
  auto res = mp::upload::encode(r, {});
  CHECK(res.ok());
  CHECK(res.points.empty());
  CHECK(res.skipped.size() == 1);
}

TEST_CASE("integer field with a fractional value is skipped, not retyped") {
  auto r = make_reading();
  add_number(r, "tariff", 1.5);
  add_number(r, "long_power_failures", 3);
  add_number(r, "voltage_sags_l1", 1e19);  // beyond int64
  auto res = mp::upload::encode(r, {});
  CHECK(only_line(res) == "electricity,meter=home long_power_failures=3i 1700000000123456789");
  REQUIRE(res.skipped.size() == 2);
  CHECK(res.skipped[0] == "tariff: integer field with a non-integer value");
  CHECK(res.skipped[1] == "voltage_sags_l1: integer field with a non-integer value");
}

TEST_CASE("duplicate value names keep the first") {
  auto r = make_reading();
  add_number(r, "power_net_w", 1);
  add_number(r, "power_net_w", 2);
  auto res = mp::upload::encode(r, {});
  CHECK(only_line(res) == "electricity,meter=home power_net_w=1 1700000000123456789");
  CHECK(res.skipped == std::vector<std::string>{"power_net_w: duplicate name in one reading"});
}

TEST_CASE("escaping of nasty names") {
  auto r = make_reading("my meter,1=a");
  add_number(r, "we ird,na=me", 1.5);
  add_text(r, "note", "say \"hi\" C:\\dir, ok = yes");
  add_text(r, "unicode_\xc3\xa9", "\xe2\x82\xac 5");  // é, euro sign
  LineProtocolOptions o;
  o.measurement = "elec tricity,x=y";
  o.tags = {{"ta g", "v,a=l ue"}, {"path", "C:\\dir"}};
  auto res = mp::upload::encode(r, o);
  CHECK(only_line(res) ==
        "elec\\ tricity\\,x=y,meter=my\\ meter\\,1\\=a,path=C:\\dir,ta\\ g=v\\,a\\=l\\ ue "
        "we\\ ird\\,na\\=me=1.5,note=\"say \\\"hi\\\" C:\\\\dir, ok = yes\","
        "unicode_\xc3\xa9=\"\xe2\x82\xac 5\" 1700000000123456789");
}

TEST_CASE("equals sign in a measurement is not escaped (only comma and space are)") {
  std::string s;
  CHECK(mp::upload::append_measurement(s, "a=b c,d"));
  CHECK(s == "a=b\\ c\\,d");
}

TEST_CASE("newlines are refused, never altered") {
  SUBCASE("in a field name") {
    auto r = make_reading();
    add_number(r, "power\nnet", 1);
    auto res = mp::upload::encode(r, {});
    CHECK_FALSE(res.ok());
    CHECK(res.points.empty());
    CHECK(res.error.find("field name 'power\\nnet'") == 0);
  }
  SUBCASE("in a string value") {
    auto r = make_reading();
    add_text(r, "note", "two\nlines");
    auto res = mp::upload::encode(r, {});
    CHECK(res.error == "text value of 'note' contains a newline");
  }
  SUBCASE("carriage return in the meter name") {
    auto r = make_reading("home\r");
    add_number(r, "power_net_w", 1);
    auto res = mp::upload::encode(r, {});
    CHECK(res.error.find("meter name 'home\\r'") == 0);
  }
  SUBCASE("in the measurement") {
    LineProtocolOptions o;
    o.measurement = "elec\n";
    CHECK(mp::upload::check_options(o).find("measurement 'elec\\n'") == 0);
    auto r = make_reading();
    add_number(r, "power_net_w", 1);
    CHECK_FALSE(mp::upload::encode(r, o).ok());
  }
  SUBCASE("in a user tag value") {
    LineProtocolOptions o;
    o.tags = {{"site", "a\nb"}};
    CHECK(mp::upload::check_options(o).find("tag value 'a\\nb'") == 0);
  }
}

TEST_CASE("ambiguous backslashes and other unrepresentable names are refused") {
  std::string s;
  CHECK_FALSE(mp::upload::append_key(s, "ends\\"));
  CHECK_FALSE(mp::upload::append_key(s, "a\\ b"));
  CHECK_FALSE(mp::upload::append_key(s, "a\\=b"));
  CHECK_FALSE(mp::upload::append_key(s, "a\\\\b"));
  CHECK_FALSE(mp::upload::append_key(s, ""));
  CHECK_FALSE(mp::upload::append_measurement(s, "#comment"));
  s.clear();
  CHECK(mp::upload::append_key(s, "a\\b"));
  CHECK(s == "a\\b");
  LineProtocolOptions o;
  o.tags = {{"meter", "x"}};
  CHECK(mp::upload::check_options(o) == "user tag 'meter' clashes with the meter name tag");
}

TEST_CASE("empty tag values are left out") {
  auto r = make_reading("");
  add_number(r, "power_net_w", 5);
  LineProtocolOptions o;
  o.tags = {{"site", ""}, {"zone", "z"}};
  CHECK(only_line(mp::upload::encode(r, o)) ==
        "electricity,zone=z power_net_w=5 1700000000123456789");
}

TEST_CASE("measurement overrides split a reading; own value time used there") {
  auto r = make_reading();
  add_number(r, "power_net_w", 100);
  add_number(r, "gas_m3", 1234.5, kT - 300 * kSec);
  add_number(r, "water_m3", 12.25);
  LineProtocolOptions o;
  o.measurement_for = {{"gas_m3", "gas"}, {"water_m3", "water"}};
  auto res = mp::upload::encode(r, o);
  REQUIRE(res.ok());
  REQUIRE(res.points.size() == 3);
  CHECK(res.points[0].line == "electricity,meter=home power_net_w=100 1700000000123456789");
  CHECK(res.points[1].line == "gas,meter=home gas_m3=1234.5 1699999700123456789");
  CHECK(res.points[1].time_ns == kT - 300 * kSec);
  CHECK(res.points[2].line == "water,meter=home water_m3=12.25 1700000000123456789");
}

TEST_CASE("own value time is ignored in the default measurement") {
  auto r = make_reading();
  add_number(r, "gas_m3", 1234.5, kT - 300 * kSec);
  add_number(r, "power_net_w", 1);
  CHECK(only_line(mp::upload::encode(r, {})) ==
        "electricity,meter=home gas_m3=1234.5,power_net_w=1 1700000000123456789");
}

TEST_CASE("timestamp choice") {
  auto r = make_reading();
  add_number(r, "power_net_w", 1);
  SUBCASE("no meter time: receive time") { CHECK(mp::upload::choose_time_ns(r) == kT); }
  SUBCASE("meter time within a day of a synced clock: meter time") {
    r.set_meter_time_ns(kT - 2 * kSec);
    CHECK(mp::upload::choose_time_ns(r) == kT - 2 * kSec);
    r.set_meter_time_ns(kT + 86400 * kSec);
    CHECK(mp::upload::choose_time_ns(r) == kT + 86400 * kSec);
  }
  SUBCASE("meter time more than a day off a synced clock: receive time") {
    r.set_meter_time_ns(kT - 86401 * kSec);
    CHECK(mp::upload::choose_time_ns(r) == kT);
    r.set_meter_time_ns(kT + 86401 * kSec);
    CHECK(mp::upload::choose_time_ns(r) == kT);
  }
  SUBCASE("clock not synced: meter time preferred even far off") {
    r.set_clock_synced(false);
    r.set_receive_time_ns(86400 * kSec);  // Pi without RTC booted at 1970-01-02
    r.set_meter_time_ns(kT);
    CHECK(mp::upload::choose_time_ns(r) == kT);
  }
  SUBCASE("extreme values do not overflow") {
    r.set_meter_time_ns(INT64_MIN);
    r.set_receive_time_ns(INT64_MAX);
    CHECK(mp::upload::choose_time_ns(r) == INT64_MAX);
    r.set_meter_time_ns(INT64_MAX);
    r.set_receive_time_ns(INT64_MIN + 1);
    CHECK(mp::upload::choose_time_ns(r) == INT64_MIN + 1);
  }
  SUBCASE("no time at all is an error") {
    r.set_receive_time_ns(0);
    auto res = mp::upload::encode(r, {});
    CHECK(res.error == "reading of meter 'home' has no timestamp");
  }
}

TEST_CASE("precision") {
  auto r = make_reading();
  add_number(r, "power_net_w", 1);
  LineProtocolOptions o;
  o.precision = Precision::s;
  CHECK(only_line(mp::upload::encode(r, o)) == "electricity,meter=home power_net_w=1 1700000000");
  o.precision = Precision::ms;
  CHECK(only_line(mp::upload::encode(r, o)) ==
        "electricity,meter=home power_net_w=1 1700000000123");
  o.precision = Precision::us;
  CHECK(only_line(mp::upload::encode(r, o)) ==
        "electricity,meter=home power_net_w=1 1700000000123456");
  CHECK(mp::upload::convert_time(-1, Precision::s) == -1);
  CHECK(mp::upload::convert_time(-1000000000, Precision::s) == -1);
  Precision p;
  CHECK(mp::upload::parse_precision("u", p));
  CHECK(p == Precision::us);
  CHECK_FALSE(mp::upload::parse_precision("h", p));
}

TEST_CASE("value without number or text is skipped") {
  auto r = make_reading();
  r.add_values()->set_name("empty");
  add_number(r, "power_net_w", 2);
  auto res = mp::upload::encode(r, {});
  CHECK(only_line(res) == "electricity,meter=home power_net_w=2 1700000000123456789");
  CHECK(res.skipped == std::vector<std::string>{"empty: no value"});
}

TEST_CASE("relay event: one line at the publish time, texts escaped, unrepresentable refused") {
  meterpipe::Envelope env;
  env.set_send_time_ns(kT);
  auto* ev = env.mutable_relay();
  ev->set_relay("boiler 1");
  ev->set_new_state(true);
  ev->set_ok(true);
  ev->set_mode("auto");
  ev->set_reason("export 1500 W > 1200 \"on\" \\ threshold");
  CHECK(mp::upload::encode_relay(env, Precision::ns) ==
        "relay,relay=boiler\\ 1 state=1i,ok=true,mode=\"auto\",reason=\"export 1500 W > 1200 "
        "\\\"on\\\" \\\\ threshold\" 1700000000123456789");
  ev->set_new_state(false);
  ev->set_ok(false);
  CHECK(mp::upload::encode_relay(env, Precision::s) ==
        "relay,relay=boiler\\ 1 state=0i,ok=false,mode=\"auto\",reason=\"export 1500 W > 1200 "
        "\\\"on\\\" \\\\ threshold\" 1700000000");
  ev->set_reason("two\nlines");
  CHECK(mp::upload::encode_relay(env, Precision::s).empty());
  meterpipe::Envelope none;
  none.set_send_time_ns(kT);
  CHECK(mp::upload::encode_relay(none, Precision::s).empty());
}
