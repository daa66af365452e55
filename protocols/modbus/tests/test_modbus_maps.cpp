// Register maps: every map decodes a register image built from its own facts, checked
// against numbers worked out by hand (raw words -> value), plus decoder edge cases.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "protocols/modbus/modbus_maps.h"

using namespace mp::modbus;

namespace {

// A sparse register image for one function code, decoded as one block spanning it all.
struct Image {
  uint8_t fc = 3;
  std::map<uint16_t, uint16_t> words{};
  explicit Image(uint8_t f) : fc(f) {}
  Image& set(uint16_t addr, std::initializer_list<uint16_t> ws) {
    for (uint16_t w : ws) words[addr++] = w;
    return *this;
  }
  std::vector<mp::Value> decode_with(const MeterMap& m) const {
    std::vector<mp::Value> out;
    const uint16_t lo = words.begin()->first;
    const uint16_t hi = words.rbegin()->first;
    std::vector<uint16_t> regs(size_t{hi} - lo + 1, 0);
    for (const auto& [a, w] : words) regs[a - lo] = w;
    decode(m, fc, lo, regs.data(), regs.size(), out);
    return out;
  }
};

const mp::Value* find(const std::vector<mp::Value>& vs, std::string_view name) {
  for (const auto& v : vs)
    if (v.name == name) return &v;
  return nullptr;
}

double num(const std::vector<mp::Value>& vs, std::string_view name) {
  const mp::Value* v = find(vs, name);
  REQUIRE_MESSAGE(v != nullptr, "missing value ", std::string(name));
  return v->number;
}

const MeterMap& map(std::string_view type) {
  const MeterMap* m = find_map(type);
  REQUIRE(m != nullptr);
  return *m;
}

}  // namespace

TEST_CASE("maps: lookup, aliases, listing") {
  CHECK(map_types().size() == 16);
  CHECK(all_maps().size() == 16);
  CHECK(find_map("SDM630") == find_map("sdm"));
  CHECK(find_map("inepro") == find_map("pro380"));
  CHECK(find_map("pro2") == find_map("pro1"));
  CHECK(find_map("Janitza") == find_map("janitza_b23"));
  CHECK(find_map("orno3p") == find_map("orno_we516"));
  CHECK(find_map("nope") == nullptr);
  CHECK(find_map("") == nullptr);
  CHECK(native_id(4, 0x34) == "ir:0x0034");
  CHECK(native_id(3, 0x5B00) == "hr:0x5B00");
}

TEST_CASE("maps: table sanity (unique names and registers, no overlaps, probe present)") {
  for (const MeterMap* m : all_maps()) {
    CAPTURE(std::string(m->type));
    CHECK(!m->source.empty());
    std::set<std::string> names;
    std::set<std::pair<int, int>> used;  // (fc, address) of every register word
    int probes = 0;
    for (const auto& r : m->regs) {
      CHECK(names.insert(r.name).second);
      CHECK((r.fc == 3 || r.fc == 4));
      CHECK(r.scale != 0);
      for (int i = 0; i < register_count(r.type); ++i)
        CHECK(used.insert({r.fc, r.address + i}).second);
      if (r.role == Role::probe_voltage) {
        ++probes;
        CHECK(std::string(r.name) == "voltage_l1_v");
      }
    }
    CHECK(probes == (m->type == "sdm72" ? 0 : 1));
  }
}

