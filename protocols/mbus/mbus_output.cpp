// M-Bus frames as readings (canonical mapping) and as the JSON of `meterpipe decode mbus`.
//
// Canonical mapping (docs/ARCHITECTURE.md "Readings") — only records with function
// instantaneous, storage 0 and subunit 0 are candidates; the first record to claim a name wins.
//
// Electricity meters (medium 0x02):
//   Energy (Wh or J), tariff 0/1/2   -> energy_import_kwh / _t1_kwh / _t2_kwh, in kWh;
//     with the combinable VIFE 0x3C ("backward flow", EN 13757-3 table 15) -> energy_export_*;
//     any other VIFE (manufacturer specific, ...) leaves the record unmapped.
//   Power (W or J/h): a record marked with a phase (see below) -> power_l1_w .. power_l3_w;
//     the first unmarked (or phase 0) record is the meter's total, a signed value:
//     power_net_w = value, power_import_w = max(value, 0), power_export_w = max(-value, 0).
//   Voltage / current: marked with a phase -> voltage_lN_v / current_lN_a; unmarked ones take
//     l1, l2, l3 in the order they come (meters list L1, L2, L3 first).
//   Phase marker: a manufacturer-specific VIFE 0xFF followed by a VIFE 0x00..0x03, as the Saia
//     Burgess ALE3, Finder 7E and EMU Professional send it.
//   frequency_hz: the frequency of the 2013 alternate table (VIF 0xFB, E010 11nn).
// Gas meters (0x03, 0x12, 0x13): Volume -> gas_m3. Water meters (0x06, 0x07, 0x15, 0x16,
// 0x17): Volume -> water_m3. Heat meters (0x04, 0x0C, 0x0D): Energy -> heat_gj. These three
// only from records without any VIFE.
// Every other record: name "mbus_<native id without spaces>" (e.g. "mbus_8C1004"), value in
// the normalised unit, native id "DIF DIFE.. VIF VIFE..".
// Dates and times are the meter's local time: they get a time_ns (and the first date & time
// point of storage 0 becomes meter_time_ns) only when the caller gives the meter's zone.
#include <charconv>
#include <cstdlib>
#include <initializer_list>

#include "common/json.h"
#include "protocols/mbus/mbus.h"
#include "protocols/mbus/mbus_vif.h"

namespace mp::mbus {

std::string decimal_text(int64_t mantissa, int exp10) {
  const bool negative = mantissa < 0;
  const uint64_t magnitude = negative ? 0 - uint64_t(mantissa) : uint64_t(mantissa);
  std::string digits = std::to_string(magnitude);
  if (magnitude != 0 && exp10 > 0) digits.append(size_t(exp10), '0');
  if (exp10 < 0) {
    const size_t frac = size_t(-exp10);
    if (digits.size() <= frac) digits.insert(0, frac + 1 - digits.size(), '0');
    digits.insert(digits.size() - frac, 1, '.');
    while (digits.back() == '0') digits.pop_back();
    if (digits.back() == '.') digits.pop_back();
  }
  return (negative && digits != "0") ? "-" + digits : digits;
}

namespace {

// The exact decimal of a record when the double `value` does not carry it (its shortest
// round-trip text differs), else "".
std::string exact_beyond_double(double value, bool exact, int64_t mantissa, int exp10) {
  if (!exact) return {};
  std::string want = decimal_text(mantissa, exp10);
  char buf[400];
  const auto res = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed);
  if (res.ec == std::errc() && std::string_view(buf, size_t(res.ptr - buf)) == want) return {};
  return want;
}

// -1: no phase marker; 0: total; 1..3: phase.
int phase_of(const Record& r) {
  for (size_t k = 0; k + 1 < r.vife.size(); ++k) {
    if (r.vife[k] == 0xFF && (r.vife[k + 1] & 0x7F) <= 3) return r.vife[k + 1] & 0x7F;
  }
  return -1;
}

size_t first_combinable(const Record& r) { return (r.vif == 0xFD || r.vif == 0xFB) ? 1 : 0; }

bool has_vife(const Record& r, uint8_t code) {
  for (size_t k = first_combinable(r); k < r.vife.size(); ++k)
    if ((r.vife[k] & 0x7F) == code) return true;
  return false;
}

// True when the record has no VIFE other than the listed combinable codes.
bool only_vife(const Record& r, std::initializer_list<uint8_t> allowed) {
  for (size_t k = first_combinable(r); k < r.vife.size(); ++k) {
    bool ok = false;
    for (uint8_t a : allowed) ok = ok || (r.vife[k] & 0x7F) == a;
    if (!ok) return false;
  }
  return true;
}

enum class MeterKind { other, electricity, gas, water, heat };

MeterKind meter_kind(const Frame& f) {
  const uint8_t m = f.header.medium;
  if (f.header.present && f.payload == Payload::variable && m == 0x02)
    return MeterKind::electricity;
  if (m == 0x03 || m == 0x12 || m == 0x13) return MeterKind::gas;
  if (m == 0x06 || m == 0x07 || m == 0x15 || m == 0x16 || m == 0x17) return MeterKind::water;
  if (m == 0x04 || m == 0x0C || m == 0x0D) return MeterKind::heat;
  return MeterKind::other;
}

class ReadingBuilder {
 public:
  ReadingBuilder(mp::Reading& out, MeterKind kind, LocalToUtc to_utc)
      : out_(out), kind_(kind), to_utc_(to_utc) {}

