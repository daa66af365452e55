#include "protocols/modbus/sunspec.h"

#include <bit>
#include <cmath>
#include <cstdio>

namespace mp::sunspec {
namespace {

enum class PT : uint8_t { i16, u16, acc32, u32, i32, f32 };

struct Point {
  const char* name;  // canonical name
  uint8_t offset;    // from the first register after ID and L
  PT type;
  int8_t sf;     // offset of the scale factor register, -1 = none
  double scale;  // extra factor (Wh -> kWh, Pct -> ratio)
  const char* unit;
  const char* point;  // SunSpec point name, for the native id
  uint8_t flags = 0;  // kNet | kFlip
};

constexpr uint8_t kNet = 1;   // signed net power: also derive import/export
constexpr uint8_t kFlip = 2;  // real power, sign flipped by DecodeOptions::invert_meter_power

// Inverter, integer + scale factor (models 101, 102, 103; L = 50).
// Source: sunspec/models json/model_101.json .. model_103.json.
constexpr Point kInverterInt[] = {
    {"current_a", 0, PT::u16, 4, 1, "A", "A"},
    {"current_l1_a", 1, PT::u16, 4, 1, "A", "AphA"},
    {"current_l2_a", 2, PT::u16, 4, 1, "A", "AphB"},
    {"current_l3_a", 3, PT::u16, 4, 1, "A", "AphC"},
    {"voltage_l1_l2_v", 5, PT::u16, 11, 1, "V", "PPVphAB"},
    {"voltage_l2_l3_v", 6, PT::u16, 11, 1, "V", "PPVphBC"},
    {"voltage_l3_l1_v", 7, PT::u16, 11, 1, "V", "PPVphCA"},
    {"voltage_l1_v", 8, PT::u16, 11, 1, "V", "PhVphA"},
    {"voltage_l2_v", 9, PT::u16, 11, 1, "V", "PhVphB"},
    {"voltage_l3_v", 10, PT::u16, 11, 1, "V", "PhVphC"},
    {"pv_power_w", 12, PT::i16, 13, 1, "W", "W"},
    {"frequency_hz", 14, PT::u16, 15, 1, "Hz", "Hz"},
    {"power_apparent_va", 16, PT::i16, 17, 1, "VA", "VA"},
    {"power_reactive_var", 18, PT::i16, 19, 1, "var", "VAr"},
    {"power_factor", 20, PT::i16, 21, 0.01, "", "PF"},
    {"pv_energy_kwh", 22, PT::acc32, 24, 0.001, "kWh", "WH"},
    {"dc_current_a", 25, PT::u16, 26, 1, "A", "DCA"},
    {"dc_voltage_v", 27, PT::u16, 28, 1, "V", "DCV"},
    {"dc_power_w", 29, PT::i16, 30, 1, "W", "DCW"},
    {"temperature_c", 31, PT::i16, 35, 1, "C", "TmpCab"},
    {"temperature_sink_c", 32, PT::i16, 35, 1, "C", "TmpSnk"},
    {"temperature_transformer_c", 33, PT::i16, 35, 1, "C", "TmpTrns"},
    {"temperature_other_c", 34, PT::i16, 35, 1, "C", "TmpOt"},
    {"inverter_state", 36, PT::u16, -1, 1, "", "St"},
};

// Inverter, float (models 111, 112, 113; L = 60).
// Source: sunspec/models json/model_111.json .. model_113.json.
constexpr Point kInverterFloat[] = {
    {"current_a", 0, PT::f32, -1, 1, "A", "A"},
    {"current_l1_a", 2, PT::f32, -1, 1, "A", "AphA"},
    {"current_l2_a", 4, PT::f32, -1, 1, "A", "AphB"},
    {"current_l3_a", 6, PT::f32, -1, 1, "A", "AphC"},
    {"voltage_l1_l2_v", 8, PT::f32, -1, 1, "V", "PPVphAB"},
    {"voltage_l2_l3_v", 10, PT::f32, -1, 1, "V", "PPVphBC"},
    {"voltage_l3_l1_v", 12, PT::f32, -1, 1, "V", "PPVphCA"},
    {"voltage_l1_v", 14, PT::f32, -1, 1, "V", "PhVphA"},
    {"voltage_l2_v", 16, PT::f32, -1, 1, "V", "PhVphB"},
    {"voltage_l3_v", 18, PT::f32, -1, 1, "V", "PhVphC"},
    {"pv_power_w", 20, PT::f32, -1, 1, "W", "W"},
    {"frequency_hz", 22, PT::f32, -1, 1, "Hz", "Hz"},
    {"power_apparent_va", 24, PT::f32, -1, 1, "VA", "VA"},
    {"power_reactive_var", 26, PT::f32, -1, 1, "var", "VAr"},
    {"power_factor", 28, PT::f32, -1, 0.01, "", "PF"},
    {"pv_energy_kwh", 30, PT::f32, -1, 0.001, "kWh", "WH"},
    {"dc_current_a", 32, PT::f32, -1, 1, "A", "DCA"},
    {"dc_voltage_v", 34, PT::f32, -1, 1, "V", "DCV"},
    {"dc_power_w", 36, PT::f32, -1, 1, "W", "DCW"},
    {"temperature_c", 38, PT::f32, -1, 1, "C", "TmpCab"},
    {"temperature_sink_c", 40, PT::f32, -1, 1, "C", "TmpSnk"},
    {"temperature_transformer_c", 42, PT::f32, -1, 1, "C", "TmpTrns"},
    {"temperature_other_c", 44, PT::f32, -1, 1, "C", "TmpOt"},
    {"inverter_state", 46, PT::u16, -1, 1, "", "St"},
};

// Meter, integer + scale factor (models 201, 202, 203, 204 share one layout; L = 105).
// Source: sunspec/models json/model_201.json .. model_204.json.
constexpr Point kMeterInt[] = {
    {"current_a", 0, PT::i16, 4, 1, "A", "A"},
    {"current_l1_a", 1, PT::i16, 4, 1, "A", "AphA"},
    {"current_l2_a", 2, PT::i16, 4, 1, "A", "AphB"},
    {"current_l3_a", 3, PT::i16, 4, 1, "A", "AphC"},
    {"voltage_v", 5, PT::i16, 13, 1, "V", "PhV"},
    {"voltage_l1_v", 6, PT::i16, 13, 1, "V", "PhVphA"},
    {"voltage_l2_v", 7, PT::i16, 13, 1, "V", "PhVphB"},
    {"voltage_l3_v", 8, PT::i16, 13, 1, "V", "PhVphC"},
    {"voltage_l1_l2_v", 10, PT::i16, 13, 1, "V", "PhVphAB"},
    {"voltage_l2_l3_v", 11, PT::i16, 13, 1, "V", "PhVphBC"},
    {"voltage_l3_l1_v", 12, PT::i16, 13, 1, "V", "PhVphCA"},
    {"frequency_hz", 14, PT::i16, 15, 1, "Hz", "Hz"},
    {"power_net_w", 16, PT::i16, 20, 1, "W", "W", kNet | kFlip},
    {"power_l1_w", 17, PT::i16, 20, 1, "W", "WphA", kFlip},
    {"power_l2_w", 18, PT::i16, 20, 1, "W", "WphB", kFlip},
    {"power_l3_w", 19, PT::i16, 20, 1, "W", "WphC", kFlip},
    {"power_apparent_va", 21, PT::i16, 25, 1, "VA", "VA"},
    {"power_reactive_var", 26, PT::i16, 30, 1, "var", "VAR"},
    {"power_factor", 31, PT::i16, 35, 0.01, "", "PF"},
    {"power_factor_l1", 32, PT::i16, 35, 0.01, "", "PFphA"},
    {"power_factor_l2", 33, PT::i16, 35, 0.01, "", "PFphB"},
    {"power_factor_l3", 34, PT::i16, 35, 0.01, "", "PFphC"},
    {"energy_export_kwh", 36, PT::acc32, 52, 0.001, "kWh", "TotWhExp"},
    {"energy_export_l1_kwh", 38, PT::acc32, 52, 0.001, "kWh", "TotWhExpPhA"},
    {"energy_export_l2_kwh", 40, PT::acc32, 52, 0.001, "kWh", "TotWhExpPhB"},
    {"energy_export_l3_kwh", 42, PT::acc32, 52, 0.001, "kWh", "TotWhExpPhC"},
    {"energy_import_kwh", 44, PT::acc32, 52, 0.001, "kWh", "TotWhImp"},
    {"energy_import_l1_kwh", 46, PT::acc32, 52, 0.001, "kWh", "TotWhImpPhA"},
    {"energy_import_l2_kwh", 48, PT::acc32, 52, 0.001, "kWh", "TotWhImpPhB"},
    {"energy_import_l3_kwh", 50, PT::acc32, 52, 0.001, "kWh", "TotWhImpPhC"},
};

template <size_t N>
constexpr size_t points_extent(const Point (&pts)[N]) {
  size_t m = 0;
  for (const auto& p : pts) {
    size_t end = p.offset + ((p.type == PT::i16 || p.type == PT::u16) ? 1u : 2u);
    if (p.sf >= 0 && static_cast<size_t>(p.sf) + 1 > end) end = static_cast<size_t>(p.sf) + 1;
    if (end > m) m = end;
  }
  return m;
}
static_assert(points_extent(kInverterInt) <= 50);
static_assert(points_extent(kInverterFloat) <= 60);
static_assert(points_extent(kMeterInt) <= 105);

std::string nid(uint16_t model, const char* point, uint32_t address) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "sunspec:%u.%s@%u", static_cast<unsigned>(model), point,
                static_cast<unsigned>(address));
  return buf;
}

