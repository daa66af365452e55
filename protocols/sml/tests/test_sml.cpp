// SML decoder tests: real frames of public test data (tests/data/SOURCES.md) with the values
// read off them by hand, frames built from the SML 1.04 structure (sml_writer.h), TL
// encodings, damaged input, the canonical names and `meterpipe decode sml`.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>

#include "common/canonical.h"
#include "protocols/sml/decode_sml_cli.h"
#include "protocols/sml/sml.h"
#include "protocols/sml/sml_sim.h"
#include "protocols/sml/sml_transport.h"
#include "protocols/sml/sml_writer.h"
#include "protocols/sml/tests/sml_test_data.h"

using namespace mp::sml;
namespace td = mp::sml::testdata;

namespace {

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

mp::Reading decode_reading(const std::string& frame) {
  File f;
  std::string err;
  REQUIRE_MESSAGE(decode_frame(bytes(frame), f, err), err);
  mp::Reading r;
  to_reading(f, r);
  return r;
}

double num(const mp::Reading& r, const char* name) {
  const auto* v = r.find(name);
  REQUIRE_MESSAGE(v != nullptr, name);
  return v->number;
}

}  // namespace

TEST_CASE("CRC-16/X-25 and KERMIT check values") {
  const std::string s = "123456789";
  CHECK(crc16_x25(bytes(s)) == 0x906E);
  CHECK(crc16_kermit(bytes(s)) == 0x2189);
}

TEST_CASE("every real frame passes the transport layer and decodes") {
  size_t frames = 0;
  for (const auto& name : td::files()) {
    for (const auto& f : td::frames(name)) {
      INFO(name);
      Transport t;
      std::string err;
      CHECK_MESSAGE(unwrap(bytes(f), t, err), err);
      CHECK(t.crc_sent == t.crc_computed);
      File file;
      CHECK_MESSAGE(decode_frame(bytes(f), file, err), err);
      CHECK(file.open_responses == 1);
      CHECK(file.get_list_responses == 1);
      CHECK(file.close_responses == 1);
      CHECK(!file.entries.empty());
      ++frames;
    }
  }
  CHECK(frames >= 13);
}

TEST_CASE("vzlogger's EMH frame: 1.8.1, 1.8.2, 1.7.0, texts, second index") {
  const auto f = td::frames("vzlogger_emh_basic.hex").at(0);
  File file;
  std::string err;
  REQUIRE(decode_frame(bytes(f), file, err));
  CHECK(file.server_id == "02280816");
  CHECK(file.act_sensor_time.kind == Time::Kind::sec_index);
  CHECK(file.act_sensor_time.seconds == 0x04487D89);
  REQUIRE(file.entries.size() == 6);
  CHECK(file.entries[0].obis_text() == "129-129:199.130.3");
  CHECK(file.entries[0].bytes == "EMH");
  const Entry& t1 = file.entries[2];
  CHECK(t1.obis_text() == "1-0:1.8.1");
  CHECK(t1.has_status);
  CHECK(t1.status == 0x0180);
  CHECK(t1.unit == 30);
  CHECK(t1.scaler == -1);
  CHECK(t1.magnitude == 0x08D1CF1B);
  CHECK(file.entries[4].obis_text() == "0-0:96.1.255");

  mp::Reading r;
  to_reading(file, r);
  CHECK(r.protocol == "sml");
  CHECK(r.device_id == "3032323830383136");
  CHECK(num(r, "energy_import_t1_kwh") == 14796.7771);
  CHECK(num(r, "energy_import_t2_kwh") == 2.0124);
  CHECK(num(r, "energy_import_kwh") == 14798.7895);  // derived: 1.8.1 + 1.8.2
  CHECK(r.find("energy_import_kwh")->native_id == "1-0:1.8.1+1-0:1.8.2");
  CHECK(num(r, "power_import_w") == 11.2);
  CHECK(r.find("power_net_w") == nullptr);  // no 2.7.0: the direction is not known
  CHECK(r.find("sml_129-129:199.130.3")->text == "EMH");
  CHECK(r.find("sml_0-0:96.1.255")->text == "0002280816");
}

