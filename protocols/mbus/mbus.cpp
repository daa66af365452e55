// M-Bus decoder, see mbus.h. Written from EN 13757-2/-3 and from the behaviour of libmbus's
// normalised XML output (the project must match it on libmbus's test corpus).
#include "protocols/mbus/mbus.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <optional>

#include "common/json.h"

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
double pow10i(int e) {
  static constexpr double kPos[] = {1e0, 1e1, 1e2, 1e3,  1e4,  1e5, 1e6,
                                    1e7, 1e8, 1e9, 1e10, 1e11, 1e12};
  static constexpr double kNeg[] = {1e0,  1e-1, 1e-2, 1e-3,  1e-4,  1e-5, 1e-6,
                                    1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12};
  if (e >= 0 && e <= 12) return kPos[e];
  if (e < 0 && e >= -12) return kNeg[-e];
  double r = 1;
  for (int i = 0; i < (e < 0 ? -e : e); ++i) r *= 10;
  return e < 0 ? 1 / r : r;
}

// ---------------------------------------------------------------------------------------
// Value information: unit, quantity and factor to the base unit, per VIF code.
// The strings are those of libmbus so that its normalised output can be compared 1:1.

struct Vi {
  double factor = 1;
  const char* unit = "";
  const char* quantity = "";
};

constexpr double kMonth = 2629743.83;  // libmbus's month and year in seconds
constexpr double kYear = 31556926.0;
constexpr double kTime4[] = {1.0, 60.0, 3600.0, 86400.0};
constexpr double kTimePp[] = {3600.0, 86400.0, kMonth, kYear};  // hours .. years

// Primary VIF table (extension bit cleared). nullopt: code unknown to the normaliser.
std::optional<Vi> primary_vif(unsigned c) {
  const unsigned n3 = c & 7, n2 = c & 3;
  switch (c >> 3) {
    case 0x00:
      return Vi{pow10i(int(n3) - 3), "Wh", "Energy"};
    case 0x01:
      return Vi{pow10i(int(n3)), "J", "Energy"};
    case 0x02:
      return Vi{pow10i(int(n3) - 6), "m^3", "Volume"};
    case 0x03:
      return Vi{pow10i(int(n3) - 3), "kg", "Mass"};
    case 0x04:
      return Vi{kTime4[n2], "s", (c & 4) ? "Operating time" : "On time"};
    case 0x05:
      return Vi{pow10i(int(n3) - 3), "W", "Power"};
    case 0x06:
      return Vi{pow10i(int(n3)), "J/h", "Power"};
    case 0x07:
      return Vi{pow10i(int(n3) - 6), "m^3/h", "Volume flow"};
    case 0x08:
      return Vi{pow10i(int(n3) - 7), "m^3/min", "Volume flow"};
    case 0x09:
      return Vi{pow10i(int(n3) - 9), "m^3/s", "Volume flow"};
    case 0x0A:
      return Vi{pow10i(int(n3) - 3), "kg/h", "Mass flow"};
    case 0x0B:
      return Vi{pow10i(int(n2) - 3), "°C", (c & 4) ? "Return temperature" : "Flow temperature"};
    case 0x0C:
      if (c & 4) return Vi{pow10i(int(n2) - 3), "°C", "External temperature"};
      return Vi{pow10i(int(n2) - 3), "K", "Temperature difference"};
    case 0x0D:
      if (!(c & 4)) return Vi{pow10i(int(n2) - 3), "bar", "Pressure"};
      switch (c) {
        case 0x6C:
          return Vi{1, "-", "Time point (date)"};
        case 0x6D:
          return Vi{1, "-", "Time point (date & time)"};
        case 0x6E:
          return Vi{1, "Units for H.C.A.", "H.C.A."};
        default:
          return Vi{0.0, "Reserved", "Reserved"};  // 0x6F
      }
    case 0x0E:
      return Vi{kTime4[n2], "s", (c & 4) ? "Actuality Duration" : "Averaging Duration"};
    default:  // 0x78 .. 0x7F
      switch (c) {
        case 0x78:
          return Vi{1, "", "Fabrication No"};
        case 0x79:
          return Vi{1, "", "(Enhanced) Identification"};
        case 0x7A:
          return Vi{1, "", "Bus Address"};
        case 0x7E:
          return Vi{1, "", "Any VIF"};
        case 0x7F:
          return Vi{1, "", "Manufacturer specific"};
        default:
          return std::nullopt;  // 0x7B, 0x7D: extension markers without the E bit
      }
  }
}