TEST_CASE("sdm630: float32 input registers") {
  Image img{4};
  img.set(0x0000, {0x4366, 0x0000})    // 230.0 V
      .set(0x0034, {0xC4BB, 0x8000})   // -1500.0 W (export)
      .set(0x0046, {0x4248, 0x0000})   // 50.0 Hz
      .set(0x0048, {0x4640, 0xE400})   // 12345.0 kWh
      .set(0x016A, {0x3F80, 0x0000});  // 1.0 kWh
  auto vs = img.decode_with(map("sdm630"));
  CHECK(num(vs, "voltage_l1_v") == 230.0);
  CHECK(num(vs, "power_net_w") == -1500.0);
  CHECK(num(vs, "power_import_w") == 0.0);
  CHECK(num(vs, "power_export_w") == 1500.0);
  CHECK(num(vs, "frequency_hz") == 50.0);
  CHECK(num(vs, "energy_import_kwh") == 12345.0);
  CHECK(num(vs, "energy_total_l3_kwh") == 1.0);
  CHECK(find(vs, "voltage_l1_v")->native_id == "ir:0x0000");
  CHECK(find(vs, "voltage_l1_v")->unit == "V");
  CHECK(find(vs, "energy_import_kwh")->unit == "kWh");
  // 34 registers + import/export derived from the net power.
  CHECK(vs.size() == 36);
  // Holding registers are not the SDM's: nothing decodes.
  Image hr{3};
  hr.set(0, {0x4366, 0});
  CHECK(hr.decode_with(map("sdm630")).empty());
}

TEST_CASE("sdm530") {
  Image img{4};
  img.set(0x0006, {0x4120, 0x0000})    // 10.0 A
      .set(0x0034, {0x447A, 0x0000})   // 1000.0 W
      .set(0x004A, {0x42C8, 0x0000});  // 100.0 kWh
  auto vs = img.decode_with(map("sdm530"));
  CHECK(num(vs, "current_l1_a") == 10.0);
  CHECK(num(vs, "power_net_w") == 1000.0);
  CHECK(num(vs, "power_import_w") == 1000.0);
  CHECK(num(vs, "power_export_w") == 0.0);
  CHECK(num(vs, "energy_export_kwh") == 100.0);
  CHECK(find(vs, "energy_total_l1_kwh") == nullptr);
}

TEST_CASE("sdm72") {
  Image img{4};
  img.set(0x0034, {0x4348, 0x0000})    // 200.0 W
      .set(0x0048, {0x3F80, 0x0000})   // 1.0 kWh
      .set(0x0156, {0x4000, 0x0000});  // 2.0 kWh
  auto vs = img.decode_with(map("sdm72"));
  CHECK(num(vs, "power_net_w") == 200.0);
  CHECK(num(vs, "power_import_w") == 200.0);
  CHECK(num(vs, "energy_import_kwh") == 1.0);
  CHECK(num(vs, "energy_total_kwh") == 2.0);
  CHECK(find(vs, "voltage_l1_v") == nullptr);
}

TEST_CASE("sdm120") {
  Image img{4};
  img.set(0x0000, {0x4367, 0x0000})    // 231.0 V
      .set(0x000C, {0x42F6, 0x0000})   // 123.0 W
      .set(0x001E, {0xBF00, 0x0000});  // PF -0.5
  auto vs = img.decode_with(map("sdm120"));
  CHECK(num(vs, "voltage_l1_v") == 231.0);
  CHECK(num(vs, "power_net_w") == 123.0);
  CHECK(num(vs, "power_factor") == -0.5);
}

TEST_CASE("sdm220") {
  Image img{4};
  img.set(0x0006, {0x40A0, 0x0000})    // 5.0 A
      .set(0x004A, {0x4110, 0x0000})   // 9.0 kWh
      .set(0x0158, {0x3FC0, 0x0000});  // 1.5 kvarh
  auto vs = img.decode_with(map("sdm220"));
  CHECK(num(vs, "current_l1_a") == 5.0);
  CHECK(num(vs, "energy_export_kwh") == 9.0);
  CHECK(num(vs, "energy_reactive_total_kvarh") == 1.5);
}