  void record(const Record& r) {
    take_meter_time(r);
    if (is_candidate(r) && map_canonical(r)) return;
    // DIF 0x1F ("more records follow") and an empty 0x0F are framing, not values.
    if ((r.dif == 0x1F || r.dif == 0x0F) && r.kind != ValueKind::number && r.text.empty()) return;
    add_native(r);
  }

 private:
  static bool is_candidate(const Record& r) {
    return r.kind == ValueKind::number && r.normalised &&
           (r.function == Function::instantaneous || r.function == Function::actual) &&
           r.storage == 0 && r.subunit == 0;
  }

  bool map_canonical(const Record& r) {
    const bool energy = r.quantity == "Energy" && (r.unit == "Wh" || r.unit == "J");
    const bool electricity = kind_ == MeterKind::electricity;
    if (electricity && energy && r.tariff <= 2 && only_vife(r, {0x3B, 0x3C})) return energy_kwh(r);
    if (electricity && r.tariff == 0 && r.quantity == "Power" && (r.unit == "W" || r.unit == "J/h"))
      return power_w(r);
    if (electricity && r.tariff == 0 && (r.quantity == "Voltage" || r.quantity == "Current"))
      return voltage_or_current(r);
    if (electricity && r.tariff == 0 && r.quantity == "Frequency" && only_vife(r, {}))
      return add("frequency_hz", r, "Hz", 0);
    if (r.tariff != 0 || !only_vife(r, {})) return false;
    const bool volume = r.quantity == "Volume" && r.unit == "m^3";
    if (kind_ == MeterKind::gas && volume) return add("gas_m3", r, "m3", 0);
    if (kind_ == MeterKind::water && volume) return add("water_m3", r, "m3", 0);
    if (kind_ == MeterKind::heat && energy) {
      if (r.unit == "J") return add("heat_gj", r, "GJ", -9);
      return add_converted("heat_gj", r.value * 3.6e-6, "GJ", r);
    }
    return false;
  }

  bool energy_kwh(const Record& r) {
    std::string name = has_vife(r, 0x3C) ? "energy_export" : "energy_import";
    if (r.tariff == 1) name += "_t1";
    if (r.tariff == 2) name += "_t2";
    name += "_kwh";
    if (r.unit == "Wh") return add(name, r, "kWh", -3);
    return add_converted(name, r.value / 3.6e6, "kWh", r);
  }