// Main extension table, VIF 0xFD (EN 13757-3 table 14).
Vi fd_vif(unsigned c) {
  static constexpr Vi kReserved{1, "Reserved", "Reserved"};
  if (c < 0x04) return Vi{pow10i(int(c & 3) - 3), "Currency units", "Credit"};
  if (c < 0x08) return Vi{pow10i(int(c & 3) - 3), "Currency units", "Debit"};
  if (c >= 0x40 && c < 0x50) return Vi{pow10i(int(c & 0xF) - 9), "V", "Voltage"};
  if (c >= 0x50 && c < 0x60) return Vi{pow10i(int(c & 0xF) - 12), "A", "Current"};
  if (c >= 0x24 && c <= 0x29) {
    static constexpr double f[] = {1, 60, 3600, 86400, kMonth, kYear};
    return Vi{f[c - 0x24], "s", "Storage interval"};
  }
  if (c >= 0x2C && c <= 0x2F) return Vi{kTime4[c & 3], "s", "Duration since last readout"};
  if (c >= 0x31 && c <= 0x33) return Vi{kTime4[c & 3], "s", "Duration of tariff"};
  if (c >= 0x34 && c <= 0x39) {
    static constexpr double f[] = {1, 60, 3600, 86400, kMonth, kYear};
    return Vi{f[c - 0x34], "s", "Period of tariff"};
  }
  if (c >= 0x68 && c <= 0x6B) return Vi{kTimePp[c & 3], "s", "Duration since last cumulation"};
  if (c >= 0x6C && c <= 0x6F) return Vi{kTimePp[c & 3], "s", "Operating time battery"};
  switch (c) {
    case 0x08:
      return Vi{1, "", "Access Number (transmission count)"};
    case 0x09:
      return Vi{1, "", "Medium"};
    case 0x0A:
      return Vi{1, "", "Manufacturer"};
    case 0x0B:
      return Vi{1, "", "Parameter set identification"};
    case 0x0C:
      return Vi{1, "", "Model / Version"};
    case 0x0D:
      return Vi{1, "", "Hardware version"};
    case 0x0E:
      return Vi{1, "", "Firmware version"};
    case 0x0F:
      return Vi{1, "", "Software version"};
    case 0x10:
      return Vi{1, "", "Customer location"};
    case 0x11:
      return Vi{1, "", "Customer"};
    case 0x12:
      return Vi{1, "", "Access Code User"};
    case 0x13:
      return Vi{1, "", "Access Code Operator"};
    case 0x14:
      return Vi{1, "", "Access Code System Operator"};
    case 0x15:
      return Vi{1, "", "Access Code Developer"};
    case 0x16:
      return Vi{1, "", "Password"};
    case 0x17:
      return Vi{1, "", "Error flags"};
    case 0x18:
      return Vi{1, "", "Error mask"};
    case 0x1A:
      return Vi{1, "", "Digital Output"};
    case 0x1B:
      return Vi{1, "", "Digital Input"};
    case 0x1C:
      return Vi{1, "Baud", "Baudrate"};
    case 0x1D:
      return Vi{1, "Bittimes", "Response delay time"};
    case 0x1E:
      return Vi{1, "", "Retry"};
    case 0x20:
      return Vi{1, "", "First storage # for cyclic storage"};
    case 0x21:
      return Vi{1, "", "Last storage # for cyclic storage"};
    case 0x22:
      return Vi{1, "", "Size of storage block"};
    // 0x30 "start (date/time) of tariff": libmbus calls it "Reserved" (and still decodes a
    // type F date); we name it.
    case 0x30:
      return Vi{1, "-", "Start of tariff"};
    case 0x3A:
      return Vi{1, "", "Dimensionless"};
    case 0x60:
      return Vi{1, "", "Reset counter"};
    case 0x61:
      return Vi{1, "", "Cumulation counter"};
    case 0x62:
      return Vi{1, "", "Control signal"};
    case 0x63:
      return Vi{1, "", "Day of week"};
    case 0x64:
      return Vi{1, "", "Week number"};
    case 0x65:
      return Vi{1, "", "Time point of day change"};
    case 0x66:
      return Vi{1, "", "State of parameter activation"};
    case 0x67:
      return Vi{1, "", "Special supplier information"};
    case 0x70:
      return Vi{1, "", "Date and time of battery change"};
    default:
      return kReserved;
  }
}