TEST_CASE("sdm230") {
  Image img{4};
  img.set(0x0012, {0x4396, 0x0000})    // 300.0 VA
      .set(0x0024, {0x4234, 0x0000})   // 45.0 deg
      .set(0x0046, {0x4247, 0xAE14});  // 49.92 Hz (float)
  auto vs = img.decode_with(map("sdm230"));
  CHECK(num(vs, "power_apparent_va") == 300.0);
  CHECK(num(vs, "phase_angle_deg") == 45.0);
  CHECK(num(vs, "frequency_hz") == doctest::Approx(49.92).epsilon(1e-6));
}

TEST_CASE("pro380: holding registers, kW scaled to W") {
  Image img{3};
  img.set(0x5002, {0x4366, 0x0000})    // 230.0 V
      .set(0x5012, {0x3FC0, 0x0000})   // 1.5 kW -> 1500 W
      .set(0x5014, {0xBF00, 0x0000})   // -0.5 kW -> -500 W
      .set(0x6018, {0x4248, 0x0000});  // 50.0 kWh
  auto vs = img.decode_with(map("pro380"));
  CHECK(num(vs, "voltage_l1_v") == 230.0);
  CHECK(num(vs, "power_net_w") == 1500.0);
  CHECK(num(vs, "power_l1_w") == -500.0);
  CHECK(num(vs, "energy_export_kwh") == 50.0);
  CHECK(find(vs, "power_net_w")->native_id == "hr:0x5012");
}

TEST_CASE("pro1") {
  Image img{3};
  img.set(0x5000, {0x4366, 0x0000})    // 230.0 V
      .set(0x5012, {0xBE80, 0x0000})   // -0.25 kW -> -250 W
      .set(0x600C, {0x447A, 0x0000});  // 1000.0 kWh
  auto vs = img.decode_with(map("pro1"));
  CHECK(num(vs, "voltage_l1_v") == 230.0);
  CHECK(num(vs, "power_net_w") == -250.0);
  CHECK(num(vs, "power_export_w") == 250.0);
  CHECK(num(vs, "energy_import_kwh") == 1000.0);
}

TEST_CASE("janitza_b23") {
  Image img{3};
  img.set(0x4A38, {0x4366, 0x0000})    // 230.0 V
      .set(0x4A4C, {0x447A, 0x0000})   // 1000.0 W
      .set(0x4A84, {0x4640, 0xE400});  // 12345.0 kWh
  auto vs = img.decode_with(map("janitza_b23"));
  CHECK(num(vs, "voltage_l1_v") == 230.0);
  CHECK(num(vs, "power_l1_w") == 1000.0);
  CHECK(num(vs, "energy_export_kwh") == 12345.0);
}

TEST_CASE("dzg_dvh4013: u32 fixed point, net derived from import/export") {
  Image img{3};
  img.set(0x0000, {0x0000, 0x3039})    // 12345 * 0.1 = 1234.5 W import
      .set(0x0002, {0x0000, 0x0064})   // 100 * 0.1 = 10 W export
      .set(0x0004, {0x0000, 0x59D8})   // 23000 * 0.01 = 230.00 V
      .set(0x0012, {0x0000, 0xC350});  // 50000 * 0.001 = 50.000 Hz
  auto vs = img.decode_with(map("dzg"));
  CHECK(num(vs, "power_import_w") == doctest::Approx(1234.5));
  CHECK(num(vs, "power_export_w") == doctest::Approx(10.0));
  CHECK(num(vs, "power_net_w") == doctest::Approx(1224.5));
  CHECK(find(vs, "power_net_w")->native_id == "derived");
  CHECK(num(vs, "voltage_l1_v") == doctest::Approx(230.0));
  CHECK(num(vs, "frequency_hz") == doctest::Approx(50.0));
  Image e{3};
  e.set(0x4000, {0x0001, 0x0000});  // 65536 * 0.001 = 65.536 kWh
  auto ve = e.decode_with(map("dzg"));
  CHECK(num(ve, "energy_import_kwh") == doctest::Approx(65.536));
}

