// SunSpec: marker search, model chain walk, and model decoding with scale factors and
// "not implemented" sentinels, against an in-memory device image with hand-worked values.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "protocols/modbus/sunspec.h"

using namespace mp::sunspec;

namespace {

// A device's holding registers: `base` holds the SunS marker, models follow.
struct Device {
  uint16_t base = 40000;
  std::vector<uint16_t> regs;  // regs[0] is address `base`
  int reads = 0;
  bool fail_reads = false;

  explicit Device(uint16_t b) : base(b) { regs = {kMarker0, kMarker1}; }
  // Appends a model; returns its address (of the ID register).
  uint16_t add(uint16_t id, std::vector<uint16_t> data) {
    const auto addr = static_cast<uint16_t>(base + regs.size());
    regs.push_back(id);
    regs.push_back(static_cast<uint16_t>(data.size()));
    regs.insert(regs.end(), data.begin(), data.end());
    return addr;
  }
  void end() {
    regs.push_back(0xFFFF);
    regs.push_back(0);
  }
  ReadFn reader() {
    return [this](uint16_t a, uint16_t c, uint16_t* out) {
      ++reads;
      if (fail_reads || a < base || size_t{a} - base + c > regs.size()) return false;
      for (uint16_t i = 0; i < c; ++i) out[i] = regs[a - base + i];
      return true;
    };
  }
  std::vector<uint16_t> slice(uint16_t addr, size_t n) const {
    return {regs.begin() + (addr - base), regs.begin() + (addr - base) + static_cast<long>(n)};
  }
};

std::vector<uint16_t> text(const std::string& s, size_t regs) {
  std::vector<uint16_t> out(regs, 0);
  for (size_t i = 0; i < s.size() && i / 2 < regs; ++i)
    out[i / 2] |= static_cast<uint16_t>(static_cast<unsigned char>(s[i]) << (i % 2 ? 0 : 8));
  return out;
}

std::vector<uint16_t> common_model() {
  std::vector<uint16_t> d;
  auto put = [&](std::vector<uint16_t> v) { d.insert(d.end(), v.begin(), v.end()); };
  put(text("Fronius", 16));
  put(text("Symo 8.2-3-M", 16));
  put(text("opt", 8));
  put(text("1.2.3  ", 8));  // trailing spaces are trimmed
  put(text("12345678", 16));
  d.push_back(1);  // DA
  d.push_back(0);  // Pad
  return d;        // 66
}

// Model 103 (three phase inverter, integer + SF), with hand-picked raw values.
std::vector<uint16_t> inverter_103() {
  std::vector<uint16_t> d(50, 0);
  d[0] = 1234;     // A        -> 12.34 A (A_SF -2)
  d[1] = 411;      // AphA     -> 4.11 A
  d[2] = 0xFFFF;   // AphB     not implemented
  d[3] = 412;      // AphC     -> 4.12 A
  d[4] = 0xFFFE;   // A_SF = -2
  d[8] = 2301;     // PhVphA   -> 230.1 V (V_SF -1)
  d[11] = 0xFFFF;  // V_SF = -1
  d[12] = 500;     // W        -> 5000 W (W_SF 1)
  d[13] = 1;       // W_SF
  d[14] = 5001;    // Hz       -> 50.01 Hz (Hz_SF -2)
  d[15] = 0xFFFE;
  d[16] = 100;  // VA, but VA_SF not implemented -> absent
  d[17] = 0x8000;
  d[20] = 0xDA25;  // PF = -9691 -> -96.91 % -> -0.9691 (PF_SF -2)
  d[21] = 0xFFFE;
  d[22] = 0x0001;  // WH = 100000 * 10^2 Wh = 10000 kWh
  d[23] = 0x86A0;
  d[24] = 2;
  d[27] = 4000;  // DCV -> 400.0 V (DCV_SF -1)
  d[28] = 0xFFFF;
  d[29] = 0x8000;  // DCW not implemented
  d[30] = 0;
  d[31] = 452;     // TmpCab -> 45.2 C (Tmp_SF -1)
  d[32] = 0x8000;  // TmpSnk not implemented
  d[33] = 0x8000;
  d[34] = 0x8000;
  d[35] = 0xFFFF;
  d[36] = 4;  // St = MPPT
  return d;
}

// Model 203 (wye meter, integer + SF).
std::vector<uint16_t> meter_203() {
  std::vector<uint16_t> d(105, 0);
  for (int i :
       {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 21, 22, 23, 24, 26, 27, 28, 29, 31, 32, 33, 34})
    d[i] = 0x8000;  // not implemented
  d[6] = 2300;      // PhVphA -> 230.0 V
  d[13] = 0xFFFF;   // V_SF -1
  d[14] = 5000;     // Hz -> 50.00
  d[15] = 0xFFFE;   // Hz_SF -2
  d[16] = 0xFA24;   // W = -1500 -> export 1500 W
  d[17] = 0xFE0C;   // WphA = -500
  d[18] = 0x8000;   // WphB n/i
  d[19] = 0x8000;
  d[20] = 0;  // W_SF
  d[25] = 0x8000;
  d[30] = 0x8000;
  d[35] = 0x8000;
  d[36] = 0;  // TotWhExp = 0: acc32 "not accumulated" -> absent
  d[37] = 0;
  d[44] = 0x0012;  // TotWhImp = 1234567 Wh -> 1234.567 kWh
  d[45] = 0xD687;
  d[52] = 0;  // TotWh_SF
  return d;
}

// Model 113 (three phase inverter, float).
std::vector<uint16_t> inverter_113() {
  std::vector<uint16_t> d(60, 0);
  for (size_t i = 0; i + 1 < 46; i += 2) d[i] = 0x7FC0;  // NaN everywhere ...
  d[14] = 0x4365, d[15] = 0x8000;                        // PhVphA 229.5 V
  d[20] = 0x451C, d[21] = 0x4800;                        // W 2500.5
  d[28] = 0x42C4, d[29] = 0x0000;                        // PF 98 % -> 0.98
  d[30] = 0x49B7, d[31] = 0x1B00;                        // WH 1.5e6 Wh -> 1500 kWh
  d[38] = 0xC040, d[39] = 0x0000;                        // TmpCab -3.0
  d[46] = 0xFFFF;                                        // St not implemented
  return d;
}

const mp::Value* find(const std::vector<mp::Value>& vs, std::string_view name) {
  for (const auto& v : vs)
    if (v.name == name) return &v;
  return nullptr;
}

double num(const std::vector<mp::Value>& vs, std::string_view name) {
  const mp::Value* v = find(vs, name);
  REQUIRE_MESSAGE(v != nullptr, "missing ", std::string(name));
  return v->number;
}

}  // namespace

