#include "protocols/dsmr/dsmr.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/utf8.h"

namespace mp::dsmr {

namespace {

// Slicing-by-8 tables: kCrc[0] is the classic byte table, kCrc[k][i] the CRC of byte i followed
// by k zero bytes.
using CrcTables = std::array<std::array<uint16_t, 256>, 8>;
constexpr CrcTables make_crc_tables() {
  CrcTables t{};
  for (unsigned i = 0; i < 256; ++i) {
    uint16_t c = static_cast<uint16_t>(i);
    for (int k = 0; k < 8; ++k) c = (c & 1) ? static_cast<uint16_t>((c >> 1) ^ 0xA001) : c >> 1;
    t[0][i] = c;
  }
  for (unsigned k = 1; k < 8; ++k)
    for (unsigned i = 0; i < 256; ++i)
      t[k][i] = static_cast<uint16_t>((t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF]);
  return t;
}
constexpr CrcTables kCrc = make_crc_tables();

constexpr int64_t kNs = 1000000000;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_val(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Printable, bounded copy of untrusted bytes for an error message.
std::string snippet(std::string_view s) {
  std::string out;
  const size_t limit = 48;
  for (size_t i = 0; i < s.size() && i < limit; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static const char digits[] = "0123456789abcdef";
      out += "\\x";
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  if (s.size() > limit) out += "...";
  return out;
}

// Decimal number as an exact integer mantissa and a count of fraction digits.
struct Decimal {
  uint64_t mantissa = 0;
  int frac = 0;
  bool negative = false;
};

bool parse_decimal(std::string_view s, Decimal& d) {
  d = Decimal{};
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
    d.negative = s[i] == '-';
    ++i;
  }
  bool any = false, dot = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.') {
      if (dot) return false;
      dot = true;
      continue;
    }
    if (!is_digit(c)) return false;
    if (d.mantissa > (UINT64_MAX - 9) / 10) return false;
    d.mantissa = d.mantissa * 10 + static_cast<uint64_t>(c - '0');
    if (dot) ++d.frac;
    any = true;
  }
  return any;
}

constexpr double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                             1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// mantissa * 10^(shift - frac), correctly rounded when the mantissa fits in 53 bits.
double to_double(const Decimal& d, int shift) {
  int e = shift - d.frac;
  double m = static_cast<double>(d.mantissa);
  double v;
  if (e >= 0)
    v = e <= 22 ? m * kPow10[e] : m * std::pow(10.0, e);
  else
    v = -e <= 22 ? m / kPow10[-e] : m / std::pow(10.0, -e);
  return d.negative ? -v : v;
}

// "value*unit" split; unit empty when there is no '*'.
void split_unit(std::string_view g, std::string_view& value, std::string_view& unit) {
  size_t star = g.find('*');
  if (star == std::string_view::npos) {
    value = g;
    unit = {};
  } else {
    value = g.substr(0, star);
    unit = g.substr(star + 1);
  }
}

bool hex_decode(std::string_view s, std::string& out) {
  if (s.size() % 2) return false;
  out.clear();
  out.reserve(s.size() / 2);
  for (size_t i = 0; i < s.size(); i += 2) {
    int hi = hex_val(s[i]), lo = hex_val(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
  }
  return true;
}

bool printable(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c >= 0x7f) return false;
  return true;
}

struct Obis {
  unsigned a = 0, b = 0, c = 0, d = 0, e = 0;
  bool plain = true;  // no F group, or F == 255
  uint64_t key() const {
    return (uint64_t(a) << 32) | (uint64_t(b) << 24) | (uint64_t(c) << 16) | (uint64_t(d) << 8) |
           uint64_t(e);
  }
};

constexpr uint64_t K(unsigned a, unsigned b, unsigned c, unsigned d, unsigned e) {
  return (uint64_t(a) << 32) | (uint64_t(b) << 24) | (uint64_t(c) << 16) | (uint64_t(d) << 8) |
         uint64_t(e);
}

bool parse_group_num(std::string_view s, size_t& i, unsigned& v) {
  size_t start = i;
  v = 0;
  while (i < s.size() && is_digit(s[i]) && i - start < 3) v = v * 10 + unsigned(s[i++] - '0');
  return i > start && v <= 255;
}

// "A-B:C.D.E" with an optional "*F".
bool parse_obis(std::string_view s, Obis& o) {
  size_t i = 0;
  unsigned f = 255;
  if (!parse_group_num(s, i, o.a) || i >= s.size() || s[i++] != '-') return false;
  if (!parse_group_num(s, i, o.b) || i >= s.size() || s[i++] != ':') return false;
  if (!parse_group_num(s, i, o.c) || i >= s.size() || s[i++] != '.') return false;
  if (!parse_group_num(s, i, o.d) || i >= s.size() || s[i++] != '.') return false;
  if (!parse_group_num(s, i, o.e)) return false;
  if (i < s.size()) {
    if (s[i++] != '*' || !parse_group_num(s, i, f)) return false;
  }
  o.plain = f == 255;
  return i == s.size();
}

enum class Kind : uint8_t {
  energy,      // kWh (Wh, MWh converted)
  power,       // W (kW, MW converted)
  voltage,     // V
  current,     // A
  frequency,   // Hz
  factor,      // no unit
  count,       // plain number, no unit (tariff, counters)
  meter_time,  // 0-0:1.0.0
  demand_max,  // (ts)(value*kW)
  equipment,   // equipment id: text as sent, also reading.device_id
  hex_text,    // hex encoded text
  text,        // text as sent (single group)
  groups,      // every value group kept as raw text
};

struct Known {
  uint64_t key;
  const char* name;
  Kind kind;
};

constexpr Known kKnown[] = {
    {K(1, 0, 1, 8, 0), "energy_import_kwh", Kind::energy},
    {K(1, 0, 1, 8, 1), "energy_import_t1_kwh", Kind::energy},
    {K(1, 0, 1, 8, 2), "energy_import_t2_kwh", Kind::energy},
    {K(1, 0, 2, 8, 0), "energy_export_kwh", Kind::energy},
    {K(1, 0, 2, 8, 1), "energy_export_t1_kwh", Kind::energy},
    {K(1, 0, 2, 8, 2), "energy_export_t2_kwh", Kind::energy},
    {K(1, 0, 1, 7, 0), "power_import_w", Kind::power},
    {K(1, 0, 2, 7, 0), "power_export_w", Kind::power},
    {K(1, 0, 21, 7, 0), "power_l1_w", Kind::power},
    {K(1, 0, 41, 7, 0), "power_l2_w", Kind::power},
    {K(1, 0, 61, 7, 0), "power_l3_w", Kind::power},
    {K(1, 0, 22, 7, 0), "power_export_l1_w", Kind::power},
    {K(1, 0, 42, 7, 0), "power_export_l2_w", Kind::power},
    {K(1, 0, 62, 7, 0), "power_export_l3_w", Kind::power},
    {K(1, 0, 32, 7, 0), "voltage_l1_v", Kind::voltage},
    {K(1, 0, 52, 7, 0), "voltage_l2_v", Kind::voltage},
    {K(1, 0, 72, 7, 0), "voltage_l3_v", Kind::voltage},
    {K(1, 0, 31, 7, 0), "current_l1_a", Kind::current},
    {K(1, 0, 51, 7, 0), "current_l2_a", Kind::current},
    {K(1, 0, 71, 7, 0), "current_l3_a", Kind::current},
    {K(1, 0, 14, 7, 0), "frequency_hz", Kind::frequency},
    {K(1, 0, 13, 7, 0), "power_factor", Kind::factor},
    {K(1, 0, 33, 7, 0), "power_factor_l1", Kind::factor},
    {K(1, 0, 53, 7, 0), "power_factor_l2", Kind::factor},
    {K(1, 0, 73, 7, 0), "power_factor_l3", Kind::factor},
    {K(0, 0, 96, 14, 0), "tariff", Kind::count},
    {K(1, 0, 1, 4, 0), "demand_avg_w", Kind::power},
    {K(1, 0, 1, 6, 0), "demand_max_month_w", Kind::demand_max},
    {K(0, 0, 96, 7, 21), "power_failures", Kind::count},
    {K(0, 0, 96, 7, 9), "long_power_failures", Kind::count},
    {K(1, 0, 32, 32, 0), "voltage_sags_l1", Kind::count},
    {K(1, 0, 52, 32, 0), "voltage_sags_l2", Kind::count},
    {K(1, 0, 72, 32, 0), "voltage_sags_l3", Kind::count},
    {K(1, 0, 32, 36, 0), "voltage_swells_l1", Kind::count},
    {K(1, 0, 52, 36, 0), "voltage_swells_l2", Kind::count},
    {K(1, 0, 72, 36, 0), "voltage_swells_l3", Kind::count},
    {K(0, 0, 1, 0, 0), "", Kind::meter_time},
    {K(0, 0, 96, 1, 1), "equipment_id", Kind::equipment},
    {K(0, 0, 96, 1, 0), "equipment_id", Kind::equipment},
    {K(0, 0, 96, 13, 0), "text_message", Kind::hex_text},
    {K(0, 0, 96, 13, 1), "text_message_code", Kind::text},
    {K(1, 3, 0, 2, 8), "dsmr_version", Kind::text},
    {K(1, 0, 99, 97, 0), "power_failure_log", Kind::groups},
    {K(0, 0, 98, 1, 0), "demand_max_history", Kind::groups},
};

constexpr size_t kKnownCount = sizeof kKnown / sizeof kKnown[0];
constexpr std::array<Known, kKnownCount> sorted_known() {
  std::array<Known, kKnownCount> a{};
  for (size_t i = 0; i < kKnownCount; ++i) a[i] = kKnown[i];
  std::sort(a.begin(), a.end(), [](const Known& x, const Known& y) { return x.key < y.key; });
  return a;
}
constexpr std::array<Known, kKnownCount> kKnownSorted = sorted_known();

const Known* find_known(uint64_t key) {
  auto it = std::lower_bound(kKnownSorted.begin(), kKnownSorted.end(), key,
                             [](const Known& k, uint64_t v) { return k.key < v; });
  return it != kKnownSorted.end() && it->key == key ? &*it : nullptr;
}

// Decimal exponent shift that converts `unit` to the canonical unit of `kind`; false when the
// unit does not fit.
bool unit_shift(Kind kind, std::string_view unit, int& shift, const char*& canonical) {
  shift = 0;
  switch (kind) {
    case Kind::energy:
      canonical = "kWh";
      if (unit == "kWh") return true;
      if (unit == "Wh") return shift = -3, true;
      if (unit == "MWh") return shift = 3, true;
      return false;
    case Kind::power:
    case Kind::demand_max:
      canonical = "W";
      if (unit == "W") return true;
      if (unit == "kW") return shift = 3, true;
      if (unit == "MW") return shift = 6, true;
      return false;
    case Kind::voltage:
      canonical = "V";
      return unit == "V";
    case Kind::current:
      canonical = "A";
      return unit == "A";
    case Kind::frequency:
      canonical = "Hz";
      return unit == "Hz";
    case Kind::factor:
    case Kind::count:
      canonical = "";
      return unit.empty();
    default:
      canonical = "";
      return false;
  }
}

constexpr size_t kMaxGroups = 128;

// One data line "OBIS(group)(group)...": the OBIS text and its value groups.
struct Line {
  std::string_view obis_text;
  std::string_view raw_groups;  // "(…)(…)" as sent
  std::array<std::string_view, kMaxGroups> groups;
  size_t group_count = 0;
};

enum class MbusKind { none, gas, water, heat };

struct MbusValue {
  size_t index;  // into reading.values
  unsigned channel;
};

// The exact decimal behind a value: mantissa * 10^(shift - frac), sign apart.
struct ExactPart {
  Decimal decimal;
  int shift = 0;
};

// Text taken from the telegram as sent: UTF-8 when it is, else read as ISO 8859-1 (IEC
// 62056-21 texts are ISO 646; a byte above 0x7F is outside it, and proto3/JSON need UTF-8).
std::string sent_text(std::string_view s) { return utf8::or_latin1(s); }

// Exact sum of decimal parts (each with its sign, `negate` flips the second): the decimal
// text and the nearest double. False on overflow (then the caller adds in binary).
bool exact_sum(const ExactPart& a, const ExactPart& b, bool negate, double& value,
               std::string& exact) {
  const int ea = a.shift - a.decimal.frac, eb = b.shift - b.decimal.frac;
  const int e = std::min(ea, eb);
  if (ea - e > 18 || eb - e > 18) return false;
#ifdef __SIZEOF_INT128__
  __int128 ma = a.decimal.mantissa, mb = b.decimal.mantissa;
  for (int i = e; i < ea; ++i) ma *= 10;
  for (int i = e; i < eb; ++i) mb *= 10;
  if (a.decimal.negative) ma = -ma;
  if (b.decimal.negative != negate) mb = -mb;
  __int128 sum = ma + mb;
#else
  // 32-bit targets (armhf) have no __int128: 64 bits, false (the binary sum) when too few
  int64_t ma = 0, mb = 0, sum = 0;
  if (__builtin_add_overflow(a.decimal.mantissa, 0, &ma) ||
      __builtin_add_overflow(b.decimal.mantissa, 0, &mb))
    return false;
  for (int i = e; i < ea; ++i)
    if (__builtin_mul_overflow(ma, 10, &ma)) return false;
  for (int i = e; i < eb; ++i)
    if (__builtin_mul_overflow(mb, 10, &mb)) return false;
  if (a.decimal.negative) ma = -ma;
  if (b.decimal.negative != negate) mb = -mb;
  if (__builtin_add_overflow(ma, mb, &sum) || sum == INT64_MIN) return false;
#endif
  const bool negative = sum < 0;
  if (negative) sum = -sum;
  std::string digits;
  do {
    digits.insert(digits.begin(), char('0' + int(sum % 10)));
    sum /= 10;
  } while (sum > 0);
  if (e > 0) digits.append(size_t(e), '0');
  if (e < 0) {
    const size_t frac = size_t(-e);
    if (digits.size() <= frac) digits.insert(0, frac + 1 - digits.size(), '0');
    digits.insert(digits.size() - frac, 1, '.');
    while (digits.back() == '0') digits.pop_back();
    if (digits.back() == '.') digits.pop_back();
  }
  if (negative && digits != "0") digits.insert(digits.begin(), '-');
  value = std::strtod(digits.c_str(), nullptr);
  char buf[400];
  const auto res = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed);
  const bool carried =
      res.ec == std::errc() && std::string_view(buf, size_t(res.ptr - buf)) == digits;
  exact = carried ? std::string() : digits;
  return true;
}

