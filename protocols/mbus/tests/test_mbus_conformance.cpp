// M-Bus decoder against the rules of EN 13757-3:2013, one test case per rule of issue 19,
// with frames built here from the standard's text (tables of VIF codes, combinable VIFE, CI
// fields, date/time types F and G, identification number).
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "meterpipe.pb.h"
#include "protocols/mbus/mbus.h"
#include "process/reading_proto.h"

using namespace mp::mbus;

namespace {

std::vector<uint8_t> hex(const std::string& s) {
  std::vector<uint8_t> out;
  std::istringstream in(s);
  std::string tok;
  while (in >> tok) out.push_back(static_cast<uint8_t>(std::stoul(tok, nullptr, 16)));
  return out;
}

// "68 L L 68 C A CI data CS 16" around `data`.
std::vector<uint8_t> long_frame(uint8_t ci, const std::vector<uint8_t>& data) {
  const uint8_t len = uint8_t(data.size() + 3);
  std::vector<uint8_t> f;
  f.reserve(data.size() + 9);
  for (uint8_t b : {uint8_t(0x68), len, len, uint8_t(0x68), uint8_t(0x08), uint8_t(0x01), ci})
    f.push_back(b);
  for (uint8_t b : data) f.push_back(b);
  uint8_t cs = 0;
  for (size_t i = 4; i < f.size(); ++i) cs = uint8_t(cs + f[i]);
  f.push_back(cs);
  f.push_back(0x16);
  return f;
}

// Long header (CI 0x72): id 12345678, manufacturer code 0x4024, version 1, `medium`.
std::string header72(const char* medium = "02") {
  return std::string("78 56 34 12 24 40 01 ") + medium + " 55 00 00 00 ";
}

Frame decode_ok(uint8_t ci, const std::string& data) {
  const DecodeResult res = decode(long_frame(ci, hex(data)));
  REQUIRE_MESSAGE(res.ok(), res.error);
  return res.frame;
}

Record one_record(const std::string& record) {
  const Frame f = decode_ok(0x72, header72() + record);
  REQUIRE(f.records.size() == 1);
  return f.records[0];
}

// One row of the standard's table: a bit pattern "E000 001n" (n / nn / nnn / pp: the
// variable bits), unit, quantity and the scale: 'd' 10^(exp + n), 't' nn = s/min/h/d,
// 'p' pp = h/d/month/year, 'f' the fixed factor `exp`... given as `fixed`.
struct Row {
  const char* pattern;
  const char* unit;
  const char* quantity;
  char scale;
  int exp;
  double fixed;
};

// Codes (0..127) matched by a pattern, with the value of their variable bits.
std::vector<std::pair<unsigned, unsigned>> codes_of(const char* pattern) {
  std::string bits;
  for (const char* p = pattern + 1; *p; ++p)  // skip the extension bit 'E'
    if (*p != ' ') bits += *p;
  REQUIRE(bits.size() == 7);
  std::vector<std::pair<unsigned, unsigned>> out;
  for (unsigned c = 0; c < 128; ++c) {
    unsigned var = 0;
    bool match = true;
    for (size_t i = 0; i < 7; ++i) {
      const unsigned bit = (c >> (6 - i)) & 1;
      if (bits[i] == '0' || bits[i] == '1') {
        match = match && bit == unsigned(bits[i] - '0');
      } else {
        var = var * 2 + bit;
      }
    }
    if (match) out.push_back({c, var});
  }
  return out;
}

double factor_of(const Row& r, unsigned var) {
  static const double kSecondsToDays[] = {1, 60, 3600, 86400};
  static const double kHoursToYears[] = {3600, 86400, 2629743.83, 31556926};
  switch (r.scale) {
    case 'd': {
      double f = 1;
      const int e = r.exp + int(var);
      for (int i = 0; i < (e < 0 ? -e : e); ++i) f *= 10;
      return e < 0 ? 1 / f : f;
    }
    case 't':
      return kSecondsToDays[var];
    case 'p':
      return kHoursToYears[var];
    default:
      return r.fixed;
  }
}

// Checks every code 0..127 of an extension table against the rows (other codes: Reserved).
void check_table(uint8_t marker, const std::vector<Row>& rows) {
  std::vector<bool> seen(128, false);
  auto value_of = [&](unsigned code) {
    char rec[32];
    std::snprintf(rec, sizeof rec, "02 %02X %02X 0A 00", marker, code);
    return one_record(rec);
  };
  for (const Row& row : rows) {
    for (auto [code, var] : codes_of(row.pattern)) {
      CAPTURE(row.pattern);
      CAPTURE(code);
      seen[code] = true;
      const Record r = value_of(code);
      CHECK(r.quantity == row.quantity);
      CHECK(r.unit == row.unit);
      CHECK(r.value == doctest::Approx(10 * factor_of(row, var)).epsilon(1e-12));
    }
  }
  for (unsigned code = 0; code < 128; ++code) {
    if (seen[code]) continue;
    CAPTURE(code);
    CHECK(value_of(code).quantity == "Reserved");
  }
}

}  // namespace