TEST_CASE("sunspec: marker and chain walk") {
  Device dev(40000);
  const uint16_t a1 = dev.add(1, common_model());
  const uint16_t a103 = dev.add(103, inverter_103());
  const uint16_t a203 = dev.add(203, meter_203());
  dev.end();
  CHECK(a1 == 40002);
  CHECK(a103 == 40070);
  CHECK(a203 == 40122);

  uint16_t base = 1;
  REQUIRE(find_base(dev.reader(), base));
  CHECK(base == 40000);
  std::vector<ModelRef> models;
  std::string err;
  REQUIRE(walk_chain(dev.reader(), base, models, err));
  REQUIRE(models.size() == 3);
  CHECK(models[0].id == 1);
  CHECK(models[0].address == 40002);
  CHECK(models[0].length == 66);
  CHECK(models[1].id == 103);
  CHECK(models[1].address == 40070);
  CHECK(models[1].length == 50);
  CHECK(models[2].id == 203);
  CHECK(models[2].address == 40122);
  CHECK(models[2].length == 105);
}

TEST_CASE("sunspec: marker at 0 and at 50000; none at all") {
  for (uint16_t b : {uint16_t{0}, uint16_t{50000}}) {
    Device dev(b);
    dev.add(1, common_model());
    dev.end();
    uint16_t base = 1;
    REQUIRE(find_base(dev.reader(), base));
    CHECK(base == b);
  }
  Device none(40000);
  none.regs[0] = 0x1234;
  uint16_t base = 7;
  CHECK_FALSE(find_base(none.reader(), base));
  CHECK(base == 7);
}