TEST_CASE("EMH eHZ: 1.8.0 with status, 15.7.0 kept native, a 48-byte signature (two TL bytes)") {
  const auto fs = td::frames("EMH_eHZ-HW8E2A5L0EK2P.hex");
  REQUIRE(fs.size() == 2);
  File file;
  std::string err;
  REQUIRE(decode_frame(bytes(fs[0]), file, err));
  const auto sig = std::find_if(file.entries.begin(), file.entries.end(), [](const Entry& e) {
    return e.obis_text() == "129-129:199.130.5";
  });
  REQUIRE(sig != file.entries.end());
  CHECK(sig->bytes.size() == 48);
  mp::Reading r;
  to_reading(file, r);
  CHECK(num(r, "energy_import_kwh") == 8391.6488);
  CHECK(num(r, "energy_import_t1_kwh") == 8391.4476);
  CHECK(num(r, "energy_import_t2_kwh") == 0.2012);
  CHECK(num(r, "sml_1-0:15.7.0") == 163.5);
  CHECK(r.find("sml_1-0:15.7.0")->unit == "W");
  CHECK(num(decode_reading(fs[1]), "energy_import_kwh") == 8391.6489);
}

TEST_CASE("Holley DTZ541: locked (no PIN: 1.8.0 in whole kWh only) and unlocked") {
  const auto locked = decode_reading(td::frames("HOLLEY_DTZ541-BDBA_without_PIN.hex").at(0));
  CHECK(num(locked, "energy_import_kwh") == 2324);
  CHECK(locked.find("power_net_w") == nullptr);
  CHECK(locked.find("equipment_id")->text == "0a01484c5902000d6be6");
  CHECK(locked.device_id == "0a01484c5902000d6be6");
  CHECK(locked.find("sml_1-0:96.50.1*1")->text == "HLY");

  const auto open = td::frames("HOLLEY_DTZ541-BDBA_with_PIN.hex");
  REQUIRE(open.size() == 2);
  const auto a = decode_reading(open[0]), b = decode_reading(open[1]);
  CHECK(num(a, "energy_import_kwh") == 2355.929);
  CHECK(num(a, "power_net_w") == 376);
  CHECK(num(b, "energy_import_kwh") == 2355.9291);
  CHECK(num(b, "power_net_w") == 374);
}

TEST_CASE("Iskra MT631: with and without PIN") {
  const auto open = decode_reading(td::frames("ISKRA_MT631-D1A52-K0z-H01_with_PIN.hex").at(0));
  CHECK(num(open, "energy_import_kwh") == 2043.1047);
  CHECK(num(open, "energy_export_kwh") == 0);
  CHECK(num(open, "power_net_w") == 193);
  const auto locked = decode_reading(td::frames("ISKRA_MT631-D1A52-K0z-H01_without_PIN.hex").at(0));
  CHECK(num(locked, "energy_import_kwh") == 2043);
  CHECK(num(locked, "energy_export_kwh") == 0);
  CHECK(locked.find("power_net_w") == nullptr);
}

TEST_CASE("DZG: 3-byte unsigned energies, negative 16.7.0 (a generator feeding in)") {
  const auto fs = td::frames("DZG_DVS-7420.2V.G2_mtr2_neg.hex");
  const auto a = decode_reading(fs.at(0)), b = decode_reading(fs.at(1));
  CHECK(num(a, "energy_import_kwh") == 13.2329);
  CHECK(num(a, "energy_export_kwh") == 1500.3213);
  CHECK(num(a, "power_net_w") == -105.5);
  CHECK(num(b, "energy_export_kwh") == 1500.3214);
  CHECK(num(b, "power_net_w") == -106.78);
  // DVS-7412 firmware that sends 356.24 W as a signed 16-bit value: decoded as sent
  const auto j = decode_reading(td::frames("DZG_DVS-7412.2_jmberg.hex").at(0));
  CHECK(num(j, "power_net_w") == -299.12);
  CHECK(num(j, "energy_import_kwh") == 5430.1577);
  CHECK(num(j, "energy_export_kwh") == 26244.5726);
}