TEST_CASE("rule 1: the alternate extension table after VIF 0xFB is the 2013 edition's") {
  // EN 13757-3:2013, alternate extended VIF-code table (VIF 0xFB). Normalised base units: Wh,
  // varh, VAh, J, cal, m^3, var, kg, %, feet^3, W, degree, Hz, J/h, VA, degree C.
  check_table(0xFB, {
                        {"E000 000n", "Wh", "Energy", 'd', 5, 0},             // 10^(n-1) MWh
                        {"E000 001n", "varh", "Reactive energy", 'd', 3, 0},  // 10^n kVARh
                        {"E000 010n", "VAh", "Apparent energy", 'd', 3, 0},   // 10^n kVAh
                        {"E000 100n", "J", "Energy", 'd', 8, 0},              // 10^(n-1) GJ
                        {"E000 11nn", "cal", "Energy", 'd', 5, 0},            // 10^(nn-1) MCal
                        {"E001 000n", "m^3", "Volume", 'd', 2, 0},            // 10^(n+2) m^3
                        {"E001 01nn", "var", "Reactive power", 'd', 0, 0},    // 10^(nn-3) kVAR
                        {"E001 100n", "kg", "Mass", 'd', 5, 0},               // 10^(n+2) t
                        {"E001 101n", "%", "Relative humidity", 'd', -1, 0},  // 10^(n-1) %
                        {"E010 0000", "feet^3", "Volume", 'f', 0, 1},
                        {"E010 0001", "feet^3", "Volume", 'f', 0, 0.1},
                        {"E010 100n", "W", "Power", 'd', 5, 0},  // 10^(n-1) MW
                        {"E010 1010", "°", "Phase U-U", 'f', 0, 0.1},
                        {"E010 1011", "°", "Phase U-I", 'f', 0, 0.1},
                        {"E010 11nn", "Hz", "Frequency", 'd', -3, 0},      // 10^(nn-3) Hz
                        {"E011 000n", "J/h", "Power", 'd', 8, 0},          // 10^(n-1) GJ/h
                        {"E011 01nn", "VA", "Apparent power", 'd', 0, 0},  // 10^(nn-3) kVA
                        {"E111 01nn", "°C", "Cold / Warm Temperature Limit", 'd', -3, 0},
                        {"E111 1nnn", "W", "Cumul count max power", 'd', -3, 0},
                    });
  // The example of the issue: relative humidity 0x1A = 10^-1 %, 0x1B = 1 %.
  CHECK(one_record("02 FB 1A 2D 02").value == doctest::Approx(55.7));
  CHECK(one_record("02 FB 1B 37 00").value == 55.0);
}