// Alternate extension table, VIF 0xFB (EN 13757-3 table 12). Where libmbus's table has an
// evident slip (GJ with unit "Reserved", GJ/h as "J", 0x79 factor) we use the right values;
// none of them occurs in the corpus.
Vi fb_vif(unsigned c) {
  static constexpr Vi kReserved{1, "Reserved", "Reserved"};
  switch (c) {
    case 0x00:
      return Vi{1e5, "Wh", "Energy"};
    case 0x01:
      return Vi{1e6, "Wh", "Energy"};
    case 0x08:
      return Vi{1e8, "J", "Energy"};
    case 0x09:
      return Vi{1e9, "J", "Energy"};
    case 0x10:
      return Vi{1e2, "m^3", "Volume"};
    case 0x11:
      return Vi{1e3, "m^3", "Volume"};
    case 0x18:
      return Vi{1e5, "kg", "Mass"};
    case 0x19:
      return Vi{1e6, "kg", "Mass"};
    case 0x21:
      return Vi{1e-1, "feet^3", "Volume"};
    case 0x22:
      return Vi{1e-1, "American gallon", "Volume"};
    case 0x23:
      return Vi{1e0, "American gallon", "Volume"};
    case 0x24:
      return Vi{1e-3, "American gallon/min", "Volume flow"};
    case 0x25:
      return Vi{1e0, "American gallon/min", "Volume flow"};
    case 0x26:
      return Vi{1e0, "American gallon/h", "Volume flow"};
    case 0x28:
      return Vi{1e5, "W", "Power"};
    case 0x29:
      return Vi{1e6, "W", "Power"};
    case 0x30:
      return Vi{1e8, "J/h", "Power"};
    case 0x31:
      return Vi{1e9, "J/h", "Power"};
    default:
      break;
  }
  const int n2 = int(c & 3);
  if (c >= 0x58 && c <= 0x5B) return Vi{pow10i(n2 - 3), "°F", "Flow temperature"};
  if (c >= 0x5C && c <= 0x5F) return Vi{pow10i(n2 - 3), "°F", "Return temperature"};
  if (c >= 0x60 && c <= 0x63) return Vi{pow10i(n2 - 3), "°F", "Temperature difference"};
  if (c >= 0x64 && c <= 0x67) return Vi{pow10i(n2 - 3), "°F", "External temperature"};
  if (c >= 0x70 && c <= 0x73) return Vi{pow10i(n2 - 3), "°F", "Cold / Warm Temperature Limit"};
  if (c >= 0x74 && c <= 0x77) return Vi{pow10i(n2 - 3), "°C", "Cold / Warm Temperature Limit"};
  if (c >= 0x78) return Vi{pow10i(int(c & 7) - 3), "W", "Cumul count max power"};
  return kReserved;
}

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

int64_t days_from_civil(int y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return int64_t{era} * 146097 + static_cast<int64_t>(doe) - 719468;
}

// Two-digit year of types G/F/I (7 bits): 0..80 -> 2000..2080, 81.. -> 1981.. (as libmbus:
// a 7-bit value above 99 thus lands in 2000..2027).
int full_year(int yy) { return yy <= 80 ? 2000 + yy : 1900 + yy; }

