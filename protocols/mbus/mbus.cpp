// M-Bus decoder, see mbus.h. Written from EN 13757-2/-3 and from the behaviour of libmbus's
// normalised XML output (the project must match it on libmbus's test corpus).
#include "protocols/mbus/mbus.h"


#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "common/civil.h"
#include "common/json.h"
#include "protocols/mbus/mbus_vif.h"

namespace mp::mbus {
namespace {

constexpr uint8_t kAck = 0xE5;
constexpr uint8_t kShortStart = 0x10;
constexpr uint8_t kLongStart = 0x68;
constexpr uint8_t kStop = 0x16;
constexpr size_t kMaxDife = 10;  // EN 13757-3: at most 10 DIFE
constexpr size_t kMaxVife = 10;  // EN 13757-3: at most 10 VIFE
constexpr size_t kMaxCustomVif = 128;

std::string hex2(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02X", v & 0xFFu);
  return buf;
}

// Powers of ten as literals (the exact doubles libmbus multiplies with).
// ---------------------------------------------------------------------------------------
// Data field decoding.

int64_t le_signed(std::span<const uint8_t> d) {
  uint64_t v = 0;
  for (size_t i = d.size(); i > 0; --i) v = (v << 8) | d[i - 1];
  const unsigned bits = unsigned(d.size() * 8);
  if (bits > 0 && bits < 64 && (v >> (bits - 1)) & 1) v |= ~uint64_t{0} << bits;
  return static_cast<int64_t>(v);
}

// BCD, LSB first. Like libmbus: a high nibble >= 0xA counts as 0, and 0xF in the most
// significant nibble means "negative" (EN 13757-3 annex B).
int64_t bcd_value(std::span<const uint8_t> d) {
  int64_t v = 0;
  for (size_t i = d.size(); i > 0; --i) {
    const uint8_t b = d[i - 1];
    v = v * 10 + ((b >> 4) < 0xA ? (b >> 4) : 0);
    v = v * 10 + (b & 0xF);
  }
  if (!d.empty() && (d.back() >> 4) == 0xF) v = -v;
  return v;
}

std::string hex_bytes(std::span<const uint8_t> d, bool reverse) {
  std::string s;
  s.reserve(d.size() * 3);
  for (size_t k = 0; k < d.size(); ++k) {
    if (k) s += ' ';
    s += hex2(reverse ? d[d.size() - 1 - k] : d[k]);
  }
  return s;
}

// Text of a plain-text field: bytes are sent last character first; ISO 8859-1 -> UTF-8.
std::string latin1_reversed(std::span<const uint8_t> d) {
  std::string s;
  for (size_t k = d.size(); k > 0; --k) {
    const uint8_t c = d[k - 1];
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else {
      s += static_cast<char>(0xC0 | (c >> 6));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return s;
}

// Two-digit year of types G/F/I (7 bits): 0..80 -> 2000..2080, 81.. -> 1981.. (as libmbus).
int full_year(int yy) { return yy <= 80 ? 2000 + yy : 1900 + yy; }

// The fields of a date/time of types G (2 bytes), F (4 bytes) or I (6 bytes), EN 13757-3
// annex A. -1: the type has no such field.
struct CivilFields {
  int year7 = 0, month = 0, day = 0, hour = -1, minute = -1, second = -1;
  bool invalid_bit = false;  // IV: "time invalid" (types F and I)
};

CivilFields civil_fields(std::span<const uint8_t> t) {
  CivilFields c;
  // Day, month and the 7-bit year sit in the same places relative to the date bytes.
  const size_t date_at = t.size() == 2 ? 0 : t.size() == 4 ? 2 : 3;
  c.day = t[date_at] & 0x1F;
  c.month = t[date_at + 1] & 0x0F;
  c.year7 = ((t[date_at] & 0xE0) >> 5) | ((t[date_at + 1] & 0xF0) >> 1);
  if (t.size() == 4) {
    c.minute = t[0] & 0x3F;
    c.hour = t[1] & 0x1F;
    c.invalid_bit = t[0] & 0x80;
  } else if (t.size() == 6) {
    c.second = t[0] & 0x3F;
    c.minute = t[1] & 0x3F;
    c.hour = t[2] & 0x1F;
    c.invalid_bit = t[1] & 0x80;
  }
  return c;
}

// One field of a date/time as text: its digits, or "*" for the "every" marker
// (year 127, month 15, day 0, hour 31, minute or second 63). False when out of range.
bool civil_field_text(int value, int lo, int hi, int every, int width, std::string& out,
                      bool& recurring) {
  if (value < 0) return true;  // the type has no such field
  if (value == every) {
    out += '*';
    recurring = true;
    return true;
  }
  if (value < lo || value > hi) return false;
  char buf[8];
  std::snprintf(buf, sizeof buf, "%0*d", width, value);
  out += buf;
  return true;
}

// Date/time types G, F and I. The meter's own local time (M-Bus carries no zone): the text is
// "YYYY-MM-DD" or "YYYY-MM-DDThh:mm:ss" without a zone; "every" markers print as "*"
// ("*-12-31": every 31 December) and make the record recurring (not a point in time); a
// set IV bit or a field out of range makes it invalid (no text, value null).
void decode_time(std::span<const uint8_t> t, Record& r) {
  const CivilFields c = civil_fields(t);
  r.is_time = true;
  r.kind = ValueKind::none;
  r.text.clear();
  if (c.invalid_bit) {
    r.time_invalid = true;
    return;
  }
  std::string s;
  bool recurring = false, ok = true;
  if (c.year7 == 127) {
    s += '*';
    recurring = true;
  } else {
    s += std::to_string(full_year(c.year7));
  }
  s += '-';
  ok = ok && civil_field_text(c.month, 1, 12, 15, 2, s, recurring);
  s += '-';
  ok = ok && civil_field_text(c.day, 1, 31, 0, 2, s, recurring);
  if (c.hour >= 0) {
    s += 'T';
    ok = ok && civil_field_text(c.hour, 0, 23, 31, 2, s, recurring);
    s += ':';
    ok = ok && civil_field_text(c.minute, 0, 59, 63, 2, s, recurring);
    s += ':';
    if (c.second < 0) s += "00";
    ok = ok && civil_field_text(c.second, 0, 59, 63, 2, s, recurring);
  }
  if (!ok) {
    r.time_invalid = true;
    return;
  }
  r.kind = ValueKind::text;
  r.text = std::move(s);
  r.time_recurring = recurring;
  r.time_valid = !recurring;
  if (r.time_valid) {
    r.local_seconds =
        days_from_civil(full_year(c.year7), unsigned(c.month), unsigned(c.day)) * 86400 +
        std::max(c.hour, 0) * 3600 + std::max(c.minute, 0) * 60 + std::max(c.second, 0);
  }
}

// Length of the data field for the DIF's data field code (0x0D: variable, handled apart).
constexpr size_t kDataLen[16] = {0, 1, 2, 3, 4, 4, 6, 8, 0, 1, 2, 3, 4, 0, 6, 8};

// How an LVAR (EN 13757-3 table 5) is to be read.
enum class Lvar { text, bcd_pos, bcd_neg, binary };

// The value of a data field before scaling: an exact integer, or a real (type H).
struct RawValue {
  bool integer = true;
  int64_t i = 0;
  double real = 0;
  double as_double() const { return integer ? double(i) : real; }
};

bool is_time_record(const Record& r) {
  const unsigned code = r.dif & 0x0F;
  const unsigned vif = r.vif & 0x7F;
  const unsigned vife0 = r.vife.empty() ? 0 : (r.vife[0] & 0x7F);
  const bool fd_time = r.vif == 0xFD && (vife0 == 0x30 || vife0 == 0x70);
  if (code == 0x2) return vif == 0x6C;
  if (code == 0x4 || code == 0x6) return vif == 0x6D || fd_time;
  return false;
}

// Decodes the raw value of a record. Returns false when libmbus's value decoder rejects the
// data field (code 8, "selection for readout").
bool decode_value(Record& r, Lvar lvar, RawValue& raw) {
  const unsigned code = r.dif & 0x0F;
  std::span<const uint8_t> d(r.data);
  raw = RawValue{};
  r.kind = ValueKind::number;
  if (is_time_record(r)) {
    decode_time(d, r);
    return true;
  }
  switch (code) {
    case 0x0:
      r.kind = ValueKind::text;  // libmbus: empty string
      r.text.clear();
      return true;
    case 0x1:
    case 0x2:
    case 0x3:
    case 0x4:
    case 0x6:
    case 0x7:
      raw.i = le_signed(d);
      return true;
    case 0x5: {
      float f;
      uint32_t u =
          uint32_t(d[0]) | uint32_t(d[1]) << 8 | uint32_t(d[2]) << 16 | uint32_t(d[3]) << 24;
      std::memcpy(&f, &u, sizeof f);
      raw.integer = false;
      raw.real = double(f);
      return true;
    }
    case 0x8:
      return false;
    case 0x9:
    case 0xA:
    case 0xB:
    case 0xC:
    case 0xE:
      raw.i = bcd_value(d);
      return true;
    case 0xD:
      switch (lvar) {
        case Lvar::text:
          r.kind = ValueKind::text;
          r.text = latin1_reversed(d);
          return true;
        case Lvar::bcd_pos:
        case Lvar::bcd_neg:
          raw.i = bcd_value(d) * (lvar == Lvar::bcd_neg ? -1 : 1);
          return true;
        case Lvar::binary:
          r.kind = ValueKind::text;
          r.text = hex_bytes(d, true);
          return true;
      }
      return true;
    default:  // 0xF: special function data, shown as hex bytes
      r.kind = ValueKind::text;
      r.text = hex_bytes(d, false);
      return true;
  }
}

// The table entry of a record's VIB; nullopt when the code is unknown.
std::optional<vif::Info> value_info(const Record& r) {
  const unsigned vife0 = r.vife.empty() ? 0 : (r.vife[0] & 0x7F);
  if (r.vif == 0xFD) return vif::main_extension(vife0);
  if (r.vif == 0xFB) return vif::alternate_extension(vife0);
  if ((r.vif & 0x7F) == 0x7C) return vif::Info{1, nullptr, nullptr, true, 0};
  return vif::primary(r.vif & 0x7F);
}

// mantissa * 10^exp10 + 10^add_exp10, exactly; false on overflow.
bool add_power_of_ten(int64_t& mantissa, int& exp10, int add_exp10) {
  if (add_exp10 >= exp10) {
    if (add_exp10 - exp10 > 18) return false;
    return !__builtin_add_overflow(mantissa, int64_t(vif::pow10(add_exp10 - exp10)), &mantissa);
  }
  if (exp10 - add_exp10 > 18) return false;
  const int64_t scale = int64_t(vif::pow10(exp10 - add_exp10));
  if (__builtin_mul_overflow(mantissa, scale, &mantissa)) return false;
  exp10 = add_exp10;
  return !__builtin_add_overflow(mantissa, int64_t{1}, &mantissa);
}

// The double nearest to mantissa * 10^exp10 (237.2, not 2372 * 0.1 = 237.20000000000002).
double nearest_double(int64_t mantissa, int exp10) {
  constexpr int64_t kExactInDouble = int64_t{1} << 53;
  if (mantissa > -kExactInDouble && mantissa < kExactInDouble && exp10 >= -22 && exp10 <= 22) {
    // Both operands exact: IEEE multiplication and division round correctly.
    const double m = double(mantissa);
    return exp10 >= 0 ? m * vif::pow10(exp10) : m / vif::pow10(-exp10);
  }
  return std::strtod(decimal_text(mantissa, exp10).c_str(), nullptr);
}

// Fills quantity/unit/value from the VIB and the combinable VIFE; returns false when the
// code is unknown (the raw value is kept).
bool normalise(Record& r, const RawValue& raw) {
  const std::optional<vif::Info> info = value_info(r);
  const bool numeric = r.kind == ValueKind::number;
  if (!info) {
    r.quantity = "Unknown VIF 0x" + hex2(r.vif);
    r.unit.clear();
    if (numeric) r.value = raw.as_double();
    r.exact = numeric && raw.integer;
    r.mantissa = raw.i;
    return false;
  }
  if (info->unit) {
    r.unit = info->unit;
    r.quantity = info->quantity;
  } else {  // plain-text VIF: the text is the quantity
    r.unit = "-";
    r.quantity = r.custom_vif;
  }
  const size_t first_combinable = (r.vif == 0xFD || r.vif == 0xFB) ? 1 : 0;
  const vif::Correction corr = vif::combinable(r.vife, first_combinable);
  if (!numeric) return true;
  double v = raw.as_double() * info->factor;
  if (corr.exp10) v *= vif::pow10(corr.exp10);
  if (corr.add) v += vif::pow10(corr.add_exp10);
  r.value = v;
  if (raw.integer && info->decimal) {
    r.mantissa = raw.i;
    r.exp10 = info->exp10 + corr.exp10;
    r.exact = !corr.add || add_power_of_ten(r.mantissa, r.exp10, corr.add_exp10);
    if (r.exact) r.value = nearest_double(r.mantissa, r.exp10);
  }
  return true;
}

std::string make_native_id(const Record& r) {
  std::string s = hex2(r.dif);
  for (uint8_t b : r.dife) s += ' ' + hex2(b);
  s += ' ' + hex2(r.vif);
  for (uint8_t b : r.vife) s += ' ' + hex2(b);
  return s;
}

// ---------------------------------------------------------------------------------------
// Data records (variable data structure), one phase per part of a record:
// DIB (DIF + DIFE) -> VIB (VIF, plain-text unit, VIFE) -> data field -> meaning.

// Reading position in the user data, and the index of the record being read (for errors).
struct RecordReader {
  std::span<const uint8_t> data;
  size_t pos = 0;
  size_t record = 0;

  size_t left() const { return data.size() - pos; }
  std::string error(const std::string& what) const {
    return "record " + std::to_string(record) + ": " + what;
  }
};

// DIF 0x0F / 0x1F: manufacturer data up to the end of the user data.
void read_manufacturer_data(RecordReader& in, Record& r, Frame& f) {
  r.function = r.dif == 0x0F ? Function::manufacturer_specific : Function::more_records_follow;
  if (r.dif == 0x1F) f.more_records_follow = true;
  r.data.assign(in.data.begin() + static_cast<std::ptrdiff_t>(in.pos), in.data.end());
  in.pos = in.data.size();
  r.kind = ValueKind::text;
  r.text = hex_bytes(r.data, false);
  r.native_id = hex2(r.dif);
}

std::string read_dife(RecordReader& in, Record& r) {
  uint8_t last = r.dif;
  while (last & 0x80) {
    if (r.dife.size() >= kMaxDife) return in.error("too many DIFE");
    if (in.left() == 0) return in.error("premature end of data at DIF");
    last = in.data[in.pos++];
    r.dife.push_back(last);
  }
  return {};
}

std::string read_vib(RecordReader& in, Record& r) {
  if (in.left() == 0) return in.error("premature end of data at VIF");
  r.vif = in.data[in.pos++];
  if ((r.vif & 0x7F) == 0x7C) {  // plain-text unit: length, then the text
    if (in.left() == 0) return in.error("premature end of data at plain-text VIF");
    const size_t len = in.data[in.pos++];
    if (len > kMaxCustomVif) {
      return in.error("plain-text VIF too long (" + std::to_string(len) + " bytes)");
    }
    if (len > in.left()) return in.error("premature end of data in plain-text VIF");
    r.custom_vif = latin1_reversed(in.data.subspan(in.pos, len));
    in.pos += len;
  }
  uint8_t last = r.vif;
  while (last & 0x80) {
    if (r.vife.size() >= kMaxVife) return in.error("too many VIFE");
    if (in.left() == 0) return in.error("premature end of data at VIFE");
    last = in.data[in.pos++];
    r.vife.push_back(last);
  }
  return {};
}

// The LVAR byte of a variable-length field (EN 13757-3 table 5): length and how to read it.
std::string read_lvar(RecordReader& in, size_t& len, Lvar& lvar) {
  if (in.left() == 0) return in.error("premature end of data at LVAR");
  const uint8_t l = in.data[in.pos++];
  if (l <= 0xBF) {
    len = l;
  } else if (l >= 0xC0 && l <= 0xC9) {
    len = l - 0xC0u;
    lvar = Lvar::bcd_pos;
  } else if (l >= 0xD0 && l <= 0xD9) {
    len = l - 0xD0u;
    lvar = Lvar::bcd_neg;
  } else if (l >= 0xE0 && l <= 0xEF) {
    len = l - 0xE0u;
    lvar = Lvar::binary;
  } else if (l >= 0xF0 && l <= 0xF4) {
    len = 4u * (l - 0xECu);
    lvar = Lvar::binary;
  } else if (l == 0xF5) {
    len = 48;
    lvar = Lvar::binary;
  } else if (l == 0xF6) {
    len = 64;
    lvar = Lvar::binary;
  } else {
    return in.error("reserved LVAR 0x" + hex2(l));
  }
  return {};
}

std::string read_data_field(RecordReader& in, bool mode2, Record& r, Lvar& lvar) {
  size_t len = kDataLen[r.dif & 0x0F];
  lvar = Lvar::text;
  if ((r.dif & 0x0F) == 0x0D) {
    std::string err = read_lvar(in, len, lvar);
    if (!err.empty()) return err;
  }
  if (len > in.left()) {
    return in.error("premature end of data (need " + std::to_string(len) + " bytes, " +
                    std::to_string(in.left()) + " left)");
  }
  r.data.assign(in.data.begin() + static_cast<std::ptrdiff_t>(in.pos),
                in.data.begin() + static_cast<std::ptrdiff_t>(in.pos + len));
  in.pos += len;
  const bool text_field = (r.dif & 0x0F) == 0x0D && lvar == Lvar::text;
  if (mode2 && !text_field) std::reverse(r.data.begin(), r.data.end());
  return {};
}

// Storage number, tariff, subunit (DIF bit 6 and the DIFE) and the function (DIF bits 4-5).
void decode_dib(Record& r) {
  r.has_dife = !r.dife.empty();
  r.storage = (r.dif & 0x40) >> 6;
  for (size_t k = 0; k < r.dife.size(); ++k) {
    r.storage |= int64_t(r.dife[k] & 0x0F) << (1 + 4 * k);
    r.tariff |= ((r.dife[k] & 0x30) >> 4) << (2 * k);
    r.subunit |= ((r.dife[k] & 0x40) >> 6) << k;
  }
  static constexpr Function kFunctions[] = {Function::instantaneous, Function::maximum,
                                            Function::minimum, Function::error_state};
  r.function = kFunctions[(r.dif & 0x30) >> 4];
}

void decode_meaning(Record& r, Lvar lvar) {
  r.native_id = make_native_id(r);
  RawValue raw;
  if (!decode_value(r, lvar, raw)) {
    r.normalised = false;
    r.kind = ValueKind::none;
    r.quantity = "Selection for readout";
    r.unit.clear();
  } else {
    r.normalised = normalise(r, raw);
  }
}

// Parses the data records of a variable data structure, from data[pos] to the end.
std::string parse_records(std::span<const uint8_t> data, size_t pos, bool mode2, Frame& f) {
  RecordReader in{data, pos, 0};
  while (in.left() > 0) {
    if (in.data[in.pos] == 0x2F) {  // idle filler
      ++in.pos;
      continue;
    }
    in.record = f.records.size();
    Record r;
    r.dif = in.data[in.pos++];
    if (r.dif == 0x0F || r.dif == 0x1F) {
      read_manufacturer_data(in, r, f);
      f.records.push_back(std::move(r));
      break;
    }
    Lvar lvar = Lvar::text;
    std::string err = read_dife(in, r);
    if (err.empty()) err = read_vib(in, r);
    if (err.empty()) err = read_data_field(in, mode2, r, lvar);
    if (!err.empty()) return err;
    decode_dib(r);
    decode_meaning(r, lvar);
    f.records.push_back(std::move(r));
  }
  return {};
}

// The identification number: 8 BCD digits (EN 13757-3), printed with its leading zeros.
std::string id_text(uint32_t id_bcd) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08X", id_bcd);
  return buf;
}

// Fixed data structure (CI 0x73 / 0x77): unit codes of the counters (EN 13757-3 annex).
struct FixedUnit {
  double factor;
  const char* unit;
  const char* quantity;
};

std::optional<FixedUnit> fixed_unit(unsigned c) {
  if (c >= 0x02 && c <= 0x0A) return FixedUnit{vif::pow10(int(c) - 0x02), "Wh", "Energy"};
  if (c >= 0x0B && c <= 0x13) return FixedUnit{vif::pow10(int(c) - 0x0B + 3), "J", "Energy"};
  if (c >= 0x14 && c <= 0x1C) return FixedUnit{vif::pow10(int(c) - 0x14), "W", "Power"};
  if (c >= 0x1D && c <= 0x25) return FixedUnit{vif::pow10(int(c) - 0x1D + 3), "J/h", "Power"};
  if (c >= 0x26 && c <= 0x2E) return FixedUnit{vif::pow10(int(c) - 0x26 - 6), "m^3", "Volume"};
  if (c >= 0x2F && c <= 0x37) {
    return FixedUnit{vif::pow10(int(c) - 0x2F - 6), "m^3/h", "Volume flow"};
  }
  if (c == 0x38) return FixedUnit{1e-3, "°C", "Temperature"};
  if (c == 0x39) return FixedUnit{1, "Units for H.C.A.", "H.C.A."};
  if (c == 0x3F) return FixedUnit{1, "", "Dimensionless"};
  return std::nullopt;  // 0x00/0x01 time/date, 0x3A-0x3D reserved, 0x3E "same but historic"
}

const char* fixed_medium(unsigned m) {
  static constexpr const char* kNames[16] = {"Other",
                                             "Oil",
                                             "Electricity",
                                             "Gas",
                                             "Heat",
                                             "Steam",
                                             "Hot Water",
                                             "Water",
                                             "H.C.A.",
                                             "Reserved",
                                             "Gas Mode 2",
                                             "Heat Mode 2",
                                             "Hot Water Mode 2",
                                             "Water Mode 2",
                                             "H.C.A. Mode 2",
                                             "Reserved"};
  return kNames[m & 0xF];
}

std::string parse_fixed(std::span<const uint8_t> d, bool mode2, Frame& f) {
  if (d.size() != 16) {
    return "fixed data structure must be 16 bytes, got " + std::to_string(d.size());
  }
  std::array<uint8_t, 16> b;
  std::copy(d.begin(), d.end(), b.begin());
  if (mode2) {
    std::reverse(b.begin(), b.begin() + 4);
    std::reverse(b.begin() + 8, b.begin() + 12);
    std::reverse(b.begin() + 12, b.begin() + 16);
  }
  Header& h = f.header;
  h.present = true;
  h.id_bcd = uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
  h.id = id_text(h.id_bcd);
  h.access_number = b[4];
  h.status = b[5];
  h.medium = uint8_t(((b[6] & 0xC0) >> 6) | ((b[7] & 0xC0) >> 4));
  h.medium_name = fixed_medium(h.medium);
  const bool binary = b[5] & 0x80;
  const bool stored = b[5] & 0x40;
  std::optional<FixedUnit> first;
  for (int k = 0; k < 2; ++k) {
    Record r;
    const unsigned type = b[6 + k] & 0x3F;
    r.data.assign(b.begin() + 8 + 4 * k, b.begin() + 12 + 4 * k);
    r.native_id = "fixed " + hex2(b[6 + k]);
    r.function = stored ? Function::stored : Function::actual;
    const int64_t raw = binary ? le_signed(r.data) : bcd_value(r.data);
    std::optional<FixedUnit> u = fixed_unit(type);
    if (type == 0x3E && k == 1) {  // "same unit as counter 1, but historic value"
      u = first;
      r.function = Function::stored;
    }
    if (k == 0) first = u;
    if (type <= 0x01) {  // time h,m,s / date D,M,Y, BCD coded
      char buf[16];
      std::snprintf(buf, sizeof buf, "%06lld", static_cast<long long>(raw));
      r.kind = ValueKind::text;
      r.text = buf;
      r.quantity = "Time";
      r.unit = type == 0 ? "h,m,s" : "D,M,Y";
    } else if (u) {
      r.kind = ValueKind::number;
      r.value = double(raw) * u->factor;
      r.unit = u->unit;
      r.quantity = u->quantity;
    } else {
      r.kind = ValueKind::number;
      r.value = double(raw);
      r.quantity = "Reserved";
      r.normalised = false;
    }
    f.records.push_back(std::move(r));
  }
  return {};
}

void parse_long_header(std::span<const uint8_t> d, bool mode2, Header& h) {
  std::array<uint8_t, 12> b;
  std::copy(d.begin(), d.begin() + 12, b.begin());
  if (mode2) {
    std::reverse(b.begin(), b.begin() + 4);
    std::reverse(b.begin() + 4, b.begin() + 6);
    std::reverse(b.begin() + 10, b.begin() + 12);
  }
  h.present = true;
  h.id_bcd = uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
  h.id = id_text(h.id_bcd);
  h.manufacturer_code = uint16_t(b[4] | b[5] << 8);
  h.manufacturer = manufacturer_name(h.manufacturer_code);
  h.version = b[6];
  h.medium = b[7];
  h.medium_name = medium_name(h.medium);
  h.access_number = b[8];
  h.status = b[9];
  h.signature = uint16_t(b[10] | b[11] << 8);
}

}  // namespace

// ---------------------------------------------------------------------------------------

std::string medium_name(uint8_t m) {
  switch (m) {
    case 0x00:
      return "Other";
    case 0x01:
      return "Oil";
    case 0x02:
      return "Electricity";
    case 0x03:
      return "Gas";
    case 0x04:
      return "Heat: Outlet";
    case 0x05:
      return "Steam";
    case 0x06:
      return "Warm water (30-90°C)";
    case 0x07:
      return "Water";
    case 0x08:
      return "Heat Cost Allocator";
    case 0x09:
      return "Compressed Air";
    case 0x0A:
      return "Cooling load meter: Outlet";
    case 0x0B:
      return "Cooling load meter: Inlet";
    case 0x0C:
      return "Heat: Inlet";
    case 0x0D:
      return "Heat / Cooling load meter";
    case 0x0E:
      return "Bus/System";
    case 0x0F:
      return "Unknown Medium";
    case 0x10:
      return "Irrigation Water";
    case 0x11:
      return "Water Logger";
    case 0x12:
      return "Gas Logger";
    case 0x13:
      return "Gas Converter";
    case 0x14:
      return "Calorific value";
    case 0x15:
      return "Hot water (>90°C)";
    case 0x16:
      return "Cold water";
    case 0x17:
      return "Dual water";
    case 0x18:
      return "Pressure";
    case 0x19:
      return "A/D Converter";
    case 0x1A:
      return "Smoke Detector";
    case 0x1B:
      return "Ambient Sensor";
    case 0x1C:
      return "Gas Detector";
    case 0x20:
      return "Breaker: Electricity";
    case 0x21:
      return "Valve: Gas or Water";
    case 0x25:
      return "Customer Unit: Display Device";
    case 0x28:
      return "Waste Water";
    case 0x29:
      return "Garbage";
    case 0x30:
      return "Service Unit";
    case 0x36:
      return "Radio Converter: System";
    case 0x37:
      return "Radio Converter: Meter";
    case 0x22:
    case 0x23:
    case 0x24:
    case 0x26:
    case 0x27:
    case 0x2A:
    case 0x2B:
    case 0x2C:
    case 0x2D:
    case 0x2E:
    case 0x2F:
    case 0x31:
    case 0x32:
    case 0x33:
    case 0x34:
    case 0x38:
    case 0x39:
    case 0x3A:
    case 0x3B:
    case 0x3C:
    case 0x3D:
    case 0x3E:
    case 0x3F:
      return "Reserved";
    default: {
      char b[32];
      std::snprintf(b, sizeof b, "Unknown medium (0x%.2x)", m);
      return b;
    }
  }
}

std::string manufacturer_name(uint16_t code) {
  std::string s(3, ' ');
  s[0] = static_cast<char>(((code >> 10) & 0x1F) + 64);
  s[1] = static_cast<char>(((code >> 5) & 0x1F) + 64);
  s[2] = static_cast<char>((code & 0x1F) + 64);
  return s;
}

std::string app_error_name(int code) {
  switch (code) {
    case 0:
      return "Unspecified error";
    case 1:
      return "Unimplemented CI-Field";
    case 2:
      return "Buffer too long, truncated";
    case 3:
      return "Too many records";
    case 4:
      return "Premature end of record";
    case 5:
      return "More than 10 DIFE´s";
    case 6:
      return "More than 10 VIFE´s";
    case 7:
      return "Reserved";
    case 8:
      return "Application busy";
    case 9:
      return "Too many readouts";
    default: {
      char b[32];
      std::snprintf(b, sizeof b, "Unknown error (0x%.2x)", code & 0xFF);
      return b;
    }
  }
}

std::string_view function_name(Function f) {
  switch (f) {
    case Function::instantaneous:
      return "instantaneous";
    case Function::maximum:
      return "maximum";
    case Function::minimum:
      return "minimum";
    case Function::error_state:
      return "error_state";
    case Function::manufacturer_specific:
      return "manufacturer_specific";
    case Function::more_records_follow:
      return "more_records_follow";
    case Function::actual:
      return "actual";
    case Function::stored:
      return "stored";
  }
  return "unknown";
}

ScanResult scan_frame(std::span<const uint8_t> b) {
  ScanResult r;
  if (b.empty()) {
    r.size = 1;
    return r;
  }
  switch (b[0]) {
    case kAck:
      r.status = FrameScan::complete;
      r.size = 1;
      return r;
    case kShortStart:
      if (b.size() < 5) {
        r.size = 5;
        return r;
      }
      r.status = FrameScan::complete;
      r.size = 5;
      return r;
    case kLongStart: {
      if (b.size() < 4) {
        r.size = 4;
        return r;
      }
      if (b[1] != b[2]) {
        r.status = FrameScan::garbage;
        r.error = "length fields differ (0x" + hex2(b[1]) + " != 0x" + hex2(b[2]) + ")";
        return r;
      }
      if (b[1] < 3) {
        r.status = FrameScan::garbage;
        r.error = "invalid length field 0x" + hex2(b[1]) + " (minimum 3)";
        return r;
      }
      if (b[3] != kLongStart) {
        r.status = FrameScan::garbage;
        r.error = "second start byte is 0x" + hex2(b[3]) + ", expected 0x68";
        return r;
      }
      const size_t need = size_t{b[1]} + 6;
      r.size = need;
      r.status = b.size() >= need ? FrameScan::complete : FrameScan::incomplete;
      return r;
    }
    default:
      r.status = FrameScan::garbage;
      r.error = "invalid frame start byte 0x" + hex2(b[0]);
      return r;
  }
}

DecodeResult decode_user_data(uint8_t ci, std::span<const uint8_t> data) {
  DecodeResult res;
  Frame& f = res.frame;
  f.type = FrameType::long_frame;
  f.ci = ci;
  switch (ci) {
    case 0x70:
      f.payload = Payload::app_error;
      f.app_error = data.empty() ? 0 : data[0];
      f.app_error_text = app_error_name(f.app_error);
      return res;
    case 0x72:
    case 0x76:
      if (data.size() < 12) {
        res.error =
            "variable data header too short (" + std::to_string(data.size()) + " bytes, need 12)";
        return res;
      }
      f.payload = Payload::variable;
      parse_long_header(data, ci == 0x76, f.header);
      res.error = parse_records(data, 12, ci == 0x76, f);
      return res;
    case 0x7A:
      if (data.size() < 4) {
        res.error = "short header too short (" + std::to_string(data.size()) + " bytes, need 4)";
        return res;
      }
      f.payload = Payload::variable;
      f.header.access_number = data[0];
      f.header.status = data[1];
      f.header.signature = uint16_t(data[2] | data[3] << 8);
      res.error = parse_records(data, 4, false, f);
      return res;
    case 0x78:  // response without header: EN 13757-3 application layer, records only
    case 0x51:  // SND_UD data send, master to slave: records without header
      f.payload = Payload::variable;
      res.error = parse_records(data, 0, false, f);
      return res;
    case 0x73:
    case 0x77:
      f.payload = Payload::fixed;
      res.error = parse_fixed(data, ci == 0x77, f);
      return res;
    default:
      res.error = "unsupported CI 0x" + hex2(ci);
      return res;
  }
}

DecodeResult decode(std::span<const uint8_t> b) {
  DecodeResult res;
  if (b.empty()) {
    res.error = "empty input";
    return res;
  }
  ScanResult s = scan_frame(b);
  if (s.status == FrameScan::garbage) {
    res.error = s.error;
    return res;
  }
  if (s.status == FrameScan::incomplete) {
    res.error = "truncated frame (" + std::to_string(b.size()) + " bytes, need " +
                std::to_string(s.size) + ")";
    return res;
  }
  if (b.size() > s.size) {
    res.error = std::to_string(b.size() - s.size) + " bytes after the end of the frame";
    return res;
  }
  if (b[0] == kAck) {
    res.frame.type = FrameType::ack;
    return res;
  }
  const uint8_t stop = b[b.size() - 1];
  const uint8_t cs = b[b.size() - 2];
  if (stop != kStop) {
    res.error = "missing stop byte (0x" + hex2(stop) + " instead of 0x16)";
    return res;
  }
  const size_t first = b[0] == kShortStart ? 1 : 4;
  uint8_t sum = 0;
  for (size_t i = first; i < b.size() - 2; ++i) sum = uint8_t(sum + b[i]);
  if (sum != cs) {
    res.error = "checksum mismatch (frame 0x" + hex2(cs) + ", computed 0x" + hex2(sum) + ")";
    return res;
  }
  if (b[0] == kShortStart) {
    res.frame.type = FrameType::short_frame;
    res.frame.control = b[1];
    res.frame.address = b[2];
    return res;
  }
  const uint8_t control = b[4], address = b[5], ci = b[6];
  if (b[1] == 3) {  // control frame: no user data
    res.frame.type = FrameType::control;
    res.frame.control = control;
    res.frame.address = address;
    res.frame.ci = ci;
    if (ci == 0x70) {  // application error without an error byte
      res.frame.payload = Payload::app_error;
      res.frame.app_error = 0;
      res.frame.app_error_text = app_error_name(0);
    }
    return res;
  }
  res = decode_user_data(ci, b.subspan(7, b.size() - 9));
  res.frame.type = FrameType::long_frame;
  res.frame.control = control;
  res.frame.address = address;
  return res;
}

}  // namespace mp::mbus