class Decoder {
 public:
  explicit Decoder(Result& out) : out_(out), values_(out.reading.values) {}

  void line(std::string_view text, size_t line_no);
  void finish();

 private:
  void error(size_t line_no, std::string_view what, std::string_view detail = {}) {
    std::string msg = "line " + std::to_string(line_no) + ": " + std::string(what);
    if (!detail.empty()) msg += " '" + snippet(detail) + "'";
    out_.errors.push_back(std::move(msg));
  }
  Value& add(std::string_view name, std::string_view native) {
    Value& v = values_.emplace_back();
    v.name = name;
    v.native_id = native;
    return v;
  }
  Value& add_text(std::string_view name, std::string_view native, std::string_view text) {
    Value& v = add(name, native);
    v.is_text = true;
    v.text = sent_text(text);
    return v;
  }
  bool claimed(std::string_view name) const {
    for (const Value& v : values_)
      if (v.name == name) return true;
    return false;
  }

  // Phases of a line.
  void legacy_value_line(std::string_view text, size_t line_no);
  bool split_groups(std::string_view text, size_t line_no, Obis& obis);
  bool mbus_channel_line(const Obis& o, std::string_view native, size_t line_no);
  void known_line(const Known& k, const Obis& o, std::string_view native, size_t line_no);
  void equipment_line(const Known& k, const Obis& o, std::string_view native);
  void hex_text_line(const Known& k, std::string_view native);