// Date/time types G (2 bytes), F (4 bytes), I (6 bytes). Text as libmbus prints it (an
// invalid time gives its all-zero "1900-01-00T00:00:00Z").
void decode_time(std::span<const uint8_t> t, Record& r) {
  int sec = 0, min = 0, hour = 0, mday = 0, mon = 1, year = 1900;
  bool valid = false;
  if (t.size() == 2) {
    mday = t[0] & 0x1F;
    mon = t[1] & 0x0F;
    year = full_year(((t[0] & 0xE0) >> 5) | ((t[1] & 0xF0) >> 1));
    valid = true;
  } else if (t.size() == 4 && !(t[0] & 0x80)) {
    min = t[0] & 0x3F;
    hour = t[1] & 0x1F;
    mday = t[2] & 0x1F;
    mon = t[3] & 0x0F;
    year = full_year(((t[2] & 0xE0) >> 5) | ((t[3] & 0xF0) >> 1));
    valid = true;
  } else if (t.size() == 6 && !(t[1] & 0x80)) {
    sec = t[0] & 0x3F;
    min = t[1] & 0x3F;
    hour = t[2] & 0x1F;
    mday = t[3] & 0x1F;
    mon = t[4] & 0x0F;
    year = full_year(((t[3] & 0xE0) >> 5) | ((t[4] & 0xF0) >> 1));
    valid = true;
  }
  char buf[40];
  if (t.size() == 2) {
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", year, mon, mday);
  } else {
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", year, mon, mday, hour, min,
                  sec);
  }
  r.kind = ValueKind::text;
  r.text = buf;
  r.is_time = true;
  r.time_valid = valid && mon >= 1 && mon <= 12 && mday >= 1 && mday <= 31 && hour < 24 &&
                 min < 60 && sec < 60;
  if (r.time_valid) {
    r.unix_time =
        days_from_civil(year, unsigned(mon), unsigned(mday)) * 86400 + hour * 3600 + min * 60 + sec;
  }
}

// Length of the data field for the DIF's data field code (0x0D: variable, handled apart).
constexpr size_t kDataLen[16] = {0, 1, 2, 3, 4, 4, 6, 8, 0, 1, 2, 3, 4, 0, 6, 8};

// How an LVAR (EN 13757-3 table 5) is to be read.
enum class Lvar { text, bcd_pos, bcd_neg, binary };