void push_number(std::vector<mp::Value>& out, const char* name, double number, const char* unit,
                 const std::string& native) {
  mp::Value v;
  v.name = name;
  v.number = number == 0 ? 0.0 : number;
  v.unit = unit;
  v.native_id = native;
  out.push_back(std::move(v));
}

void push_text(std::vector<mp::Value>& out, const char* name, std::string text,
               const std::string& native) {
  if (text.empty()) return;
  mp::Value v;
  v.name = name;
  v.text = std::move(text);
  v.is_text = true;
  v.native_id = native;
  out.push_back(std::move(v));
}

// Raw value of a point; false when "not implemented".
bool raw_value(PT type, const uint16_t* r, double& v) {
  switch (type) {
    case PT::i16:
      if (r[0] == 0x8000) return false;
      v = static_cast<int16_t>(r[0]);
      return true;
    case PT::u16:
      if (r[0] == 0xFFFF) return false;
      v = r[0];
      return true;
    case PT::acc32: {
      const uint32_t x = (uint32_t{r[0]} << 16) | r[1];
      if (x == 0) return false;
      v = x;
      return true;
    }
    case PT::u32: {
      const uint32_t x = (uint32_t{r[0]} << 16) | r[1];
      if (x == 0xFFFFFFFFu) return false;
      v = x;
      return true;
    }
    case PT::i32: {
      const uint32_t x = (uint32_t{r[0]} << 16) | r[1];
      if (x == 0x80000000u) return false;
      v = static_cast<int32_t>(x);
      return true;
    }
    case PT::f32: {
      const float f = std::bit_cast<float>((uint32_t{r[0]} << 16) | r[1]);
      if (!std::isfinite(f)) return false;
      v = f;
      return true;
    }
  }
  return false;
}