  // Values.
  void add_unknown(std::string_view native, const Line& l);
  void add_number(const Known& k, std::string_view native, std::string_view group, size_t line_no,
                  const Line& l, int64_t time_ns);
  void add_mbus(unsigned channel, std::string_view native, std::string_view value,
                std::string_view unit, int64_t time_ns, size_t line_no);
  void remember_slot(uint64_t key, const Decimal& d, int shift);

  // Derived values at the end.
  void name_mbus_channels();
  void add_derived();
  bool derive(const char* name, int a, int b, bool subtract, const char* unit, const char* native);

  Result& out_;
  std::vector<Value>& values_;
  std::array<int16_t, 256> mbus_type_;
  bool mbus_type_init_ = false;
  std::vector<MbusValue> mbus_;
  // DSMR 2.2/3 "0-n:24.3.0(ts)(..)(..)(..)(obis)(unit)" waits for its value line "(v)".
  bool legacy_pending_ = false;
  unsigned legacy_channel_ = 0;
  int64_t legacy_time_ = 0;
  std::string legacy_native_;
  std::string legacy_unit_;
  bool have_device_from_96_1_1_ = false;
  Line line_;  // reused: its group array is large
  enum Slot { kImpW, kExpW, kImpT1, kImpT2, kExpT1, kExpT2, kImpTot, kExpTot, kSlots };
  int slot_[kSlots] = {-1, -1, -1, -1, -1, -1, -1, -1};  // index in values_ of the last one
  ExactPart slot_exact_[kSlots];                         // its exact decimal
};