// Decodes the raw value of a record; returns the number before scaling through `raw`.
// Returns false when libmbus's value decoder rejects the data field (code 8).
bool decode_value(Record& r, Lvar lvar, double& raw) {
  const unsigned code = r.dif & 0x0F;
  const unsigned vif = r.vif & 0x7F;
  const unsigned vife0 = r.vife.empty() ? 0 : (r.vife[0] & 0x7F);
  const bool fd_time = r.vif == 0xFD && (vife0 == 0x30 || vife0 == 0x70);
  std::span<const uint8_t> d(r.data);
  raw = 0;
  switch (code) {
    case 0x0:
      r.kind = ValueKind::text;  // libmbus: empty string
      r.text.clear();
      return true;
    case 0x1:
    case 0x3:
    case 0x7:
      raw = double(le_signed(d));
      r.kind = ValueKind::number;
      return true;
    case 0x2:
      if (vif == 0x6C) {
        decode_time(d, r);
        return true;
      }
      raw = double(le_signed(d));
      r.kind = ValueKind::number;
      return true;
    case 0x4:
    case 0x6:
      if (vif == 0x6D || fd_time) {
        decode_time(d, r);
        return true;
      }
      raw = double(le_signed(d));
      r.kind = ValueKind::number;
      return true;
    case 0x5: {
      float f;
      uint32_t u =
          uint32_t(d[0]) | uint32_t(d[1]) << 8 | uint32_t(d[2]) << 16 | uint32_t(d[3]) << 24;
      std::memcpy(&f, &u, sizeof f);
      raw = double(f);
      r.kind = ValueKind::number;
      return true;
    }
    case 0x8:
      return false;  // "selection for readout": a request, carries no value
    case 0x9:
    case 0xA:
    case 0xB:
    case 0xC:
    case 0xE:
      raw = double(bcd_value(d));
      r.kind = ValueKind::number;
      return true;
    case 0xD:
      switch (lvar) {
        case Lvar::text:
          r.kind = ValueKind::text;
          r.text = latin1_reversed(d);
          return true;
        case Lvar::bcd_pos:
        case Lvar::bcd_neg:
          raw = double(bcd_value(d)) * (lvar == Lvar::bcd_neg ? -1 : 1);
          r.kind = ValueKind::number;
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

// Fills quantity/unit/value from the VIB; returns false when the code is unknown.
bool normalise(Record& r, double raw) {
  Vi vi;
  const unsigned vife0 = r.vife.empty() ? 0 : (r.vife[0] & 0x7F);
  if (r.vif == 0xFD) {
    vi = fd_vif(vife0);
  } else if (r.vif == 0xFB) {
    vi = fb_vif(vife0);
  } else if ((r.vif & 0x7F) == 0x7C) {
    r.unit = "-";
    r.quantity = r.custom_vif;
    vi.factor = 1;
    vi.unit = nullptr;
  } else {
    auto p = primary_vif(r.vif & 0x7F);
    if (!p) {
      r.quantity = "Unknown VIF 0x" + hex2(r.vif);
      r.unit.clear();
      if (r.kind == ValueKind::number) r.value = raw;
      return false;
    }
    vi = *p;
  }
  if (vi.unit) {
    r.unit = vi.unit;
    r.quantity = vi.quantity;
  }
  double v = raw * vi.factor;
  // Combinable (orthogonal) VIFE that scale the value (EN 13757-3 table 15), applied as
  // libmbus does: only the first VIFE, only after a primary VIF.
  if ((r.vif & 0x80) && r.vif != 0xFD && r.vif != 0xFB && !r.vife.empty()) {
    const unsigned c = r.vife[0] & 0x7F;
    if (c >= 0x70 && c <= 0x77) {
      v *= pow10i(int(c & 7) - 6);
    } else if (c >= 0x78 && c <= 0x7B) {
      v += pow10i(int(c & 3) - 3);
    } else if (c == 0x7D) {
      v *= 1000.0;
    }
  }
  if (r.kind == ValueKind::number) r.value = v;
  return true;
}

std::string make_native_id(const Record& r) {
  std::string s = hex2(r.dif);
  for (uint8_t b : r.dife) s += ' ' + hex2(b);
  s += ' ' + hex2(r.vif);
  for (uint8_t b : r.vife) s += ' ' + hex2(b);
  return s;
}

// Parses the data records of a variable data structure, from data[pos] to the end.
std::string parse_records(std::span<const uint8_t> data, size_t pos, bool mode2, Frame& f) {
  const size_t n = data.size();
  while (pos < n) {
    if (data[pos] == 0x2F) {  // idle filler
      ++pos;
      continue;
    }
    Record r;
    r.dif = data[pos++];
    if (r.dif == 0x0F || r.dif == 0x1F) {
      r.function = r.dif == 0x0F ? Function::manufacturer_specific : Function::more_records_follow;
      if (r.dif == 0x1F) f.more_records_follow = true;
      r.data.assign(data.begin() + static_cast<std::ptrdiff_t>(pos), data.end());
      pos = n;
      r.kind = ValueKind::text;
      r.text = hex_bytes(r.data, false);
      r.native_id = hex2(r.dif);
      f.records.push_back(std::move(r));
      break;
    }
    const size_t index = f.records.size();
    // DIFE chain.
    uint8_t last = r.dif;
    while (last & 0x80) {
      if (r.dife.size() >= kMaxDife) return "record " + std::to_string(index) + ": too many DIFE";
      if (pos >= n) return "record " + std::to_string(index) + ": premature end of data at DIF";
      last = data[pos++];
      r.dife.push_back(last);
    }
    // VIF.
    if (pos >= n) return "record " + std::to_string(index) + ": premature end of data at VIF";
    r.vif = data[pos++];
    if ((r.vif & 0x7F) == 0x7C) {
      if (pos >= n) {
        return "record " + std::to_string(index) + ": premature end of data at plain-text VIF";
      }
      const size_t len = data[pos++];
      if (len > kMaxCustomVif) {
        return "record " + std::to_string(index) + ": plain-text VIF too long (" +
               std::to_string(len) + " bytes)";
      }
      if (len > n - pos) {
        return "record " + std::to_string(index) + ": premature end of data in plain-text VIF";
      }
      r.custom_vif = latin1_reversed(data.subspan(pos, len));
      pos += len;
    }
    last = r.vif;
    while (last & 0x80) {
      if (r.vife.size() >= kMaxVife) return "record " + std::to_string(index) + ": too many VIFE";
      if (pos >= n) return "record " + std::to_string(index) + ": premature end of data at VIFE";
      last = data[pos++];
      r.vife.push_back(last);
    }
    // Data length.
    size_t len = kDataLen[r.dif & 0x0F];
    Lvar lvar = Lvar::text;
    if ((r.dif & 0x0F) == 0x0D) {
      if (pos >= n) return "record " + std::to_string(index) + ": premature end of data at LVAR";
      const uint8_t l = data[pos++];
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
        return "record " + std::to_string(index) + ": reserved LVAR 0x" + hex2(l);
      }
    }
    if (len > n - pos) {
      return "record " + std::to_string(index) + ": premature end of data (need " +
             std::to_string(len) + " bytes, " + std::to_string(n - pos) + " left)";
    }
    r.data.assign(data.begin() + static_cast<std::ptrdiff_t>(pos),
                  data.begin() + static_cast<std::ptrdiff_t>(pos + len));
    pos += len;
    const bool text_field = (r.dif & 0x0F) == 0x0D && lvar == Lvar::text;
    if (mode2 && !text_field) std::reverse(r.data.begin(), r.data.end());

    // Storage number, tariff, subunit.
    r.has_dife = !r.dife.empty();
    r.storage = (r.dif & 0x40) >> 6;
    for (size_t k = 0; k < r.dife.size(); ++k) {
      r.storage |= int64_t(r.dife[k] & 0x0F) << (1 + 4 * k);
      r.tariff |= ((r.dife[k] & 0x30) >> 4) << (2 * k);
      r.subunit |= ((r.dife[k] & 0x40) >> 6) << k;
    }
    switch (r.dif & 0x30) {
      case 0x00:
        r.function = Function::instantaneous;
        break;
      case 0x10:
        r.function = Function::maximum;
        break;
      case 0x20:
        r.function = Function::minimum;
        break;
      default:
        r.function = Function::error_state;
        break;
    }
    r.native_id = make_native_id(r);
    double raw = 0;
    if (!decode_value(r, lvar, raw)) {
      r.normalised = false;
      r.kind = ValueKind::none;
      r.quantity = "Selection for readout";
      r.unit.clear();
    } else {
      r.normalised = normalise(r, raw);
    }
    f.records.push_back(std::move(r));
  }
  return {};
}

// Fixed data structure (CI 0x73 / 0x77): unit codes of the counters (EN 13757-3 annex).
struct FixedUnit {
  double factor;
  const char* unit;
  const char* quantity;
};

std::optional<FixedUnit> fixed_unit(unsigned c) {
  if (c >= 0x02 && c <= 0x0A) return FixedUnit{pow10i(int(c) - 0x02), "Wh", "Energy"};
  if (c >= 0x0B && c <= 0x13) return FixedUnit{pow10i(int(c) - 0x0B + 3), "J", "Energy"};
  if (c >= 0x14 && c <= 0x1C) return FixedUnit{pow10i(int(c) - 0x14), "W", "Power"};
  if (c >= 0x1D && c <= 0x25) return FixedUnit{pow10i(int(c) - 0x1D + 3), "J/h", "Power"};
  if (c >= 0x26 && c <= 0x2E) return FixedUnit{pow10i(int(c) - 0x26 - 6), "m^3", "Volume"};
  if (c >= 0x2F && c <= 0x37) {
    return FixedUnit{pow10i(int(c) - 0x2F - 6), "m^3/h", "Volume flow"};
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
  char idbuf[16];
  std::snprintf(idbuf, sizeof idbuf, "%X", h.id_bcd);
  h.id = idbuf;
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
  char idbuf[16];
  std::snprintf(idbuf, sizeof idbuf, "%X", h.id_bcd);
  h.id = idbuf;
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

// ---------------------------------------------------------------------------------------
// Canonical mapping (design.md "Readings") — only records with function instantaneous,
// storage 0 and subunit 0 are candidates; the first record to claim a name wins.
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
//   frequency_hz: EN 13757-3 has no standard VIF for frequency and no corpus meter sends one;
//     not mapped.
// Gas meters (0x03, 0x12, 0x13): Volume -> gas_m3. Water meters (0x06, 0x07, 0x15, 0x16,
// 0x17): Volume -> water_m3. Heat meters (0x04, 0x0C, 0x0D): Energy -> heat_gj. These three
// only from records without any VIFE.
// Every other record: name "mbus_<native id without spaces>" (e.g. "mbus_8C1004"), value in
// the normalised unit, native id "DIF DIFE.. VIF VIFE..".

namespace {

// -1: no phase marker; 0: total; 1..3: phase.
int phase_of(const Record& r) {
  for (size_t k = 0; k + 1 < r.vife.size(); ++k) {
    if (r.vife[k] == 0xFF && (r.vife[k + 1] & 0x7F) <= 3) return r.vife[k + 1] & 0x7F;
  }
  return -1;
}

bool has_vife(const Record& r, uint8_t code) {
  if (r.vif == 0xFD || r.vif == 0xFB) {
    for (size_t k = 1; k < r.vife.size(); ++k)
      if ((r.vife[k] & 0x7F) == code) return true;
    return false;
  }
  for (uint8_t v : r.vife)
    if ((v & 0x7F) == code) return true;
  return false;
}

// True when the record has no VIFE other than the listed combinable codes.
bool only_vife(const Record& r, std::initializer_list<uint8_t> allowed) {
  const size_t first = (r.vif == 0xFD || r.vif == 0xFB) ? 1 : 0;
  for (size_t k = first; k < r.vife.size(); ++k) {
    bool ok = false;
    for (uint8_t a : allowed) ok = ok || (r.vife[k] & 0x7F) == a;
    if (!ok) return false;
  }
  return true;
}

}  // namespace

bool to_reading(const Frame& f, mp::Reading& out, std::string* why) {
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
  const uint8_t m = f.header.medium;
  const bool electricity = f.header.present && f.payload == Payload::variable && m == 0x02;
  const bool gas = m == 0x03 || m == 0x12 || m == 0x13;
  const bool water = m == 0x06 || m == 0x07 || m == 0x15 || m == 0x16 || m == 0x17;
  const bool heat = m == 0x04 || m == 0x0C || m == 0x0D;
  int next_voltage = 1, next_current = 1;

  auto claimed = [&](std::string_view name) { return out.find(name) != nullptr; };
  auto add = [&](const std::string& name, double v, const char* unit, const Record& r) {
    if (claimed(name)) return false;
    mp::Value val;
    val.name = name;
    val.number = v;
    val.unit = unit;
    val.native_id = r.native_id;
    out.values.push_back(std::move(val));
    return true;
  };

  for (const Record& r : f.records) {
    bool mapped = false;
    const bool candidate =
        r.kind == ValueKind::number && r.normalised &&
        (r.function == Function::instantaneous || r.function == Function::actual) &&
        r.storage == 0 && r.subunit == 0;
    if (candidate) {
      const bool energy = r.quantity == "Energy" && (r.unit == "Wh" || r.unit == "J");
      const double kwh = r.unit == "Wh" ? r.value / 1000.0 : r.value / 3.6e6;
      if (electricity && energy && r.tariff <= 2 && only_vife(r, {0x3B, 0x3C})) {
        std::string name = has_vife(r, 0x3C) ? "energy_export" : "energy_import";
        if (r.tariff == 1) name += "_t1";
        if (r.tariff == 2) name += "_t2";
        mapped = add(name + "_kwh", kwh, "kWh", r);
      } else if (electricity && r.tariff == 0 && r.quantity == "Power" &&
                 (r.unit == "W" || r.unit == "J/h")) {
        const double w = r.unit == "W" ? r.value : r.value / 3600.0;
        const int ph = phase_of(r);
        if (ph >= 1) {
          mapped = add("power_l" + std::to_string(ph) + "_w", w, "W", r);
        } else if (!claimed("power_net_w")) {
          add("power_net_w", w, "W", r);
          add("power_import_w", w > 0 ? w : 0.0, "W", r);
          add("power_export_w", w < 0 ? -w : 0.0, "W", r);
          mapped = true;
        }
      } else if (electricity && r.tariff == 0 &&
                 (r.quantity == "Voltage" || r.quantity == "Current")) {
        const bool volt = r.quantity == "Voltage";
        int ph = phase_of(r);
        int& next = volt ? next_voltage : next_current;
        if (ph < 1 && next <= 3) ph = next++;
        if (ph >= 1) {
          mapped =
              add((volt ? "voltage_l" : "current_l") + std::to_string(ph) + (volt ? "_v" : "_a"),
                  r.value, volt ? "V" : "A", r);
        }
      } else if (r.tariff == 0 && gas && r.quantity == "Volume" && r.unit == "m^3" &&
                 only_vife(r, {})) {
        mapped = add("gas_m3", r.value, "m3", r);
      } else if (r.tariff == 0 && water && r.quantity == "Volume" && r.unit == "m^3" &&
                 only_vife(r, {})) {
        mapped = add("water_m3", r.value, "m3", r);
      } else if (r.tariff == 0 && heat && energy && only_vife(r, {})) {
        mapped = add("heat_gj", r.unit == "J" ? r.value / 1e9 : r.value * 3.6e-6, "GJ", r);
      }
    }
    if (r.is_time && r.time_valid && r.storage == 0 && r.quantity == "Time point (date & time)" &&
        out.meter_time_ns == 0) {
      // The meter's clock (its own zone; M-Bus carries no offset).
      out.meter_time_ns = r.unix_time * 1000000000LL;
    }
    if (mapped) continue;
    // DIF 0x1F ("more records follow") and an empty 0x0F are framing, not values.
    if ((r.dif == 0x1F || r.dif == 0x0F) && r.kind != ValueKind::number && r.text.empty())
      continue;
    mp::Value v;
    v.name = "mbus_";
    for (char c : r.native_id)
      if (c != ' ') v.name += c;
    v.native_id = r.native_id;
    v.unit = r.unit == "-" ? "" : r.unit;
    if (r.kind == ValueKind::number) {
      v.number = r.value;
    } else {
      v.is_text = true;
      v.text = r.text;
    }
    if (r.is_time && r.time_valid) v.time_ns = r.unix_time * 1000000000LL;
    out.values.push_back(std::move(v));
  }
  return true;
}

std::string to_json(const Frame& f) {
  std::string o = "{";
  auto key = [&](const char* k) {
    if (o.size() > 1) o += ',';
    mp::json::append_string(o, k);
    o += ':';
  };
  auto num = [&](const char* k, double v) {
    key(k);
    mp::json::append_number(o, v);
  };
  auto str = [&](const char* k, std::string_view v) {
    key(k);
    mp::json::append_string(o, v);
  };
  static constexpr const char* kTypes[] = {"ack", "short", "control", "long"};
  str("frame", kTypes[static_cast<int>(f.type)]);
  if (f.type == FrameType::ack) return o + "}";
  num("c", f.control);
  num("a", f.address);
  if (f.type == FrameType::short_frame) return o + "}";
  num("ci", f.ci);
  if (f.payload == Payload::app_error) {
    num("application_error", f.app_error);
    str("application_error_text", f.app_error_text);
    return o + "}";
  }
  if (f.payload == Payload::none) return o + "}";
  if (f.header.present) {
    str("id", f.header.id);
    if (f.payload == Payload::variable) {
      str("manufacturer", f.header.manufacturer);
      num("version", f.header.version);
    }
    str("medium", f.header.medium_name);
    num("medium_code", f.header.medium);
  }
  if (f.header.present || f.ci == 0x7A) {
    num("access_number", f.header.access_number);
    num("status", f.header.status);
    if (f.payload == Payload::variable) num("signature", f.header.signature);
  }
  key("more_records_follow");
  o += f.more_records_follow ? "true" : "false";
  key("records");
  o += '[';
  bool firstrec = true;
  for (const Record& r : f.records) {
    if (!firstrec) o += ',';
    firstrec = false;
    std::string saved;
    saved.swap(o);
    o = "{";
    str("id", r.native_id);
    num("storage", double(r.storage));
    num("tariff", r.tariff);
    num("subunit", r.subunit);
    str("function", function_name(r.function));
    str("quantity", r.quantity);
    str("unit", r.unit);
    key("value");
    if (r.kind == ValueKind::number) {
      mp::json::append_number(o, r.value);
    } else if (r.kind == ValueKind::text) {
      mp::json::append_string(o, r.text);
    } else {
      o += "null";
    }
    if (!r.normalised) {
      key("normalised");
      o += "false";
    }
    o += '}';
    saved += o;
    o.swap(saved);
  }
  o += "]}";
  return o;
}

}  // namespace mp::mbus