TEST_CASE("every name decoded is canonical (with its unit) or sml_<obis>") {
  size_t values = 0;
  auto check_reading = [&](const mp::Reading& r) {
    for (const auto& v : r.values) {
      ++values;
      INFO(v.name);
      if (v.name.rfind("sml_", 0) == 0) continue;
      const auto* n = mp::canonical::find(v.name);
      REQUIRE(n != nullptr);
      if (!v.is_text) CHECK(n->unit == v.unit);
    }
  };
  for (const auto& name : td::files())
    for (const auto& f : td::frames(name)) check_reading(decode_reading(f));
  SimState s;
  check_reading(decode_reading(make_sim_frame(1700000000LL * 1000000000, s)));
  CHECK(values > 70);
}

TEST_CASE("a frame built from the SML 1.04 structure: every kind of value") {
  OutFile f;
  f.server_id = std::string("\x0A\x01TST\x00\x01\x02\x03\x04", 10);
  f.sec_index = 77;
  auto add = [&](uint8_t c, uint8_t d, uint8_t e, int unit, int scaler, OutEntry::Kind k, int64_t v,
                 unsigned width) {
    OutEntry x;
    const uint8_t o[6] = {1, 0, c, d, e, 255};
    std::copy(o, o + 6, x.obis);
    x.unit = unit;
    x.scaler = scaler;
    x.kind = k;
    x.number = v;
    x.bytes = width;
    f.entries.push_back(x);
  };
  using K = OutEntry::Kind;
  add(1, 8, 0, 30, -1, K::unsigned_, 123456789012345678LL, 8);  // beyond 2^53
  add(2, 8, 0, 30, 0, K::unsigned_, 0xFFFFFFFF, 4);
  add(16, 7, 0, 27, 0, K::signed_, -2000, 2);
  add(36, 7, 0, 27, -2, K::signed_, -123456, 4);
  add(56, 7, 0, 27, 0, K::signed_, 0x7F, 1);
  add(76, 7, 0, 27, 0, K::signed_, INT64_MIN, 8);
  add(32, 7, 0, 35, -1, K::unsigned_, 2301, 2);
  add(52, 7, 0, 35, -1, K::unsigned_, 2290, 2);
  add(72, 7, 0, 35, -1, K::unsigned_, 2312, 2);
  add(31, 7, 0, 33, -2, K::unsigned_, 153, 2);
  add(51, 7, 0, 33, -2, K::unsigned_, 7, 1);
  add(71, 7, 0, 33, -2, K::unsigned_, 1000, 3);
  add(14, 7, 0, 44, -1, K::unsigned_, 499, 2);
  add(1, 8, 1, 27, 0, K::unsigned_, 5, 1);  // wrong unit for an energy: kept native
  OutEntry text;
  const uint8_t o[6] = {1, 0, 96, 1, 0, 255};
  std::copy(o, o + 6, text.obis);
  text.kind = K::bytes;
  text.text = std::string(20, 'x');  // a 20-byte string: two TL bytes
  text.has_scaler = false;
  f.entries.push_back(text);
  const std::string frame = build_frame(f);
  CHECK(frame.size() % 4 == 0);

  File file;
  std::string err;
  REQUIRE_MESSAGE(decode_frame(bytes(frame), file, err), err);
  CHECK(file.messages == 3);
  CHECK(file.entries.size() == f.entries.size());
  CHECK(file.act_sensor_time.seconds == 77);
  mp::Reading r;
  to_reading(file, r);
  CHECK(r.find("energy_import_kwh")->exact == "12345678901234.5678");
  CHECK(num(r, "energy_import_kwh") == 12345678901234.5678);
  CHECK(num(r, "energy_export_kwh") == 4294967.295);
  CHECK(num(r, "power_net_w") == -2000);
  CHECK(num(r, "power_l1_w") == -1234.56);
  CHECK(num(r, "power_l2_w") == 127);
  CHECK(num(r, "power_l3_w") == -9223372036854775808.0);
  CHECK(num(r, "voltage_l1_v") == 230.1);
  CHECK(num(r, "voltage_l2_v") == 229);
  CHECK(num(r, "voltage_l3_v") == 231.2);
  CHECK(num(r, "current_l1_a") == 1.53);
  CHECK(num(r, "current_l2_a") == 0.07);
  CHECK(num(r, "current_l3_a") == 10);
  CHECK(num(r, "frequency_hz") == 49.9);
  CHECK(r.find("energy_import_t1_kwh") == nullptr);
  CHECK(num(r, "sml_1-0:1.8.1") == 5);
  CHECK(r.find("equipment_id")->text == std::string(20, 'x'));
}