void Decoder::add_unknown(std::string_view native, const Line& l) {
  std::string name = "dsmr_";
  name += native;
  if (l.group_count == 1) {
    std::string_view num, unit;
    split_unit(l.groups[0], num, unit);
    Decimal d;
    if (!unit.empty() && parse_decimal(num, d)) {
      Value& v = add(name, native);
      v.number = to_double(d, 0);
      v.unit = sent_text(unit);
      return;
    }
    add_text(name, native, l.groups[0]);
    return;
  }
  add_text(name, native, l.raw_groups);
}

void Decoder::add_number(const Known& k, std::string_view native, std::string_view group,
                         size_t line_no, const Line& l, int64_t time_ns) {
  std::string_view num, unit;
  split_unit(group, num, unit);
  Decimal d;
  if (!parse_decimal(num, d)) {
    error(line_no, std::string(native) + ": not a number", group);
    add_unknown(native, l);
    return;
  }
  int shift;
  const char* canonical;
  if (!unit_shift(k.kind, unit, shift, canonical)) {
    error(line_no, std::string(native) + ": unexpected unit", unit.empty() ? "(none)" : unit);
    add_unknown(native, l);
    return;
  }
  Value& v = add(k.name, native);
  v.number = to_double(d, shift);
  v.unit = canonical;
  v.time_ns = time_ns;
  remember_slot(k.key, d, shift);
}