TEST_CASE("sbc_ale3: datasheet numbering minus one, 10 W power steps") {
  Image img{3};
  img.set(27, {0x000D, 0xEBDF})  // 13*65536 + 60383 = 912351 -> 9123.51 kWh
      .set(35, {0x00E6})         // 230 V
      .set(36, {0x0064})         // 100 * 0.1 = 10.0 A
      .set(50, {0xFF38});        // -200 * 10 W = -2000 W
  auto vs = img.decode_with(map("sbc"));
  CHECK(num(vs, "energy_import_kwh") == doctest::Approx(9123.51));
  CHECK(num(vs, "voltage_l1_v") == 230.0);
  CHECK(num(vs, "current_l1_a") == doctest::Approx(10.0));
  CHECK(num(vs, "power_net_w") == -2000.0);
  CHECK(num(vs, "power_export_w") == 2000.0);
  CHECK(num(vs, "power_import_w") == 0.0);
}

TEST_CASE("abb: fixed point and not-available sentinels") {
  Image img{3};
  img.set(0x5000, {0x0000, 0x0000, 0x0001, 0x86A0})   // 100000 * 0.01 = 1000.00 kWh
      .set(0x5004, {0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF})  // not available
      .set(0x5B00, {0x0000, 0x08FC})                  // 2300 * 0.1 = 230.0 V
      .set(0x5B14, {0xFFFF, 0xFF9C})                  // -100 * 0.01 = -1.00 W
      .set(0x5B16, {0x7FFF, 0xFFFF})                  // not available (signed max)
      .set(0x5B2C, {0x1388})                          // 5000 * 0.01 = 50.00 Hz
      .set(0x5B3A, {0xFC18});                         // -1000 * 0.001 = -1.000
  auto vs = img.decode_with(map("abb"));
  CHECK(num(vs, "energy_import_kwh") == doctest::Approx(1000.0));
  CHECK(find(vs, "energy_export_kwh") == nullptr);
  CHECK(num(vs, "voltage_l1_v") == doctest::Approx(230.0));
  CHECK(num(vs, "power_net_w") == doctest::Approx(-1.0));
  CHECK(find(vs, "power_l1_w") == nullptr);
  CHECK(num(vs, "frequency_hz") == doctest::Approx(50.0));
  CHECK(num(vs, "power_factor") == doctest::Approx(-1.0));
}

TEST_CASE("mpm3pm") {
  Image img{3};
  img.set(0x02, {0x0000, 0x04D2})    // 1234 * 0.01 = 12.34 kWh
      .set(0x08, {0x0000, 0x08FC})   // 2300 * 0.1 = 230.0 V
      .set(0x26, {0xFFFF, 0xD8F0})   // -10000 * 0.01 = -100.00 W
      .set(0x2C, {0x0000, 0x1388});  // 5000 * 0.01 = 50.00 Hz
  auto vs = img.decode_with(map("mpm3pm"));
  CHECK(num(vs, "energy_import_kwh") == doctest::Approx(12.34));
  CHECK(num(vs, "voltage_l1_v") == doctest::Approx(230.0));
  CHECK(num(vs, "power_net_w") == doctest::Approx(-100.0));
  CHECK(num(vs, "frequency_hz") == doctest::Approx(50.0));
}

TEST_CASE("orno_we504") {
  Image img{3};
  img.set(0x00, {0x08FC})            // 2300 * 0.1 = 230.0 V
      .set(0x03, {0x01F4})           // 500 W
      .set(0x07, {0x0001, 0xE240});  // 123456 Wh = 123.456 kWh
  auto vs = img.decode_with(map("orno_we504"));
  CHECK(num(vs, "voltage_l1_v") == doctest::Approx(230.0));
  CHECK(num(vs, "power_net_w") == 500.0);
  CHECK(num(vs, "energy_total_kwh") == doctest::Approx(123.456));
}

