// P1 / DSMR decoder and framer against the rules of DSMR 5.0.2 and IEC 62056-21, one test
// case per rule of issue 19, with telegrams built here (CRC computed by the test).
#include <doctest/doctest.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "protocols/dsmr/dsmr_framer.h"
#include "common/utf8.h"
#include "meterpipe.pb.h"
#include "protocols/dsmr/decode_dsmr_cli.h"
#include "protocols/dsmr/dsmr.h"
#include "process/reading_proto.h"

namespace {

// "/header CR LF CR LF lines... !CRC" (DSMR 5.0.2: CRC-16 over '/' .. '!', 4 hex digits),
// followed by `tail` (normally CR LF).
std::string telegram(const std::vector<std::string>& lines, const std::string& tail = "\r\n") {
  std::string t = "/ISK5\\2M550T-1012\r\n\r\n";
  for (const auto& l : lines) t += l + "\r\n";
  t += "!";
  char crc[8];
  std::snprintf(crc, sizeof crc, "%04X", mp::dsmr::crc16(t));
  return t + crc + tail;
}

const mp::Value& value(const mp::dsmr::Result& r, const char* name) {
  const mp::Value* v = r.reading.find(name);
  REQUIRE_MESSAGE(v != nullptr, name);
  return *v;
}

}  // namespace

TEST_CASE("rule 7: a telegram that ends right after its 4 CRC digits is found") {
  const std::string t = telegram({"1-0:1.8.1(000123.456*kWh)"}, "");
  REQUIRE(t.back() != '\n');
  // The decoder takes it as it is.
  mp::dsmr::Result r;
  REQUIRE(mp::dsmr::decode(t, r));
  CHECK(r.crc_ok);
  // The framer delivers it at the end of the input (file, decrypted frame, quiet line).
  mp::dsmr::Framer f;
  f.feed(t);
  std::string got;
  CHECK_FALSE(f.pop(got));  // a CR LF may still come
  CHECK(f.finish());
  REQUIRE(f.pop(got));
  CHECK(got == t);
  CHECK(f.counters().frames == 1);
  CHECK_FALSE(f.in_telegram());
  // Not complete: 3 CRC digits, or a DSMR 2.2 "!" without CRC, wait for their line end.
  for (const std::string& cut : {t.substr(0, t.size() - 1), t.substr(0, t.find('!') + 1)}) {
    mp::dsmr::Framer g;
    g.feed(cut);
    CHECK_FALSE(g.finish());
    CHECK(g.in_telegram());
  }
  // A line end after the CRC still completes it as before, with its CR LF.
  mp::dsmr::Framer h;
  h.feed(t + "\r\n");
  REQUIRE(h.pop(got));
  CHECK(got == t + "\r\n");
  // `meterpipe decode dsmr` on a file that ends after the CRC: one telegram, exit 0.
  std::istringstream in(telegram({"1-0:1.8.1(000001.000*kWh)"}) + t);
  std::ostringstream out, err;
  CHECK(mp::dsmr::decode_dsmr_main(in, out, err, "") == 0);
  CHECK(err.str().empty());
  std::string line;
  int lines = 0;
  for (std::istringstream ls(out.str()); std::getline(ls, line);) ++lines;
  CHECK(lines == 2);
}

TEST_CASE("rule 8: texts are UTF-8 whatever bytes the meter sends") {
  // 0-0:96.13.0 is an octet string sent as hex (DSMR 5.0.2); a Hungarian meter sends 1024
  // bytes 0xFF: no text, kept as the hex digits. A hex message that is UTF-8 is decoded.
  const std::string ff(2048, 'F');
  const std::string t = telegram({"0-0:96.13.0(" + ff + ")", "0-0:96.13.1(48656C6C6F)",
                                  "0-0:96.99.9(caf\xE9)", "1-3:0.2.8(50)"});
  mp::dsmr::Result r;
  REQUIRE(mp::dsmr::decode(t, r));
  CHECK(value(r, "text_message").text == ff);
  CHECK(value(r, "text_message_code").text == "48656C6C6F");  // as sent (not hex text)
  CHECK(value(r, "dsmr_0-0:96.99.9").text == "caf\xC3\xA9");  // ISO 8859-1 0xE9 = U+00E9
  const std::string hello = telegram({"0-0:96.13.0(48656C6C6F20C3A9)"});  // "Hello é" in UTF-8
  mp::dsmr::Result h;
  REQUIRE(mp::dsmr::decode(hello, h));
  CHECK(value(h, "text_message").text == "Hello \xC3\xA9");
  // Every text of the reading and the JSON are valid UTF-8.
  for (const auto& v : r.reading.values) CHECK(mp::utf8::valid(v.text));
  CHECK(mp::utf8::valid(mp::dsmr::to_json(r)));
  // The bus message parses again (proto3 string fields are checked for UTF-8 when parsed).
  meterpipe::Reading pb;
  mp::to_proto(r.reading, &pb);
  std::string wire;
  REQUIRE(pb.SerializeToString(&wire));
  meterpipe::Reading parsed;
  CHECK(parsed.ParseFromString(wire));
  // A header with a byte above 0x7F (ISO 8859-1) is UTF-8 too.
  std::string odd = "/ABC5\xB5meter\r\n\r\n1-0:1.8.1(000001.000*kWh)\r\n!";
  char crc[8];
  std::snprintf(crc, sizeof crc, "%04X", mp::dsmr::crc16(odd));
  odd += std::string(crc) + "\r\n";
  mp::dsmr::Result o;
  REQUIRE(mp::dsmr::decode(odd, o));
  CHECK(o.header == "/ABC5\xC2\xB5meter");
}