template <size_t N>
size_t decode_points(const Point (&pts)[N], uint16_t model, uint16_t address, const uint16_t* data,
                     size_t length, std::vector<mp::Value>& out, bool invert_power) {
  const size_t before = out.size();
  for (const auto& p : pts) {
    const size_t n = (p.type == PT::i16 || p.type == PT::u16) ? 1 : 2;
    if (p.offset + n > length) continue;
    double v = 0;
    if (!raw_value(p.type, data + p.offset, v)) continue;
    if (p.sf >= 0) {
      if (static_cast<size_t>(p.sf) >= length) continue;
      const uint16_t sfr = data[p.sf];
      if (sfr == 0x8000) continue;
      const int sf = static_cast<int16_t>(sfr);
      if (sf < -10 || sf > 10) continue;
      v *= std::pow(10.0, sf);
    }
    v *= p.scale;
    if (invert_power && (p.flags & kFlip)) v = -v;
    const std::string native = nid(model, p.point, uint32_t{address} + 2 + p.offset);
    push_number(out, p.name, v, p.unit, native);
    if (p.flags & kNet) {
      push_number(out, "power_import_w", v > 0 ? v : 0.0, "W", native);
      push_number(out, "power_export_w", v < 0 ? -v : 0.0, "W", native);
    }
  }
  return out.size() - before;
}

}  // namespace

bool is_marker(const uint16_t* regs, size_t count) {
  return regs && count >= 2 && regs[0] == kMarker0 && regs[1] == kMarker1;
}