// The values that derived values are made of: the index of the last one, and its decimal.
void Decoder::remember_slot(uint64_t key, const Decimal& d, int shift) {
  int slot = -1;
  switch (key) {
    case K(1, 0, 1, 7, 0):
      slot = kImpW;
      break;
    case K(1, 0, 2, 7, 0):
      slot = kExpW;
      break;
    case K(1, 0, 1, 8, 1):
      slot = kImpT1;
      break;
    case K(1, 0, 1, 8, 2):
      slot = kImpT2;
      break;
    case K(1, 0, 2, 8, 1):
      slot = kExpT1;
      break;
    case K(1, 0, 2, 8, 2):
      slot = kExpT2;
      break;
    case K(1, 0, 1, 8, 0):
      slot = kImpTot;
      break;
    case K(1, 0, 2, 8, 0):
      slot = kExpTot;
      break;
    default:
      return;
  }
  slot_[slot] = static_cast<int>(values_.size() - 1);
  slot_exact_[slot] = ExactPart{d, shift};
}

void Decoder::add_mbus(unsigned channel, std::string_view native, std::string_view value,
                       std::string_view unit, int64_t time_ns, size_t line_no) {
  Decimal d;
  std::string name = "dsmr_";
  name += native;
  if (!parse_decimal(value, d)) {
    error(line_no, std::string(native) + ": not a number", value.empty() ? "(empty)" : value);
    Value& v = add_text(name, native, value);
    v.time_ns = time_ns;
    v.unit = sent_text(unit);
    return;
  }
  Value& v = add(name, native);
  v.time_ns = time_ns;
  v.number = to_double(d, 0);
  v.unit = sent_text(unit);
  mbus_.push_back({values_.size() - 1, channel});
}

// "(value)" on its own line: the value of a DSMR 2.2/3 gas line before it.
void Decoder::legacy_value_line(std::string_view text, size_t line_no) {
  if (!legacy_pending_) {
    error(line_no, "value line without an object", text);
    return;
  }
  legacy_pending_ = false;
  std::string_view body = text;
  while (!body.empty() && (body.back() == ' ' || body.back() == '\t')) body.remove_suffix(1);
  if (body.size() < 2 || body.back() != ')' ||
      body.substr(1, body.size() - 2).find_first_of("()") != std::string_view::npos) {
    error(line_no, legacy_native_ + ": bad value line", text);
    return;
  }
  std::string_view num, unit;
  split_unit(body.substr(1, body.size() - 2), num, unit);
  if (unit.empty()) unit = legacy_unit_;
  add_mbus(legacy_channel_, legacy_native_, num, unit, legacy_time_, line_no);
}

// Splits "OBIS(g1)(g2)..." into line_ and parses the OBIS code; false (reported) when the
// line is malformed.
bool Decoder::split_groups(std::string_view text, size_t line_no, Obis& obis) {
  Line& l = line_;
  l.group_count = 0;
  const size_t open = text.find('(');
  if (open == std::string_view::npos) {
    error(line_no, "no value in line", text);
    return false;
  }
  l.obis_text = text.substr(0, open);
  if (!parse_obis(l.obis_text, obis)) {
    error(line_no, "bad OBIS code", text);
    return false;
  }
  size_t end = text.size();
  while (end > open && (text[end - 1] == ' ' || text[end - 1] == '\t')) --end;
  l.raw_groups = text.substr(open, end - open);
  size_t i = open;
  while (i < end) {
    if (text[i] != '(') {
      error(line_no, "bad value groups", text);
      return false;
    }
    size_t close = i + 1;
    while (close < end && text[close] != ')' && text[close] != '(') ++close;
    if (close >= end || text[close] != ')') {
      error(line_no, "unbalanced parentheses", text);
      return false;
    }
    if (l.group_count == kMaxGroups) {
      error(line_no, "too many value groups", text);
      return false;
    }
    l.groups[l.group_count++] = text.substr(i + 1, close - i - 1);
    i = close + 1;
  }
  return true;
}

// M-Bus channels 0-n:24.x.x; true when the line was one of them.
bool Decoder::mbus_channel_line(const Obis& o, std::string_view native, size_t line_no) {
  const Line& l = line_;
  if (o.a != 0 || o.b < 1 || o.c != 24) return false;
  if (o.d == 1 && o.e == 0 && l.group_count == 1) {  // device type
    Decimal d;
    if (parse_decimal(l.groups[0], d) && d.frac == 0 && d.mantissa < 256) {
      if (!mbus_type_init_) {
        mbus_type_.fill(-1);
        mbus_type_init_ = true;
      }
      mbus_type_[o.b] = static_cast<int16_t>(d.mantissa);
    }
    add_unknown(native, l);
    return true;
  }
  const bool one_or_two = l.group_count == 1 || l.group_count == 2;
  if (o.d == 2 && (o.e == 1 || o.e == 3) && one_or_two) {
    int64_t ts = 0;
    if (l.group_count == 2 && !parse_timestamp(l.groups[0], ts)) {
      error(line_no, std::string(native) + ": bad timestamp", l.groups[0]);
      ts = 0;
    }
    std::string_view num, unit;
    split_unit(l.groups[l.group_count - 1], num, unit);
    add_mbus(o.b, native, num, unit, ts, line_no);
    return true;
  }
  if (o.d == 3 && o.e == 0 && l.group_count >= 2) {  // DSMR 2.2/3 gas, value on the next line
    int64_t ts = 0;
    if (!parse_timestamp(l.groups[0], ts)) {
      error(line_no, std::string(native) + ": bad timestamp", l.groups[0]);
      ts = 0;
    }
    legacy_pending_ = true;
    legacy_channel_ = o.b;
    legacy_time_ = ts;
    legacy_native_ = native;
    legacy_unit_ = l.groups[l.group_count - 1];
    return true;
  }
  return false;
}