TEST_CASE("rule 1: the main extension table after VIF 0xFD is the 2013 edition's") {
  const double month = 2629743.83, year = 31556926;
  check_table(0xFD,
              {
                  {"E000 00nn", "Currency units", "Credit", 'd', -3, 0},
                  {"E000 01nn", "Currency units", "Debit", 'd', -3, 0},
                  {"E000 1000", "", "Access Number (transmission count)", 'f', 0, 1},
                  {"E000 1001", "", "Medium", 'f', 0, 1},
                  {"E000 1010", "", "Manufacturer", 'f', 0, 1},
                  {"E000 1011", "", "Parameter set identification", 'f', 0, 1},
                  {"E000 1100", "", "Model / Version", 'f', 0, 1},
                  {"E000 1101", "", "Hardware version", 'f', 0, 1},
                  {"E000 1110", "", "Firmware version", 'f', 0, 1},
                  {"E000 1111", "", "Software version", 'f', 0, 1},
                  {"E001 0000", "", "Customer location", 'f', 0, 1},
                  {"E001 0001", "", "Customer", 'f', 0, 1},
                  {"E001 0010", "", "Access Code User", 'f', 0, 1},
                  {"E001 0011", "", "Access Code Operator", 'f', 0, 1},
                  {"E001 0100", "", "Access Code System Operator", 'f', 0, 1},
                  {"E001 0101", "", "Access Code Developer", 'f', 0, 1},
                  {"E001 0110", "", "Password", 'f', 0, 1},
                  {"E001 0111", "", "Error flags", 'f', 0, 1},
                  {"E001 1000", "", "Error mask", 'f', 0, 1},
                  {"E001 1010", "", "Digital Output", 'f', 0, 1},
                  {"E001 1011", "", "Digital Input", 'f', 0, 1},
                  {"E001 1100", "Baud", "Baudrate", 'f', 0, 1},
                  {"E001 1101", "Bittimes", "Response delay time", 'f', 0, 1},
                  {"E001 1110", "", "Retry", 'f', 0, 1},
                  {"E001 1111", "", "Remote control", 'f', 0, 1},
                  {"E010 0000", "", "First storage # for cyclic storage", 'f', 0, 1},
                  {"E010 0001", "", "Last storage # for cyclic storage", 'f', 0, 1},
                  {"E010 0010", "", "Size of storage block", 'f', 0, 1},
                  {"E010 01nn", "s", "Storage interval", 't', 0, 0},
                  {"E010 1000", "s", "Storage interval", 'f', 0, month},
                  {"E010 1001", "s", "Storage interval", 'f', 0, year},
                  {"E010 1010", "", "Operator specific data", 'f', 0, 1},
                  {"E010 1011", "s", "Time point second", 'f', 0, 1},
                  {"E010 11nn", "s", "Duration since last readout", 't', 0, 0},
                  {"E011 0000", "-", "Start of tariff", 'f', 0, 1},
                  {"E011 0001", "s", "Duration of tariff", 'f', 0, 60},
                  {"E011 0010", "s", "Duration of tariff", 'f', 0, 3600},
                  {"E011 0011", "s", "Duration of tariff", 'f', 0, 86400},
                  {"E011 01nn", "s", "Period of tariff", 't', 0, 0},
                  {"E011 1000", "s", "Period of tariff", 'f', 0, month},
                  {"E011 1001", "s", "Period of tariff", 'f', 0, year},
                  {"E011 1010", "", "Dimensionless", 'f', 0, 1},
                  {"E011 1011", "", "Data container for wireless M-Bus protocol", 'f', 0, 1},
                  {"E011 11nn", "s", "Period of nominal data transmissions", 't', 0, 0},
                  {"E100 nnnn", "V", "Voltage", 'd', -9, 0},
                  {"E101 nnnn", "A", "Current", 'd', -12, 0},
                  {"E110 0000", "", "Reset counter", 'f', 0, 1},
                  {"E110 0001", "", "Cumulation counter", 'f', 0, 1},
                  {"E110 0010", "", "Control signal", 'f', 0, 1},
                  {"E110 0011", "", "Day of week", 'f', 0, 1},
                  {"E110 0100", "", "Week number", 'f', 0, 1},
                  {"E110 0101", "", "Time point of day change", 'f', 0, 1},
                  {"E110 0110", "", "State of parameter activation", 'f', 0, 1},
                  {"E110 0111", "", "Special supplier information", 'f', 0, 1},
                  {"E110 10pp", "s", "Duration since last cumulation", 'p', 0, 0},
                  {"E110 11pp", "s", "Operating time battery", 'p', 0, 0},
                  {"E111 0000", "", "Date and time of battery change", 'f', 0, 1},
                  {"E111 0001", "dBm", "RF level", 'f', 0, 1},
                  {"E111 0010", "", "Daylight saving", 'f', 0, 1},
                  {"E111 0011", "", "Listening window management", 'f', 0, 1},
                  {"E111 0100", "s", "Remaining battery life time", 'f', 0, 86400},
                  {"E111 0101", "", "Number of times the meter was stopped", 'f', 0, 1},
                  {"E111 0110", "", "Data container for manufacturer specific protocol", 'f', 0, 1},
              });
}