  bool power_w(const Record& r) {
    const double watts = r.unit == "W" ? r.value : r.value / 3600.0;
    const int phase = phase_of(r);
    if (phase >= 1) {
      const std::string name = "power_l" + std::to_string(phase) + "_w";
      return r.unit == "W" ? add(name, r, "W", 0) : add_converted(name, watts, "W", r);
    }
    if (claimed("power_net_w")) return false;
    if (r.unit == "W")
      add("power_net_w", r, "W", 0);
    else
      add_converted("power_net_w", watts, "W", r);
    add_converted("power_import_w", watts > 0 ? watts : 0.0, "W", r);
    add_converted("power_export_w", watts < 0 ? -watts : 0.0, "W", r);
    return true;
  }

  bool voltage_or_current(const Record& r) {
    const bool volt = r.quantity == "Voltage";
    int phase = phase_of(r);
    int& next_unmarked = volt ? next_voltage_ : next_current_;
    if (phase < 1 && next_unmarked <= 3) phase = next_unmarked++;
    if (phase < 1) return false;
    const std::string name =
        (volt ? "voltage_l" : "current_l") + std::to_string(phase) + (volt ? "_v" : "_a");
    return add(name, r, volt ? "V" : "A", 0);
  }

  // The meter's clock (its own zone; M-Bus carries no offset): only with the meter's zone.
  void take_meter_time(const Record& r) {
    if (!r.time_valid || r.storage != 0 || r.quantity != "Time point (date & time)") return;
    int64_t utc;
    if (out_.meter_time_ns == 0 && to_utc_ && to_utc_(r.local_seconds, utc))
      out_.meter_time_ns = utc * 1000000000LL;
  }

  bool claimed(std::string_view name) const { return out_.find(name) != nullptr; }

  // A canonical value that is the record's value times 10^exp10_shift.
  bool add(const std::string& name, const Record& r, const char* unit, int exp10_shift) {
    if (claimed(name)) return false;
    mp::Value& v = out_.values.emplace_back();
    v.name = name;
    v.number =
        exp10_shift >= 0 ? r.value * vif::pow10(exp10_shift) : r.value / vif::pow10(-exp10_shift);
    if (exp10_shift != 0 && r.exact) {  // from the exact decimal: no binary rounding twice
      v.number = std::strtod(decimal_text(r.mantissa, r.exp10 + exp10_shift).c_str(), nullptr);
    }
    v.exact = exact_beyond_double(v.number, r.exact, r.mantissa, r.exp10 + exp10_shift);
    v.unit = unit;
    v.native_id = r.native_id;
    return true;
  }

  // A canonical value from a conversion that is not a power of ten (J -> kWh, J/h -> W).
  bool add_converted(const std::string& name, double value, const char* unit, const Record& r) {
    if (claimed(name)) return false;
    mp::Value& v = out_.values.emplace_back();
    v.name = name;
    v.number = value;
    v.unit = unit;
    v.native_id = r.native_id;
    return true;
  }

  void add_native(const Record& r) {
    mp::Value& v = out_.values.emplace_back();
    v.name = "mbus_";
    for (char c : r.native_id)
      if (c != ' ') v.name += c;
    v.native_id = r.native_id;
    v.unit = r.unit == "-" ? "" : r.unit;
    if (r.kind == ValueKind::number) {
      v.number = r.value;
      v.exact = exact_beyond_double(r.value, r.exact, r.mantissa, r.exp10);
    } else {
      v.is_text = true;
      v.text = r.time_invalid ? "invalid" : r.text;
    }
    int64_t utc;
    if (r.time_valid && to_utc_ && to_utc_(r.local_seconds, utc)) v.time_ns = utc * 1000000000LL;
  }

  mp::Reading& out_;
  MeterKind kind_;
  LocalToUtc to_utc_;
  int next_voltage_ = 1, next_current_ = 1;
};

}  // namespace