void Decoder::equipment_line(const Known& k, const Obis& o, std::string_view native) {
  const std::string_view id = line_.groups[0];
  add_text(k.name, native, id);
  const bool primary = o.e == 1;
  if (out_.reading.device_id.empty() || (primary && !have_device_from_96_1_1_)) {
    std::string decoded;
    if (hex_decode(id, decoded) && !decoded.empty() && printable(decoded))
      out_.reading.device_id = std::move(decoded);
    else
      out_.reading.device_id = sent_text(id);
    if (primary) have_device_from_96_1_1_ = true;
  }
}

// A hex-coded text (0-0:96.13.0): the decoded text when it is UTF-8 text; otherwise (bytes
// that are no text, such as a message of 0xFF bytes) the hex digits as sent.
void Decoder::hex_text_line(const Known& k, std::string_view native) {
  const std::string_view sent = line_.groups[0];
  Value& v = add_text(k.name, native, sent);
  std::string decoded;
  if (hex_decode(sent, decoded) && utf8::valid(decoded)) v.text = std::move(decoded);
}

void Decoder::known_line(const Known& k, const Obis& o, std::string_view native, size_t line_no) {
  const Line& l = line_;
  const bool one = l.group_count == 1;
  switch (k.kind) {
    case Kind::meter_time: {
      int64_t ts;
      if (one && parse_timestamp(l.groups[0], ts)) {
        out_.reading.meter_time_ns = ts;
      } else {
        error(line_no, "0-0:1.0.0: bad timestamp", l.raw_groups);
      }
      return;
    }
    case Kind::demand_max: {
      int64_t ts = 0;
      if (l.group_count != 2 || !parse_timestamp(l.groups[0], ts)) {
        error(line_no, std::string(native) + ": expected (timestamp)(value*unit)", l.raw_groups);
        add_unknown(native, l);
        return;
      }
      add_number(k, native, l.groups[1], line_no, l, ts);
      return;
    }
    case Kind::equipment:
      if (!one) break;
      equipment_line(k, o, native);
      return;
    case Kind::hex_text:
      if (!one) break;
      hex_text_line(k, native);
      return;
    case Kind::text:
      if (!one) break;
      add_text(k.name, native, l.groups[0]);
      return;
    case Kind::groups:
      add_text(k.name, native, l.raw_groups);
      return;
    default:
      if (!one) break;
      add_number(k, native, l.groups[0], line_no, l, 0);
      return;
  }
  error(line_no, std::string(native) + ": unexpected number of value groups", l.raw_groups);
  add_unknown(native, l);
}

void Decoder::line(std::string_view text, size_t line_no) {
  if (!text.empty() && text[0] == '(') {
    legacy_value_line(text, line_no);
    return;
  }
  if (legacy_pending_) {
    error(line_no - 1, legacy_native_ + ": value line missing");
    legacy_pending_ = false;
  }
  Obis o;
  if (!split_groups(text, line_no, o)) return;
  // Native id: the code as sent, without a default "*255" suffix.
  std::string_view native = line_.obis_text;
  if (o.plain && native.size() > 4 && native.substr(native.size() - 4) == "*255")
    native.remove_suffix(4);
  if (!o.plain) {
    add_unknown(native, line_);
    return;
  }
  if (mbus_channel_line(o, native, line_no)) return;
  // Electricity codes of channel 1 ("1-1:", Swiss Sagemcom XT211) mean what the channel-less
  // "1-0:" codes mean (IEC 62056-61: B is the channel; DSMR uses 0).
  Obis lookup = o;
  if (o.a == 1 && o.b == 1) lookup.b = 0;
  const Known* k = find_known(lookup.key());
  if (!k || (lookup.b != o.b && claimed(k->name))) {  // both 1-0: and 1-1: sent: kept apart
    add_unknown(native, line_);
    return;
  }
  known_line(*k, o, native, line_no);
}

void Decoder::finish() {
  if (legacy_pending_) {
    out_.errors.push_back(legacy_native_ + ": value line missing before end of telegram");
    legacy_pending_ = false;
  }
  name_mbus_channels();
  add_derived();
}