TEST_CASE("rule 2: combinable VIFE correct the value after every VIF table") {
  // E111 0nnn: multiplicative correction factor 10^(nnn-6). 0x73 = 10^-3.
  // Voltage FD C8 (E100 1000: 10^(8-9) V = 0.1 V) * 10^-3: 2301 -> 0.2301 V.
  const Record v = one_record("02 FD C8 73 FD 08");
  CHECK(v.quantity == "Voltage");
  CHECK(v.value == doctest::Approx(0.2301).epsilon(1e-12));
  // The same after the alternate table: relative humidity 0.1 % * 10^-1.
  CHECK(one_record("02 FB 9A 75 2D 02").value == doctest::Approx(5.57).epsilon(1e-12));
  // After a primary VIF (as before): 10 W * 10^-1.
  CHECK(one_record("02 AB 75 0A 00").value == doctest::Approx(1.0));
  // After a plain-text VIF ("V", sent last character first), E111 1101 = 10^3.
  const Record text = one_record("02 FC 01 56 7D 05 00");
  CHECK(text.quantity == "V");
  CHECK(text.value == 5000.0);
  // E111 10nn additive correction 10^(nn-3) in the unit of the VIF: 0x7B = +1 V.
  CHECK(one_record("02 FD C8 7B 0A 00").value == doctest::Approx(2.0));
  // Several combinable VIFE: 10^-1 * 10^-2 after the main table.
  CHECK(one_record("02 FD C9 F5 74 0A 00").value == doctest::Approx(0.01));  // 10 V * 10^-3
  // 0xFC then a code of the combinable extension table (phase L1): no scaling; after 0xFF
  // (manufacturer specific) nothing is read as a correction.
  CHECK(one_record("02 FD C9 FC 01 0A 00").value == 10.0);
  CHECK(one_record("02 FD C9 FF 73 0A 00").value == 10.0);
}

TEST_CASE("rule 6: the identification number is 8 BCD digits with its leading zeros") {
  // Id 00012345: bytes 45 23 01 00 (LSB first).
  const Frame f = decode_ok(0x72, "45 23 01 00 24 40 01 02 55 00 00 00 04 03 01 00 00 00");
  CHECK(f.header.id == "00012345");
  CHECK(to_json(f).find("\"id\":\"00012345\"") != std::string::npos);
  mp::Reading r;
  REQUIRE(to_reading(f, r));
  CHECK(r.device_id == f.header.manufacturer + "00012345");
  // The fixed data structure (CI 0x73) carries the same number.
  const Frame fixed =
      decode_ok(0x73, "07 00 00 00 01 00 C3 03 00 00 00 00 00 00 00 00");  // id 00000007
  CHECK(fixed.header.id == "00000007");
}

TEST_CASE("rule 4: the CI fields of the standard's table") {
  // The same two records (energy 1234 Wh, volume 0.513 m^3) under every CI that carries
  // variable data: 0x72 long header, 0x76 long header MSB first, 0x7A short header, 0x78 no
  // header.
  const std::string records = "04 03 D2 04 00 00 04 13 01 02 00 00";
  const std::string records_msb = "04 03 00 00 04 D2 04 13 00 00 02 01";
  const Frame l72 = decode_ok(0x72, header72() + records);
  const Frame l76 = decode_ok(0x76, "12 34 56 78 40 24 01 02 55 00 00 00 " + records_msb);
  const Frame s7a = decode_ok(0x7A, "55 00 00 00 " + records);
  const Frame n78 = decode_ok(0x78, records);
  for (const Frame* f : {&l72, &l76, &s7a, &n78}) {
    CAPTURE(int(f->ci));
    CHECK(f->payload == Payload::variable);
    REQUIRE(f->records.size() == 2);
    CHECK(f->records[0].value == 1234.0);
    CHECK(f->records[0].quantity == "Energy");
    CHECK(f->records[1].value == doctest::Approx(0.513));
  }
  CHECK(l72.header.present);
  CHECK(l76.header.id == "12345678");
  CHECK(l76.header.manufacturer == l72.header.manufacturer);
  CHECK_FALSE(s7a.header.present);
  CHECK(s7a.header.access_number == 0x55);
  CHECK_FALSE(n78.header.present);
  // A response without header is a reading (records under their native names).
  mp::Reading r;
  std::string why;
  REQUIRE_MESSAGE(to_reading(n78, r, &why), why);
  REQUIRE(r.find("mbus_0403") != nullptr);
  CHECK(r.find("mbus_0403")->number == 1234.0);
  CHECK(r.device_id.empty());
  CHECK(to_json(n78).find("\"ci\":120,\"more_records_follow\":false") != std::string::npos);
  // A CI outside the table is still refused.
  CHECK(decode(long_frame(0x79, hex("01 02"))).error == "unsupported CI 0x79");
}

