// SML entries to canonical values (protocols/sml/sml.h, docs/ARCHITECTURE.md "Canonical
// values"). Electricity codes 1-0:C.D.E*255 with the unit the table expects (or none) get the
// canonical name; energies in Wh become kWh. Every other entry keeps its OBIS code:
// "sml_<A-B:C.D.E>" as a number with its unit, or as text (printable bytes) or hex.
#include <cmath>
#include <cstdlib>

#include "protocols/sml/sml.h"

namespace mp::sml {

namespace {

struct Known {
  uint8_t c, d, e;
  const char* name;
  uint8_t unit;  // the DLMS unit code the value must have (or none)
  int shift;     // extra power of ten: -3 for Wh -> kWh
  const char* unit_out;
};

constexpr uint8_t kW = 27, kWh = 30, kA = 33, kV = 35, kHz = 44;

constexpr Known kKnown[] = {
    {1, 8, 0, "energy_import_kwh", kWh, -3, "kWh"},
    {1, 8, 1, "energy_import_t1_kwh", kWh, -3, "kWh"},
    {1, 8, 2, "energy_import_t2_kwh", kWh, -3, "kWh"},
    {2, 8, 0, "energy_export_kwh", kWh, -3, "kWh"},
    {2, 8, 1, "energy_export_t1_kwh", kWh, -3, "kWh"},
    {2, 8, 2, "energy_export_t2_kwh", kWh, -3, "kWh"},
    // 16.7.0 is the signed sum of the active power: import positive, export negative
    {16, 7, 0, "power_net_w", kW, 0, "W"},
    {1, 7, 0, "power_import_w", kW, 0, "W"},
    {2, 7, 0, "power_export_w", kW, 0, "W"},
    {36, 7, 0, "power_l1_w", kW, 0, "W"},
    {56, 7, 0, "power_l2_w", kW, 0, "W"},
    {76, 7, 0, "power_l3_w", kW, 0, "W"},
    {32, 7, 0, "voltage_l1_v", kV, 0, "V"},
    {52, 7, 0, "voltage_l2_v", kV, 0, "V"},
    {72, 7, 0, "voltage_l3_v", kV, 0, "V"},
    {31, 7, 0, "current_l1_a", kA, 0, "A"},
    {51, 7, 0, "current_l2_a", kA, 0, "A"},
    {71, 7, 0, "current_l3_a", kA, 0, "A"},
    {14, 7, 0, "frequency_hz", kHz, 0, "Hz"},
};

const uint8_t* obis(const Entry& e) { return reinterpret_cast<const uint8_t*>(e.obj_name.data()); }

const Known* find_known(const Entry& e) {
  if (!e.is_obis()) return nullptr;
  const uint8_t* o = obis(e);
  if (o[0] != 1 || o[1] != 0 || o[5] != 255) return nullptr;
  for (const auto& k : kKnown)
    if (k.c == o[2] && k.d == o[3] && k.e == o[4]) return &k;
  return nullptr;
}

bool is_equipment_id(const Entry& e) {
  if (!e.is_obis()) return false;
  const uint8_t* o = obis(e);
  return (o[0] == 0 || o[0] == 1) && o[1] == 0 && o[2] == 96 && o[3] == 1 && o[4] == 0;
}

bool printable(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (c < 0x20 || c > 0x7E) return false;
  return true;
}

std::string text_of(const std::string& bytes) { return printable(bytes) ? bytes : hex(bytes); }

// The decimal text of (-)magnitude * 10^exponent ("-105.5", "2324000", "0.0012").
std::string decimal(bool negative, uint64_t magnitude, int exponent) {
  std::string digits = std::to_string(magnitude);
  if (magnitude == 0) negative = false;
  if (exponent >= 0) {
    if (magnitude != 0) digits.append(size_t(exponent), '0');
  } else {
    const size_t frac = size_t(-exponent);
    if (digits.size() <= frac) digits.insert(0, frac - digits.size() + 1, '0');
    digits.insert(digits.size() - frac, ".");
    while (digits.back() == '0') digits.pop_back();
    if (digits.back() == '.') digits.pop_back();
  }
  return negative ? "-" + digits : digits;
}

// Value::number from the exact decimal (the nearest double); Value::exact when a double
// cannot hold the integer part of it exactly.
void set_number(Value& v, const Entry& e, int shift) {
  const int exponent = (e.has_scaler ? e.scaler : 0) + shift;
  const std::string text = decimal(e.negative, e.magnitude, exponent);
  v.number = std::strtod(text.c_str(), nullptr);
  if (e.magnitude > (uint64_t(1) << 53)) v.exact = text;
}

void add_native(const Entry& e, Reading& out) {
  Value v;
  v.native_id = e.obis_text();
  v.name = "sml_" + v.native_id;
  switch (e.kind) {
    case Entry::Kind::number:
      set_number(v, e, 0);
      if (e.has_unit) v.unit = std::string(unit_symbol(e.unit));
      break;
    case Entry::Kind::bytes:
      v.is_text = true;
      v.text = text_of(e.bytes);
      break;
    case Entry::Kind::boolean:
      v.number = e.flag ? 1 : 0;
      break;
    case Entry::Kind::absent:
      return;
  }
  out.values.push_back(std::move(v));
}

const Value* find(const Reading& r, const char* name) { return r.find(name); }

// ns since the epoch of a timestamp (SML sends 32-bit seconds); 0 for a second index or a
// number beyond 32 bits.
int64_t time_ns(const Time& t) {
  if (t.kind != Time::Kind::timestamp || t.seconds > 0xFFFFFFFFu) return 0;
  return int64_t(t.seconds) * 1000000000;
}

// A sum or difference the meter does not send (exact when both parts share the scale).
void derive(Reading& out, const char* name, const char* a, const char* b, bool subtract,
            const char* unit, const char* native) {
  const Value *x = find(out, a), *y = find(out, b);
  if (!x || !y || find(out, name)) return;
  Value v;
  v.name = name;
  v.unit = unit;
  v.native_id = native;
  const double r = subtract ? x->number - y->number : x->number + y->number;
  // round to the finer of the two parts' decimals: 12 significant digits are plenty
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.12g", r);
  v.number = std::strtod(buf, nullptr);
  out.values.push_back(std::move(v));
}

}  // namespace

void to_reading(const File& f, Reading& out, std::vector<std::string>* notes) {
  out.protocol = "sml";
  out.device_id = hex(f.server_id);
  out.meter_time_ns = time_ns(f.act_sensor_time);
  for (const Entry& e : f.entries) {
    if (is_equipment_id(e) && e.kind == Entry::Kind::bytes) {
      Value v;
      v.name = "equipment_id";
      v.native_id = e.obis_text();
      v.is_text = true;
      v.text = text_of(e.bytes);
      out.values.push_back(std::move(v));
      continue;
    }
    const Known* k = find_known(e);
    if (k && e.kind == Entry::Kind::number && (!e.has_unit || e.unit == k->unit)) {
      Value v;
      v.name = k->name;
      v.native_id = e.obis_text();
      v.unit = k->unit_out;
      set_number(v, e, k->shift);
      v.time_ns = time_ns(e.val_time);
      out.values.push_back(std::move(v));
      continue;
    }
    if (k && notes)
      notes->push_back(e.obis_text() + ": unit " + std::to_string(e.unit) +
                       " is not the expected one; kept as sml_" + e.obis_text());
    add_native(e, out);
  }
  derive(out, "energy_import_kwh", "energy_import_t1_kwh", "energy_import_t2_kwh", false, "kWh",
         "1-0:1.8.1+1-0:1.8.2");
  derive(out, "energy_export_kwh", "energy_export_t1_kwh", "energy_export_t2_kwh", false, "kWh",
         "1-0:2.8.1+1-0:2.8.2");
  derive(out, "power_net_w", "power_import_w", "power_export_w", true, "W", "1-0:1.7.0-1-0:2.7.0");
}

}  // namespace mp::sml