bool to_reading(const Frame& f, mp::Reading& out, std::string* why, LocalToUtc to_utc) {
  auto fail = [&](const char* reason) {
    if (why) *why = reason;
    return false;
  };
  if (f.payload == Payload::app_error) return fail("the meter reported an application error");
  if (f.type != FrameType::long_frame) return fail("frame carries no user data");
  if (f.payload != Payload::variable && f.payload != Payload::fixed) {
    return fail("frame carries no readings");
  }
  if (f.ci == 0x51) return fail("master-to-slave frame");
  out.protocol = "mbus";
  if (f.header.present) out.device_id = f.header.manufacturer + f.header.id;
  out.values.clear();
  ReadingBuilder builder(out, meter_kind(f), to_utc);
  for (const Record& r : f.records) builder.record(r);
  return true;
}

// ---------------------------------------------------------------------------------------
// JSON

namespace {

class JsonWriter {
 public:
  explicit JsonWriter(std::string& o) : o_(o) {}
  void key(const char* k) {
    if (!first_) o_ += ',';
    first_ = false;
    mp::json::append_string(o_, k);
    o_ += ':';
  }
  void num(const char* k, double v) {
    key(k);
    mp::json::append_number(o_, v);
  }
  void str(const char* k, std::string_view v) {
    key(k);
    mp::json::append_string(o_, v);
  }
  void flag(const char* k, bool v) {
    key(k);
    o_ += v ? "true" : "false";
  }
  std::string& out() { return o_; }

 private:
  std::string& o_;
  bool first_ = true;
};

void record_json(const Record& r, std::string& o) {
  o += '{';
  JsonWriter w(o);
  w.str("id", r.native_id);
  w.num("storage", double(r.storage));
  w.num("tariff", r.tariff);
  w.num("subunit", r.subunit);
  w.str("function", function_name(r.function));
  w.str("quantity", r.quantity);
  w.str("unit", r.unit);
  w.key("value");
  if (r.kind == ValueKind::number) {
    // Exact decimal digits where the double would round (64-bit integers beyond 2^53).
    const std::string exact = exact_beyond_double(r.value, r.exact, r.mantissa, r.exp10);
    if (exact.empty())
      mp::json::append_number(o, r.value);
    else
      o += exact;
  } else if (r.kind == ValueKind::text) {
    mp::json::append_string(o, r.text);
  } else {
    o += "null";
  }
  if (r.time_invalid) w.flag("invalid", true);
  if (r.time_recurring) w.flag("recurring", true);
  if (!r.normalised) w.flag("normalised", false);
  o += '}';
}

void header_json(const Frame& f, JsonWriter& w) {
  if (f.header.present) {
    w.str("id", f.header.id);
    if (f.payload == Payload::variable) {
      w.str("manufacturer", f.header.manufacturer);
      w.num("version", f.header.version);
    }
    w.str("medium", f.header.medium_name);
    w.num("medium_code", f.header.medium);
  }
  if (f.header.present || f.ci == 0x7A) {
    w.num("access_number", f.header.access_number);
    w.num("status", f.header.status);
    if (f.payload == Payload::variable) w.num("signature", f.header.signature);
  }
}

}  // namespace

std::string to_json(const Frame& f) {
  std::string o = "{";
  JsonWriter w(o);
  static constexpr const char* kTypes[] = {"ack", "short", "control", "long"};
  w.str("frame", kTypes[static_cast<int>(f.type)]);
  if (f.type == FrameType::ack) return o + "}";
  w.num("c", f.control);
  w.num("a", f.address);
  if (f.type == FrameType::short_frame) return o + "}";
  w.num("ci", f.ci);
  if (f.payload == Payload::app_error) {
    w.num("application_error", f.app_error);
    w.str("application_error_text", f.app_error_text);
    return o + "}";
  }
  if (f.payload == Payload::none) return o + "}";
  header_json(f, w);
  w.flag("more_records_follow", f.more_records_follow);
  w.key("records");
  o += '[';
  for (size_t i = 0; i < f.records.size(); ++i) {
    if (i) o += ',';
    record_json(f.records[i], o);
  }
  o += "]}";
  return o;
}

}  // namespace mp::mbus