TEST_CASE("sunspec: broken chains") {
  Device dev(40000);
  dev.add(1, common_model());
  dev.add(103, inverter_103());
  // No end marker: the read past the image fails after two models -> partial chain.
  std::vector<ModelRef> models;
  std::string err;
  CHECK(walk_chain(dev.reader(), 40000, models, err));
  CHECK(models.size() == 2);
  CHECK(err == "reading a model header failed");
  // All reads fail -> false.
  dev.fail_reads = true;
  CHECK_FALSE(walk_chain(dev.reader(), 40000, models, err));
  CHECK(models.empty());
  // A chain whose length runs past 65535 stops.
  Device high(64000);
  high.add(1, std::vector<uint16_t>(1000, 0));  // next header at 65004
  high.regs.push_back(64);
  high.regs.push_back(60000);
  CHECK(walk_chain(high.reader(), 64000, models, err));
  CHECK(models.size() == 2);
  CHECK(err == "model chain runs past register 65535");
}

TEST_CASE("sunspec: common model text") {
  Device dev(40000);
  dev.add(1, common_model());
  std::vector<mp::Value> out;
  const auto block = dev.slice(40002, 68);
  CHECK(decode_block(40002, block.data(), block.size(), out) == 4);
  REQUIRE(find(out, "manufacturer"));
  CHECK(find(out, "manufacturer")->is_text);
  CHECK(find(out, "manufacturer")->text == "Fronius");
  CHECK(find(out, "model")->text == "Symo 8.2-3-M");
  CHECK(find(out, "version")->text == "1.2.3");
  CHECK(find(out, "serial_number")->text == "12345678");
  CHECK(find(out, "serial_number")->native_id == "sunspec:1.SN@40052");
}

TEST_CASE("sunspec: inverter 103 with scale factors and sentinels") {
  Device dev(40000);
  dev.add(1, common_model());
  const uint16_t a = dev.add(103, inverter_103());
  std::vector<mp::Value> out;
  const auto block = dev.slice(a, 52);
  decode_block(a, block.data(), block.size(), out);
  CHECK(num(out, "current_a") == doctest::Approx(12.34));
  CHECK(num(out, "current_l1_a") == doctest::Approx(4.11));
  CHECK(find(out, "current_l2_a") == nullptr);
  CHECK(num(out, "current_l3_a") == doctest::Approx(4.12));
  CHECK(num(out, "voltage_l1_v") == doctest::Approx(230.1));
  CHECK(num(out, "pv_power_w") == doctest::Approx(5000.0));
  CHECK(num(out, "frequency_hz") == doctest::Approx(50.01));
  CHECK(find(out, "power_apparent_va") == nullptr);
  CHECK(num(out, "power_factor") == doctest::Approx(-0.9691));
  CHECK(num(out, "pv_energy_kwh") == doctest::Approx(10000.0));
  CHECK(find(out, "pv_energy_kwh")->unit == "kWh");
  CHECK(num(out, "dc_voltage_v") == doctest::Approx(400.0));
  CHECK(find(out, "dc_power_w") == nullptr);
  CHECK(num(out, "temperature_c") == doctest::Approx(45.2));
  CHECK(find(out, "temperature_sink_c") == nullptr);
  CHECK(num(out, "inverter_state") == 4.0);
  CHECK(find(out, "pv_power_w")->native_id == "sunspec:103.W@40084");
  // A truncated block decodes nothing of the model (it is not whole).
  std::vector<mp::Value> none;
  CHECK(decode_block(a, block.data(), 30, none) == 0);
}