TEST_CASE("orno_we514") {
  Image img{3};
  img.set(0x130, {0x1388})            // 5000 * 0.01 = 50.00 Hz
      .set(0x131, {0x59D8})           // 23000 * 0.01 = 230.00 V
      .set(0x140, {0xFFFF, 0xFC18});  // -1000 * 0.001 kW = -1000 W
  auto vs = img.decode_with(map("orno_we514"));
  CHECK(num(vs, "frequency_hz") == doctest::Approx(50.0));
  CHECK(num(vs, "voltage_l1_v") == doctest::Approx(230.0));
  CHECK(num(vs, "power_net_w") == -1000.0);
  Image e{3};
  e.set(0xA000, {0x0000, 0x3039});  // 12345 * 0.01 = 123.45 kWh
  CHECK(num(e.decode_with(map("orno_we514")), "energy_total_kwh") == doctest::Approx(123.45));
}

TEST_CASE("orno_we516") {
  Image img{3};
  img.set(0x000E, {0x4366, 0x0000})    // 230.0 V
      .set(0x001C, {0x4020, 0x0000})   // 2.5 kW -> 2500 W
      .set(0x0108, {0x4640, 0xE400});  // 12345.0 kWh
  auto vs = img.decode_with(map("orno_we516"));
  CHECK(num(vs, "voltage_l1_v") == 230.0);
  CHECK(num(vs, "power_net_w") == 2500.0);
  CHECK(num(vs, "energy_import_kwh") == 12345.0);
}

TEST_CASE("decode: block boundaries, NaN/inf, bytes, word order, completion") {
  const MeterMap& sdm = map("sdm630");
  // A block that ends in the middle of a float decodes only what is whole.
  const uint16_t regs[3] = {0x4366, 0x0000, 0x4367};
  std::vector<mp::Value> out;
  CHECK(decode(sdm, 4, 0, regs, 3, out) == 1);
  CHECK(out[0].number == 230.0);
  // Registers 1..2: voltage_l1 (0..1) and voltage_l2 (2..3) are both cut.
  out.clear();
  CHECK(decode(sdm, 4, 1, regs, 2, out) == 0);
  // NaN and +inf are skipped, the rest decodes.
  const uint16_t bad[6] = {0x7FC0, 0x0000, 0x7F80, 0x0000, 0x4120, 0x0000};
  out.clear();
  CHECK(decode(sdm, 4, 0, bad, 6, out) == 1);
  CHECK(out[0].name == "voltage_l3_v");
  CHECK(out[0].number == 10.0);
  // Empty and null input.
  out.clear();
  CHECK(decode(sdm, 4, 0, nullptr, 4, out) == 0);
  CHECK(decode(sdm, 4, 0, regs, 0, out) == 0);
  // The last register (0xFFFF) does not overflow the range check.
  CHECK(decode(sdm, 4, 0xFFFF, regs, 1, out) == 0);
  // Bytes as on the wire; odd trailing byte ignored.
  const uint8_t bytes[5] = {0x43, 0x66, 0x00, 0x00, 0x99};
  out.clear();
  CHECK(decode_bytes(sdm, 4, 0, bytes, 5, out) == 1);
  CHECK(out[0].number == 230.0);
  // Low word first.
  static constexpr RegisterDef defs[] = {{"power_net_w", 0, 3, DataType::i32, 1, "W", Role::plain}};
  MeterMap swapped{"t", "t", "test", WordOrder::low_first, false, defs};
  const uint16_t sw[2] = {0xFF9C, 0xFFFF};  // -100 with the low word first
  out.clear();
  CHECK(decode(swapped, 3, 0, sw, 2, out) == 1);
  CHECK(out[0].number == -100.0);
  // complete(): net from import and export gathered over several blocks.
  std::vector<mp::Value> vals(2);
  vals[0].name = "power_import_w";
  vals[0].number = 300;
  vals[1].name = "power_export_w";
  vals[1].number = 50;
  CHECK(complete(vals));
  CHECK(num(vals, "power_net_w") == 250.0);
  CHECK_FALSE(complete(vals));  // already there
}