TEST_CASE("rule 9: sums are exact decimals") {
  const std::string t = telegram({"1-0:1.8.1(011961.654*kWh)", "1-0:1.8.2(011962.000*kWh)",
                                  "1-0:2.8.1(000001.100*kWh)", "1-0:2.8.2(000002.200*kWh)",
                                  "1-0:1.7.0(01.234*kW)", "1-0:2.7.0(00.100*kW)"});
  mp::dsmr::Result r;
  REQUIRE(mp::dsmr::decode(t, r));
  // 11961.654 + 11962.000 in binary is 23923.654000000002; the exact sum is 23923.654.
  CHECK(value(r, "energy_import_kwh").number == 23923.654);
  CHECK(value(r, "energy_export_kwh").number == 3.3);  // not 3.3000000000000003
  CHECK(value(r, "power_net_w").number == 1134.0);
  CHECK(value(r, "energy_import_kwh").exact.empty());  // the double carries it
  const std::string j = mp::dsmr::to_json(r);
  CHECK(j.find("\"value\":23923.654,") != std::string::npos);
  CHECK(j.find("\"value\":3.3,") != std::string::npos);
  CHECK(j.find("0000000") == std::string::npos);
  // Sums beyond what a double carries keep their exact text.
  const std::string big = telegram({"1-0:1.8.1(9007199254740993*Wh)", "1-0:1.8.2(0.001*Wh)"});
  mp::dsmr::Result b;
  REQUIRE(mp::dsmr::decode(big, b));
  CHECK(value(b, "energy_import_kwh").exact == "9007199254740.993001");
}

TEST_CASE("rule 10: 1-1: codes decode like their 1-0: counterparts") {
  const std::string t = telegram({"1-1:1.8.1(001234.567*kWh)", "1-1:1.8.2(000100.000*kWh)",
                                  "1-1:1.7.0(01.500*kW)", "1-1:2.7.0(00.000*kW)",
                                  "1-1:32.7.0(231.1*V)", "1-1:1.6.0(230101120000W)(03.250*kW)"});
  mp::dsmr::Result r;
  REQUIRE(mp::dsmr::decode(t, r));
  CHECK(r.errors.empty());
  CHECK(value(r, "energy_import_t1_kwh").number == 1234.567);
  CHECK(value(r, "energy_import_t1_kwh").native_id == "1-1:1.8.1");
  CHECK(value(r, "energy_import_kwh").number == 1334.567);
  CHECK(value(r, "power_import_w").number == 1500.0);
  CHECK(value(r, "power_net_w").number == 1500.0);
  CHECK(value(r, "voltage_l1_v").number == 231.1);
  const mp::Value& peak = value(r, "demand_max_month_w");
  CHECK(peak.number == 3250.0);
  CHECK(peak.time_ns == 1672570800LL * 1000000000LL);  // 2023-01-01 12:00 UTC+1
  // A telegram with both: the 1-0: code keeps the name, the 1-1: one its own.
  const std::string both = telegram({"1-0:1.8.1(000001.000*kWh)", "1-1:1.8.1(000002.000*kWh)"});
  mp::dsmr::Result b;
  REQUIRE(mp::dsmr::decode(both, b));
  CHECK(value(b, "energy_import_t1_kwh").number == 1.0);
  CHECK(value(b, "dsmr_1-1:1.8.1").number == 2.0);
}