TEST_CASE("rule 3: 64-bit integers stay exact in the JSON and on the bus") {
  // DIF 0x07 (64-bit integer), VIF 0x78 fabrication number: 2^60 + 1, then 2^53 + 1 with a
  // Wh scale (VIF 0x03), and a small integer (exact in a double: no extra field).
  const Frame f = decode_ok(
      0x72, header72("00") +
                "07 78 01 00 00 00 00 00 00 10 07 03 01 00 00 00 00 00 20 00 04 03 0A 00 00 00");
  REQUIRE(f.records.size() == 3);
  const Record& big = f.records[0];
  CHECK(big.exact);
  CHECK(big.mantissa == (int64_t{1} << 60) + 1);
  const std::string j = to_json(f);
  CHECK(j.find("\"value\":1152921504606846977}") != std::string::npos);
  CHECK(j.find("\"value\":9007199254740993}") != std::string::npos);
  CHECK(j.find("\"value\":10}") != std::string::npos);
  mp::Reading r;
  REQUIRE(to_reading(f, r));
  const mp::Value* fab = r.find("mbus_0778");
  REQUIRE(fab != nullptr);
  CHECK(fab->exact == "1152921504606846977");
  CHECK(r.find("mbus_0403")->exact.empty());
  // On the bus: the exact integer in Value.integer, the nearest double in Value.number.
  meterpipe::Reading pb;
  mp::to_proto(r, &pb);
  bool found = false;
  for (const auto& v : pb.values()) {
    if (v.name() == "mbus_0778") {
      found = true;
      CHECK(v.has_integer());
      CHECK(v.integer() == (int64_t{1} << 60) + 1);
      CHECK(v.number() == double(int64_t{1} << 60));
    } else if (v.name() == "mbus_0403") {
      CHECK_FALSE(v.has_integer());
      CHECK(v.exact().empty());
    }
  }
  CHECK(found);
  mp::Reading back;
  mp::from_proto(pb, back);
  CHECK(back.find("mbus_0778")->exact == "1152921504606846977");
  // Scaled integers whose exact value is no 64-bit integer go as decimal text.
  CHECK(decimal_text(int64_t{1} << 60, 4) == "11529215046068469760000");
  CHECK(decimal_text(-12345, -3) == "-12.345");
  CHECK(decimal_text(5, -3) == "0.005");
  CHECK(decimal_text(12000, -3) == "12");
}

namespace {
// A meter in a zone one hour east of UTC, without summer time (for the test).
bool utc_plus_one(int64_t local, int64_t& utc) {
  utc = local - 3600;
  return true;
}
}  // namespace

TEST_CASE("rule 5: dates and times: invalid, 'every' markers, the meter's local time") {
  // Type F (4 bytes): minute, hour, day + year low bits, month + year high bits.
  // 2012-12-31 14:50 local time.
  const Frame f = decode_ok(0x72, header72() +
                                      "04 6D 32 0E 9F 1C "  // valid date & time
                                      "04 6D B2 0E 9F 1C "  // the same with the IV bit set
                                      "02 6C FF FF "        // type G: year 127, month 15, day 31
                                      "02 6C E0 11 "        // type G: 2015-01, day 0 ("every day")
                                      "02 6C 1F 00 ");      // type G: month 0: no date
  REQUIRE(f.records.size() == 5);
  const Record& valid = f.records[0];
  CHECK(valid.text == "2012-12-31T14:50:00");  // local: no "Z"
  CHECK(valid.time_valid);
  CHECK(valid.local_seconds == 1356965400);  // 2012-12-31 14:50:00 counted as wall clock
  const Record& invalid = f.records[1];
  CHECK(invalid.time_invalid);
  CHECK_FALSE(invalid.time_valid);
  CHECK(invalid.kind == ValueKind::none);
  CHECK(f.records[2].text == "*-*-31");
  CHECK(f.records[2].time_recurring);
  CHECK_FALSE(f.records[2].time_valid);
  CHECK(f.records[3].text == "2015-01-*");
  CHECK(f.records[3].time_recurring);
  CHECK(f.records[4].time_invalid);
  const std::string j = to_json(f);
  CHECK(j.find("\"value\":\"2012-12-31T14:50:00\"}") != std::string::npos);
  CHECK(j.find("\"value\":null,\"invalid\":true}") != std::string::npos);
  CHECK(j.find("\"value\":\"*-*-31\",\"recurring\":true}") != std::string::npos);
  CHECK(j.find("1900") == std::string::npos);
  CHECK(j.find("Z\"") == std::string::npos);

  // On the bus: converted with the meter's zone; without a zone no time claims to be UTC.
  mp::Reading r;
  REQUIRE(to_reading(f, r, nullptr, utc_plus_one));
  CHECK(r.meter_time_ns == (1356965400LL - 3600) * 1000000000LL);
  CHECK(r.find("mbus_046D") != nullptr);
  mp::Reading no_zone;
  REQUIRE(to_reading(f, no_zone));
  CHECK(no_zone.meter_time_ns == 0);
  for (const auto& v : no_zone.values) CHECK(v.time_ns == 0);
  // The invalid one and the recurring ones carry no time either way.
  int with_time = 0;
  for (const auto& v : r.values) with_time += v.time_ns != 0;
  CHECK(with_time == 1);
}