TEST_CASE("escaped 1B1B1B1B inside the messages survives the round trip") {
  OutFile f;
  f.server_id = std::string("\x1B\x1B\x1B\x1B\x1B\x1B\x1B\x1B", 8);
  OutEntry e;
  const uint8_t o[6] = {1, 0, 96, 1, 0, 255};
  std::copy(o, o + 6, e.obis);
  e.kind = OutEntry::Kind::bytes;
  e.text = std::string(16, '\x1B');
  e.has_scaler = false;
  f.entries.push_back(e);
  const std::string frame = build_frame(f);
  // somewhere the sender had to double an aligned 1B1B1B1B block
  bool escaped = false;
  for (size_t i = 8; i + 8 <= frame.size() - 8; i += 4)
    escaped |= frame.compare(i, 8, std::string(8, '\x1B')) == 0;
  CHECK(escaped);
  File file;
  std::string err;
  REQUIRE_MESSAGE(decode_frame(bytes(frame), file, err), err);
  CHECK(file.server_id == f.server_id);
  CHECK(file.entries.at(0).bytes == e.text);
  Framer fr;
  fr.feed(frame);
  std::string got;
  REQUIRE(fr.pop(got));
  CHECK(got == frame);
}

TEST_CASE("damaged frames give an error, never a crash") {
  const auto good = td::frames("ISKRA_MT631-D1A52-K0z-H01_with_PIN.hex").at(0);
  File file;
  std::string err;
  SUBCASE("one bit flipped: CRC mismatch") {
    std::string bad = good;
    bad[40] ^= 0x04;
    CHECK(!decode_frame(bytes(bad), file, err));
    CHECK(err.find("CRC mismatch") != std::string::npos);
  }
  SUBCASE("cut short") {
    CHECK(!decode_frame(bytes(good.substr(0, good.size() - 12)), file, err));
    CHECK(!err.empty());
  }
  SUBCASE("a valid transport around broken messages") {
    Transport t;
    REQUIRE(unwrap(bytes(good), t, err));
    for (size_t cut = 0; cut < t.payload.size(); ++cut) {
      const std::string frame = wrap(t.payload.substr(0, cut));
      File f2;
      std::string e2;
      if (!decode_frame(bytes(frame), f2, e2)) CHECK(!e2.empty());
    }
    std::string junk = t.payload;
    junk[0] = '\x7F';  // a list of 15 where a message of 6 is
    CHECK(!decode_frame(bytes(wrap(junk)), file, err));
    CHECK(err.find("message 1 at byte 0") == 0);
  }
  SUBCASE("TL fields: multi-byte forms, bad continuation, unknown type") {
    // a message list whose first element claims 4 TL bytes and more
    CHECK(!decode_messages(bytes(std::string("\x76\x8F\x8F\x8F\x8F\x0F", 6)), file, err));
    const std::string pad(16, '\x01');
    CHECK(!decode_messages(bytes(std::string("\x76\x81\x71", 3) + pad), file, err));
    CHECK(err.find("continuation") != std::string::npos);
    CHECK(!decode_messages(bytes(std::string("\x76\x27", 2) + pad), file, err));
    CHECK(err.find("unknown value type") != std::string::npos);
    CHECK(!decode_messages(bytes(std::string("\x00\x00", 2)), file, err));
    CHECK(err == "no SML message in the frame");
  }
}