bool find_base(const ReadFn& read, uint16_t& base) {
  for (uint16_t b : kBaseAddresses) {
    uint16_t r[2] = {0, 0};
    if (read(b, 2, r) && is_marker(r, 2)) {
      base = b;
      return true;
    }
  }
  return false;
}

bool walk_chain(const ReadFn& read, uint16_t base, std::vector<ModelRef>& models,
                std::string& error, size_t max_models) {
  models.clear();
  uint32_t addr = uint32_t{base} + 2;
  auto fail = [&](const char* why) {
    error = why;
    return !models.empty();
  };
  while (models.size() < max_models) {
    if (addr + 2 > 0x10000) return fail("model chain runs past register 65535");
    uint16_t hdr[2] = {0, 0};
    if (!read(static_cast<uint16_t>(addr), 2, hdr)) return fail("reading a model header failed");
    if (hdr[0] == kEndId) return true;
    if (hdr[0] == 0) return fail("model id 0 in chain");
    ModelRef m{hdr[0], static_cast<uint16_t>(addr), hdr[1]};
    models.push_back(m);
    addr += 2u + hdr[1];
  }
  return fail("too many models");
}

bool is_common_model(uint16_t id) { return id == 1; }
bool is_inverter_model(uint16_t id) { return (id >= 101 && id <= 103) || (id >= 111 && id <= 113); }
bool is_meter_model(uint16_t id) { return id >= 201 && id <= 204; }
bool is_supported_model(uint16_t id) {
  return is_common_model(id) || is_inverter_model(id) || is_meter_model(id);
}

std::string decode_string(const uint16_t* regs, size_t count) {
  std::string s;
  if (!regs) return s;
  for (size_t i = 0; i < count; ++i) {
    const char c[2] = {static_cast<char>(regs[i] >> 8), static_cast<char>(regs[i] & 0xFF)};
    for (char ch : c) {
      if (ch == '\0') goto done;
      const auto u = static_cast<unsigned char>(ch);
      s += (u >= 0x20 && u < 0x7F) ? ch : '?';
    }
  }
done:
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

size_t decode_model(uint16_t id, uint16_t address, const uint16_t* data, size_t length,
                    std::vector<mp::Value>& out, const DecodeOptions& opt) {
  if (!data) return 0;
  if (id == 1) {
    const size_t before = out.size();
    struct S {
      const char* name;
      uint8_t offset, size;
      const char* point;
    };
    static constexpr S kStrings[] = {{"manufacturer", 0, 16, "Mn"},
                                     {"model", 16, 16, "Md"},
                                     {"version", 40, 8, "Vr"},
                                     {"serial_number", 48, 16, "SN"}};
    for (const auto& s : kStrings) {
      if (s.offset + s.size > length) continue;
      push_text(out, s.name, decode_string(data + s.offset, s.size),
                nid(1, s.point, uint32_t{address} + 2 + s.offset));
    }
    return out.size() - before;
  }
  if (id >= 101 && id <= 103)
    return decode_points(kInverterInt, id, address, data, length, out, false);
  if (id >= 111 && id <= 113)
    return decode_points(kInverterFloat, id, address, data, length, out, false);
  if (id >= 201 && id <= 204)
    return decode_points(kMeterInt, id, address, data, length, out, opt.invert_meter_power);
  return 0;
}

size_t decode_block(uint16_t start, const uint16_t* regs, size_t count, std::vector<mp::Value>& out,
                    const DecodeOptions& opt) {
  if (!regs) return 0;
  size_t total = 0;
  size_t i = 0;
  if (is_marker(regs, count)) i = 2;
  while (i + 2 <= count) {
    const uint16_t id = regs[i], len = regs[i + 1];
    if (id == kEndId || id == 0) break;
    if (i + 2 + size_t{len} > count) break;
    total += decode_model(id, static_cast<uint16_t>(start + i), regs + i + 2, len, out, opt);
    i += 2 + size_t{len};
  }
  return total;
}

size_t decode_block_bytes(uint16_t start, const uint8_t* bytes, size_t nbytes,
                          std::vector<mp::Value>& out, const DecodeOptions& opt) {
  if (!bytes) return 0;
  std::vector<uint16_t> regs(nbytes / 2);
  for (size_t i = 0; i < regs.size(); ++i)
    regs[i] = static_cast<uint16_t>((bytes[2 * i] << 8) | bytes[2 * i + 1]);
  return decode_block(start, regs.data(), regs.size(), out, opt);
}

}  // namespace mp::sunspec