TEST_CASE("sunspec: meter 203, sign convention and invert option") {
  Device dev(40000);
  const uint16_t a = dev.add(203, meter_203());
  const auto block = dev.slice(a, 107);
  std::vector<mp::Value> out;
  decode_block(a, block.data(), block.size(), out);
  CHECK(num(out, "power_net_w") == -1500.0);
  CHECK(num(out, "power_import_w") == 0.0);
  CHECK(num(out, "power_export_w") == 1500.0);
  CHECK(num(out, "power_l1_w") == -500.0);
  CHECK(find(out, "power_l2_w") == nullptr);
  CHECK(num(out, "voltage_l1_v") == doctest::Approx(230.0));
  CHECK(num(out, "frequency_hz") == doctest::Approx(50.0));
  CHECK(num(out, "energy_import_kwh") == doctest::Approx(1234.567));
  CHECK(find(out, "energy_export_kwh") == nullptr);
  CHECK(find(out, "current_a") == nullptr);
  CHECK(find(out, "power_factor") == nullptr);

  std::vector<mp::Value> inv;
  DecodeOptions opt;
  opt.invert_meter_power = true;
  decode_block(a, block.data(), block.size(), inv, opt);
  CHECK(num(inv, "power_net_w") == 1500.0);
  CHECK(num(inv, "power_import_w") == 1500.0);
  CHECK(num(inv, "power_export_w") == 0.0);
  CHECK(num(inv, "power_l1_w") == 500.0);
  CHECK(num(inv, "voltage_l1_v") == doctest::Approx(230.0));
}

TEST_CASE("sunspec: float inverter 113") {
  Device dev(40000);
  const uint16_t a = dev.add(113, inverter_113());
  const auto block = dev.slice(a, 62);
  std::vector<mp::Value> out;
  CHECK(decode_block(a, block.data(), block.size(), out) == 5);
  CHECK(num(out, "voltage_l1_v") == 229.5);
  CHECK(num(out, "pv_power_w") == 2500.5);
  CHECK(num(out, "power_factor") == doctest::Approx(0.98));
  CHECK(num(out, "pv_energy_kwh") == doctest::Approx(1500.0));
  CHECK(num(out, "temperature_c") == -3.0);
}

TEST_CASE("sunspec: whole image in one block, marker first; unknown models skipped") {
  Device dev(40000);
  dev.add(1, common_model());
  dev.add(64001, std::vector<uint16_t>(10, 0x1234));  // vendor model: skipped
  dev.add(203, meter_203());
  dev.end();
  std::vector<mp::Value> out;
  decode_block(40000, dev.regs.data(), dev.regs.size(), out);
  CHECK(find(out, "manufacturer")->text == "Fronius");
  CHECK(num(out, "power_net_w") == -1500.0);
  // Bytes as on the wire.
  std::vector<uint8_t> bytes;
  for (uint16_t r : dev.regs) {
    bytes.push_back(static_cast<uint8_t>(r >> 8));
    bytes.push_back(static_cast<uint8_t>(r));
  }
  std::vector<mp::Value> out2;
  CHECK(decode_block_bytes(40000, bytes.data(), bytes.size(), out2) == out.size());
  // Garbage never crashes: a length running past the block, model 0, null input.
  const uint16_t junk[4] = {103, 500, 1, 2};
  std::vector<mp::Value> none;
  CHECK(decode_block(0, junk, 4, none) == 0);
  const uint16_t zero[4] = {0, 0, 0, 0};
  CHECK(decode_block(0, zero, 4, none) == 0);
  CHECK(decode_block(0, nullptr, 4, none) == 0);
  CHECK(decode_model(103, 0, junk, 4, none) == 0);  // short model: nothing whole inside
  CHECK(none.empty());
}

TEST_CASE("sunspec: strings and model classes") {
  const uint16_t s[3] = {0x4142, 0x0043, 0x4445};  // "AB", NUL stops
  CHECK(decode_string(s, 3) == "AB");
  const uint16_t t[2] = {0x41FF, 0x2020};
  CHECK(decode_string(t, 2) == "A?");
  CHECK(is_inverter_model(101));
  CHECK(is_inverter_model(113));
  CHECK_FALSE(is_inverter_model(104));
  CHECK(is_meter_model(204));
  CHECK_FALSE(is_meter_model(211));
  CHECK(is_supported_model(1));
}