TEST_CASE("the simulated meter: valid frames, counters that grow, net = sum of the phases") {
  SimState s;
  s.seed = 7;
  const int64_t t0 = 1751371200LL * 1000000000;  // 2025-07-01 12:00 UTC: sun
  const auto a = decode_reading(make_sim_frame(t0, s));
  const auto b = decode_reading(make_sim_frame(t0 + 3600LL * 1000000000, s));
  CHECK(num(b, "energy_import_kwh") >= num(a, "energy_import_kwh"));
  CHECK(num(b, "energy_export_kwh") >= num(a, "energy_export_kwh"));
  CHECK(num(b, "energy_import_kwh") + num(b, "energy_export_kwh") >
        num(a, "energy_import_kwh") + num(a, "energy_export_kwh"));
  const double phases = num(b, "power_l1_w") + num(b, "power_l2_w") + num(b, "power_l3_w");
  CHECK(std::fabs(num(b, "power_net_w") - phases) <= 2);
  CHECK(num(b, "voltage_l1_v") > 200);
  CHECK(num(b, "frequency_hz") > 49);
  CHECK(b.device_id.substr(0, 12) == "0a0153494d00");
  SimState s2, s3;
  s2.seed = s3.seed = 7;
  CHECK(make_sim_frame(t0, s2) == make_sim_frame(t0, s3));  // deterministic
}

TEST_CASE("decode sml: binary and hex dump give the same JSON; errors exit 1") {
  const std::string bin = td::all_bytes("DZG_DVS-7420.2V.G2_mtr2_neg.hex");
  std::istringstream in_bin(bin), in_hex(hex(bin));
  std::ostringstream out1, out2, err1, err2;
  CHECK(decode_sml_main(in_bin, out1, err1) == 0);
  CHECK(decode_sml_main(in_hex, out2, err2) == 0);
  CHECK(out1.str() == out2.str());
  const std::string first = out1.str().substr(0, out1.str().find('\n'));
  CHECK(first.find("{\"frame\":1,\"crc_ok\":true,\"server_id\":\"0a01445a4700039e2053\"") == 0);
  CHECK(first.find("{\"name\":\"power_net_w\",\"obis\":\"1-0:16.7.0\",\"value\":-105.5,"
                   "\"unit\":\"W\"}") != std::string::npos);
  CHECK(first.find("{\"obis\":\"1-0:16.7.0\",\"status\":null,\"unit\":27,\"scaler\":-2,"
                   "\"raw\":-10550}") != std::string::npos);

  std::string bad = bin;
  bad[100] ^= 1;
  std::istringstream in_bad("garbage" + bad);
  std::ostringstream out3, err3;
  CHECK(decode_sml_main(in_bad, out3, err3) == 1);
  CHECK(out3.str().find("\"crc_ok\":false") != std::string::npos);
  CHECK(err3.str().find("CRC mismatch") != std::string::npos);
  CHECK(err3.str().find("7 bytes outside whole frames skipped") != std::string::npos);

  std::istringstream empty("");
  std::ostringstream out4, err4;
  CHECK(decode_sml_main(empty, out4, err4) == 1);
}