// Names the M-Bus channel values from their device type or unit.
void Decoder::name_mbus_channels() {
  int counts[4] = {0, 0, 0, 0};
  for (const MbusValue& m : mbus_) {
    Value& v = values_[m.index];
    int type = mbus_type_init_ ? mbus_type_[m.channel] : -1;
    MbusKind kind = MbusKind::none;
    if (type == 3 || (type < 0 && v.unit == "m3"))
      kind = v.unit == "m3" ? MbusKind::gas : MbusKind::none;
    else if (type == 7)
      kind = v.unit == "m3" ? MbusKind::water : MbusKind::none;
    else if (type == 4 || type == 12 || (type < 0 && v.unit == "GJ"))
      kind = v.unit == "GJ" ? MbusKind::heat : MbusKind::none;
    if (kind == MbusKind::none) continue;
    int n = ++counts[static_cast<int>(kind)];
    const char* base = kind == MbusKind::gas ? "gas" : kind == MbusKind::water ? "water" : "heat";
    const char* suffix = kind == MbusKind::heat ? "_gj" : "_m3";
    v.name = base;
    if (n > 1) v.name += "_" + std::to_string(n);
    v.name += suffix;
  }
}

// `name` = slot a + slot b (or a - b), from their exact decimals; false when a part is absent.
bool Decoder::derive(const char* name, int a, int b, bool subtract, const char* unit,
                     const char* native) {
  if (slot_[a] < 0 || slot_[b] < 0) return false;
  Value v;
  v.name = name;
  v.unit = unit;
  v.native_id = native;
  if (!exact_sum(slot_exact_[a], slot_exact_[b], subtract, v.number, v.exact)) {
    const double x = values_[size_t(slot_[a])].number, y = values_[size_t(slot_[b])].number;
    v.number = subtract ? x - y : x + y;
  }
  values_.push_back(std::move(v));
  return true;
}

// Sums the meter does not send: total energy over the tariffs, net power. Decimal exact (the
// double is the nearest one to the exact sum).
void Decoder::add_derived() {
  if (slot_[kImpTot] < 0) {
    derive("energy_import_kwh", kImpT1, kImpT2, false, "kWh", "1-0:1.8.1+1-0:1.8.2");
  }
  if (slot_[kExpTot] < 0) {
    derive("energy_export_kwh", kExpT1, kExpT2, false, "kWh", "1-0:2.8.1+1-0:2.8.2");
  }
  derive("power_net_w", kImpW, kExpW, true, "W", "1-0:1.7.0-1-0:2.7.0");
}

}  // namespace

uint16_t crc16(std::string_view data) {
  uint16_t crc = 0;
  auto p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  for (; n >= 8; n -= 8, p += 8) {
    crc = static_cast<uint16_t>(kCrc[7][(p[0] ^ crc) & 0xFF] ^ kCrc[6][(p[1] ^ (crc >> 8)) & 0xFF] ^
                                kCrc[5][p[2]] ^ kCrc[4][p[3]] ^ kCrc[3][p[4]] ^ kCrc[2][p[5]] ^
                                kCrc[1][p[6]] ^ kCrc[0][p[7]]);
  }
  for (; n > 0; --n, ++p) crc = static_cast<uint16_t>((crc >> 8) ^ kCrc[0][(crc ^ *p) & 0xFF]);
  return crc;
}

namespace {

int64_t last_sunday_utc_1am(int64_t year, unsigned month) {
  int64_t d31 = days_from_civil(year, month, 31);
  int64_t weekday = ((d31 % 7) + 7 + 4) % 7;  // 0 = Sunday; 1970-01-01 was a Thursday
  return (d31 - weekday) * 86400 + 3600;
}

int64_t year_of(int64_t unix_seconds) { return civil_year(unix_seconds); }

}  // namespace

bool eu_summer_time(int64_t t) {
  int64_t y = year_of(t);
  return t >= last_sunday_utc_1am(y, 3) && t < last_sunday_utc_1am(y, 10);
}

bool parse_timestamp(std::string_view s, int64_t& unix_ns) {
  if (s.size() != 12 && s.size() != 13) return false;
  int f[6];
  for (int i = 0; i < 6; ++i) {
    if (!is_digit(s[2 * i]) || !is_digit(s[2 * i + 1])) return false;
    f[i] = (s[2 * i] - '0') * 10 + (s[2 * i + 1] - '0');
  }
  int year = f[0] < 69 ? 2000 + f[0] : 1900 + f[0];  // as strptime's %y
  unsigned month = unsigned(f[1]), day = unsigned(f[2]);
  if (month < 1 || month > 12 || day < 1) return false;
  static const unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  unsigned dim = kDays[month - 1];
  if (month == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) dim = 29;
  if (day > dim || f[3] > 23 || f[4] > 59 || f[5] > 59) return false;
  int64_t local = days_from_civil(year, month, day) * 86400 + f[3] * 3600 + f[4] * 60 + f[5];
  int64_t utc;
  if (s.size() == 13) {
    if (s[12] == 'W' || s[12] == 'w')
      utc = local - 3600;
    else if (s[12] == 'S' || s[12] == 's')
      utc = local - 7200;
    else
      return false;
  } else {
    utc = eu_summer_time(local - 7200) ? local - 7200 : local - 3600;
  }
  unix_ns = utc * kNs;
  return true;
}