TEST_CASE(
    "the inputs on which libsml reads out of bounds or leaks (libsml_findings/) are errors here") {
  for (const char* name :
       {"libsml-heap-overflow-octet-string.bin", "libsml-memory-leak-list-entry.bin"}) {
    INFO(name);
    std::ifstream in(td::kDir.parent_path() / "libsml_findings" / name, std::ios::binary);
    std::string frame((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(frame.size() == 252);
    File file;
    std::string err;
    CHECK(!decode_frame(bytes(frame), file, err));  // one changed byte: the CRC says so
    CHECK(err.find("CRC mismatch") == 0);
    // the same bytes with a CRC that matches (a sender that computed it over broken data)
    const uint16_t crc = crc16_x25(bytes(frame).first(frame.size() - 2));
    frame[frame.size() - 2] = static_cast<char>(crc & 0xFF);
    frame[frame.size() - 1] = static_cast<char>(crc >> 8);
    CHECK(!decode_frame(bytes(frame), file, err));
    CHECK(err.find("message 2 at byte") == 0);
  }
}

TEST_CASE("SML_Time: timestamp, localTimestamp, a bare number (Holley), a second index") {
  // One GetListResponse written by hand: actSensorTime and four entries' valTimes.
  std::string body;
  tlv::list(body, 7);
  tlv::absent(body);
  tlv::octets(body, "SRV");
  tlv::absent(body);
  tlv::list(body, 2);  // actSensorTime: timestamp 2024-01-01T00:00:00Z
  tlv::unsigned_n(body, 2, 1);
  tlv::unsigned_n(body, 1704067200, 4);
  tlv::list(body, 4);
  auto entry = [&](uint8_t c, auto&& write_time) {
    tlv::list(body, 7);
    tlv::octets(body, std::string("\x01\x00", 2) + char(c) + std::string("\x08\x00\xFF", 3));
    tlv::absent(body);
    write_time();
    tlv::unsigned_n(body, 30, 1);
    tlv::signed_n(body, 0, 1);
    tlv::unsigned_n(body, 1000, 2);
    tlv::absent(body);
  };
  entry(1, [&] {  // timestamp
    tlv::list(body, 2);
    tlv::unsigned_n(body, 2, 1);
    tlv::unsigned_n(body, 1704067260, 4);
  });
  entry(2, [&] {  // localTimestamp: UTC seconds, local offset 60 min, season offset 0
    tlv::list(body, 2);
    tlv::unsigned_n(body, 3, 1);
    tlv::list(body, 3);
    tlv::unsigned_n(body, 1704067320, 4);
    tlv::signed_n(body, 60, 2);
    tlv::signed_n(body, 0, 2);
  });
  entry(3, [&] { tlv::unsigned_n(body, 123456, 4); });  // bare number: a second index
  entry(4, [&] {                                        // secIndex beyond 32 bits: no time
    tlv::list(body, 2);
    tlv::unsigned_n(body, 1, 1);
    tlv::unsigned_n(body, 0x1FFFFFFFFULL, 8);
  });
  tlv::absent(body);
  tlv::absent(body);
  std::string msg;
  tlv::list(msg, 6);
  tlv::octets(msg, "T1");
  tlv::unsigned_n(msg, 0, 1);
  tlv::unsigned_n(msg, 0, 1);
  tlv::list(msg, 2);
  tlv::unsigned_n(msg, 0x0701, 4);  // a u32 tag, as Holley sends them
  msg += body;
  tlv::absent(msg);  // no message CRC
  msg += '\0';

  File file;
  std::string err;
  REQUIRE_MESSAGE(decode_messages(bytes(msg), file, err), err);
  REQUIRE(file.entries.size() == 4);
  CHECK(file.server_id == "SRV");
  CHECK(file.act_sensor_time.kind == Time::Kind::timestamp);
  CHECK(file.entries[0].val_time.seconds == 1704067260);
  CHECK(file.entries[1].val_time.kind == Time::Kind::timestamp);
  CHECK(file.entries[1].val_time.seconds == 1704067320);
  CHECK(file.entries[2].val_time.kind == Time::Kind::sec_index);
  CHECK(file.entries[2].val_time.seconds == 123456);
  mp::Reading r;
  to_reading(file, r);
  CHECK(r.meter_time_ns == 1704067200LL * 1000000000);
  auto time_of = [&](const char* name) {
    const auto* v = r.find(name);
    REQUIRE_MESSAGE(v != nullptr, name);
    return v->time_ns;
  };
  CHECK(time_of("energy_import_kwh") == 1704067260LL * 1000000000);  // 1-0:1.8.0
  CHECK(time_of("energy_export_kwh") == 1704067320LL * 1000000000);  // 1-0:2.8.0
  CHECK(time_of("sml_1-0:3.8.0") == 0);
  CHECK(time_of("sml_1-0:4.8.0") == 0);
}