namespace {

// Where the parts of a telegram are: '/' .. end of the header line, the '!' of the end line.
struct Frame {
  size_t start = 0;  // the '/'
  size_t body = 0;   // first byte after the header line
  size_t bang = 0;   // the '!'
};

bool is_leading_blank(char c) {
  return c == ' ' || c == '\r' || c == '\n' || c == '\t' || c == '\0';
}

// The header line "/XXX5..." (after leading blanks); false (reported) when there is none.
bool find_header(std::string_view t, Result& out, Frame& f) {
  size_t start = 0;
  while (start < t.size() && is_leading_blank(t[start])) ++start;
  if (start >= t.size()) {
    out.errors.push_back("empty telegram");
    return false;
  }
  if (t[start] != '/') {
    out.errors.push_back("missing header: telegram does not start with '/' but '" +
                         snippet(t.substr(start, 16)) + "'");
    return false;
  }
  const size_t eol = t.find('\n', start);
  if (eol == std::string_view::npos) {
    out.errors.push_back("missing end: telegram ends inside its header line");
    return false;
  }
  std::string_view header = t.substr(start, eol - start);
  if (!header.empty() && header.back() == '\r') header.remove_suffix(1);
  if (header.size() < 4) {
    out.errors.push_back("bad header line '" + snippet(header) + "'");
    return false;
  }
  out.header = sent_text(header);
  f.start = start;
  f.body = eol + 1;
  return true;
}

// The end: the first line that starts with '!'.
bool find_end(std::string_view t, Result& out, Frame& f) {
  size_t pos = f.body;
  while (pos < t.size()) {
    if (t[pos] == '!') {
      f.bang = pos;
      return true;
    }
    const size_t nl = t.find('\n', pos);
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  out.errors.push_back("missing end: no '!' line (telegram truncated?)");
  return false;
}

// The CRC digits after '!' (none: DSMR 2.2/3); false (reported) when damaged or wrong.
bool check_crc(std::string_view t, Result& out, const Frame& f) {
  size_t ce = f.bang + 1;
  while (ce < t.size() && t[ce] != '\r' && t[ce] != '\n') ++ce;
  std::string_view crc_field = t.substr(f.bang + 1, ce - f.bang - 1);
  while (!crc_field.empty() && (crc_field.back() == ' ' || crc_field.back() == '\t'))
    crc_field.remove_suffix(1);
  if (crc_field.empty() && ce >= t.size()) {
    out.errors.push_back("missing end: nothing after '!' (telegram truncated?)");
    return false;
  }
  if (crc_field.empty()) return true;
  unsigned want = 0;
  bool ok = crc_field.size() <= 4;
  for (char c : crc_field) {
    const int h = hex_val(c);
    if (h < 0) ok = false;
    want = want * 16 + unsigned(h < 0 ? 0 : h);
  }
  if (!ok) {
    out.errors.push_back("bad crc field after '!': '" + snippet(crc_field) + "'");
    return false;
  }
  out.crc_present = true;
  const uint16_t got = crc16(t.substr(f.start, f.bang + 1 - f.start));
  if (got != want) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "crc mismatch: telegram says 0x%04X, computed 0x%04X", want,
                  got);
    out.errors.push_back(buf);
    return false;
  }
  out.crc_ok = true;
  return true;
}

// Every data line between the header and the '!'.
void decode_lines(std::string_view t, Result& out, const Frame& f) {
  out.reading.values.reserve(48);
  Decoder dec(out);
  size_t line_no = 2;
  size_t pos = f.body;
  while (pos < f.bang) {
    size_t nl = t.find('\n', pos);
    if (nl == std::string_view::npos || nl > f.bang) nl = f.bang;
    std::string_view line = t.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) dec.line(line, line_no);
    ++line_no;
    pos = nl + 1;
  }
  dec.finish();
}

}  // namespace

bool decode(std::string_view t, Result& out) {
  out.crc_present = false;
  out.crc_ok = false;
  out.header.clear();
  out.errors.clear();
  out.reading = mp::Reading{};
  out.reading.protocol = "dsmr";
  Frame f;
  if (!find_header(t, out, f) || !find_end(t, out, f) || !check_crc(t, out, f)) return false;
  decode_lines(t, out, f);
  return true;
}

}  // namespace mp::dsmr
