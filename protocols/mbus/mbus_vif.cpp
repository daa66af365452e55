// VIF tables of EN 13757-3:2013, see mbus_vif.h. Each extension table is a list of code
// ranges; a code that no row covers is "Reserved".
#include "protocols/mbus/mbus_vif.h"

namespace mp::mbus::vif {
namespace {

constexpr double kMonth = 2629743.83;  // libmbus's month and year in seconds
constexpr double kYear = 31556926.0;
constexpr double kSecondsToDays[] = {1.0, 60.0, 3600.0, 86400.0};     // nn = 00 .. 11
constexpr double kHoursToYears[] = {3600.0, 86400.0, kMonth, kYear};  // pp = 00 .. 11

// How a row scales its codes.
enum class Scale : uint8_t {
  pow10,            // 10^(exp10 + code - first)
  seconds_to_days,  // nn (the two low bits): seconds, minutes, hours, days
  hours_to_years,   // pp (the two low bits): hours, days, months, years
  fixed,            // `fixed` for every code of the row
};

struct Row {
  uint8_t first, last;
  Scale scale;
  int exp10;     // Scale::pow10
  double fixed;  // Scale::fixed
  const char* unit;
  const char* quantity;
};

constexpr Row pow10_row(uint8_t first, uint8_t last, int exp10, const char* unit,
                        const char* quantity) {
  return {first, last, Scale::pow10, exp10, 0, unit, quantity};
}
constexpr Row fixed_row(uint8_t code, double factor, const char* unit, const char* quantity) {
  return {code, code, Scale::fixed, 0, factor, unit, quantity};
}
constexpr Row plain_row(uint8_t code, const char* quantity) {
  return {code, code, Scale::pow10, 0, 0, "", quantity};
}
constexpr Row time_row(uint8_t first, uint8_t last, Scale scale, const char* quantity) {
  return {first, last, scale, 0, 0, "s", quantity};
}

// Main extension table, VIFE after 0xFD (EN 13757-3:2013 table 14). Names as libmbus prints
// them where libmbus knows the code.
constexpr Row kMain[] = {
    pow10_row(0x00, 0x03, -3, "Currency units", "Credit"),
    pow10_row(0x04, 0x07, -3, "Currency units", "Debit"),
    plain_row(0x08, "Access Number (transmission count)"),  // "unique telegram identification"
    plain_row(0x09, "Medium"),                              // "device type"
    plain_row(0x0A, "Manufacturer"), plain_row(0x0B, "Parameter set identification"),
    plain_row(0x0C, "Model / Version"), plain_row(0x0D, "Hardware version"),
    plain_row(0x0E, "Firmware version"), plain_row(0x0F, "Software version"),
    plain_row(0x10, "Customer location"), plain_row(0x11, "Customer"),
    plain_row(0x12, "Access Code User"), plain_row(0x13, "Access Code Operator"),
    plain_row(0x14, "Access Code System Operator"), plain_row(0x15, "Access Code Developer"),
    plain_row(0x16, "Password"), plain_row(0x17, "Error flags"), plain_row(0x18, "Error mask"),
    // 0x19 reserved
    plain_row(0x1A, "Digital Output"), plain_row(0x1B, "Digital Input"),
    fixed_row(0x1C, 1, "Baud", "Baudrate"), fixed_row(0x1D, 1, "Bittimes", "Response delay time"),
    plain_row(0x1E, "Retry"), plain_row(0x1F, "Remote control"),
    plain_row(0x20, "First storage # for cyclic storage"),
    plain_row(0x21, "Last storage # for cyclic storage"), plain_row(0x22, "Size of storage block"),
    // 0x23 reserved
    time_row(0x24, 0x27, Scale::seconds_to_days, "Storage interval"),
    fixed_row(0x28, kMonth, "s", "Storage interval"),
    fixed_row(0x29, kYear, "s", "Storage interval"), plain_row(0x2A, "Operator specific data"),
    fixed_row(0x2B, 1, "s", "Time point second"),
    time_row(0x2C, 0x2F, Scale::seconds_to_days, "Duration since last readout"),
    // 0x30 "start (date/time) of tariff": libmbus calls it "Reserved" (and still decodes a
    // type F date); we name it.
    fixed_row(0x30, 1, "-", "Start of tariff"),
    time_row(0x31, 0x33, Scale::seconds_to_days, "Duration of tariff"),  // nn 01..11
    time_row(0x34, 0x37, Scale::seconds_to_days, "Period of tariff"),
    fixed_row(0x38, kMonth, "s", "Period of tariff"),
    fixed_row(0x39, kYear, "s", "Period of tariff"), plain_row(0x3A, "Dimensionless"),
    plain_row(0x3B, "Data container for wireless M-Bus protocol"),
    time_row(0x3C, 0x3F, Scale::seconds_to_days, "Period of nominal data transmissions"),
    pow10_row(0x40, 0x4F, -9, "V", "Voltage"), pow10_row(0x50, 0x5F, -12, "A", "Current"),
    plain_row(0x60, "Reset counter"), plain_row(0x61, "Cumulation counter"),
    plain_row(0x62, "Control signal"), plain_row(0x63, "Day of week"),
    plain_row(0x64, "Week number"), plain_row(0x65, "Time point of day change"),
    plain_row(0x66, "State of parameter activation"),
    plain_row(0x67, "Special supplier information"),
    time_row(0x68, 0x6B, Scale::hours_to_years, "Duration since last cumulation"),
    time_row(0x6C, 0x6F, Scale::hours_to_years, "Operating time battery"),
    plain_row(0x70, "Date and time of battery change"), fixed_row(0x71, 1, "dBm", "RF level"),
    plain_row(0x72, "Daylight saving"),              // data type K
    plain_row(0x73, "Listening window management"),  // data type L
    fixed_row(0x74, 86400, "s", "Remaining battery life time"),
    plain_row(0x75, "Number of times the meter was stopped"),
    plain_row(0x76, "Data container for manufacturer specific protocol"),
    // 0x77 .. 0x7F reserved
};

// Alternate extension table, VIFE after 0xFB (EN 13757-3:2013 table 12). The 2013 edition
// dropped the older edition's American gallon and degree Fahrenheit codes (they are
// reserved now) and added reactive/apparent energy and power, relative humidity, phase
// angles and frequency.
constexpr Row kAlternate[] = {
    pow10_row(0x00, 0x01, 5, "Wh", "Energy"),             // 10^(n-1) MWh
    pow10_row(0x02, 0x03, 3, "varh", "Reactive energy"),  // 10^n kVARh
    pow10_row(0x04, 0x05, 3, "VAh", "Apparent energy"),   // 10^n kVAh
    // 0x06, 0x07 reserved
    pow10_row(0x08, 0x09, 8, "J", "Energy"),  // 10^(n-1) GJ
    // 0x0A, 0x0B reserved
    pow10_row(0x0C, 0x0F, 5, "cal", "Energy"),  // 10^(nn-1) MCal
    pow10_row(0x10, 0x11, 2, "m^3", "Volume"),  // 10^(n+2) m^3
    // 0x12, 0x13 reserved
    pow10_row(0x14, 0x17, 0, "var", "Reactive power"),    // 10^(nn-3) kVAR
    pow10_row(0x18, 0x19, 5, "kg", "Mass"),               // 10^(n+2) t
    pow10_row(0x1A, 0x1B, -1, "%", "Relative humidity"),  // 10^(n-1) %
    // 0x1C .. 0x1F reserved
    pow10_row(0x20, 0x20, 0, "feet^3", "Volume"),
    pow10_row(0x21, 0x21, -1, "feet^3", "Volume"),
    // 0x22 .. 0x27 reserved
    pow10_row(0x28, 0x29, 5, "W", "Power"),  // 10^(n-1) MW
    pow10_row(0x2A, 0x2A, -1, "°", "Phase U-U"),
    pow10_row(0x2B, 0x2B, -1, "°", "Phase U-I"),
    pow10_row(0x2C, 0x2F, -3, "Hz", "Frequency"),  // 10^(nn-3) Hz
    pow10_row(0x30, 0x31, 8, "J/h", "Power"),      // 10^(n-1) GJ/h
    // 0x32, 0x33 reserved
    pow10_row(0x34, 0x37, 0, "VA", "Apparent power"),  // 10^(nn-3) kVA
    // 0x38 .. 0x73 reserved
    pow10_row(0x74, 0x77, -3, "°C", "Cold / Warm Temperature Limit"),
    pow10_row(0x78, 0x7F, -3, "W", "Cumul count max power"),
};

Info from_row(const Row& r, unsigned code) {
  Info i;
  i.unit = r.unit;
  i.quantity = r.quantity;
  switch (r.scale) {
    case Scale::pow10:
      i.exp10 = r.exp10 + int(code - r.first);
      i.factor = pow10(i.exp10);
      i.decimal = true;
      break;
    case Scale::seconds_to_days:
      i.factor = kSecondsToDays[code & 3];
      i.decimal = (code & 3) == 0;
      break;
    case Scale::hours_to_years:
      i.factor = kHoursToYears[code & 3];
      break;
    case Scale::fixed:
      i.factor = r.fixed;
      i.decimal = r.fixed == 1;
      break;
  }
  return i;
}

template <size_t N>
Info lookup(const Row (&rows)[N], unsigned code) {
  for (const Row& r : rows)
    if (code >= r.first && code <= r.last) return from_row(r, code);
  Info reserved;
  reserved.unit = "Reserved";
  reserved.quantity = "Reserved";
  return reserved;
}

Info decimal_info(int exp10, const char* unit, const char* quantity) {
  return Info{pow10(exp10), unit, quantity, true, exp10};
}

Info time_info(unsigned nn, const char* quantity) {
  return Info{kSecondsToDays[nn & 3], "s", quantity, (nn & 3) == 0, 0};
}

}  // namespace

double pow10(int e) {
  static constexpr double kPos[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  static constexpr double kNeg[] = {1e0,   1e-1,  1e-2,  1e-3,  1e-4,  1e-5,  1e-6,  1e-7,
                                    1e-8,  1e-9,  1e-10, 1e-11, 1e-12, 1e-13, 1e-14, 1e-15,
                                    1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22};
  if (e >= 0 && e <= 22) return kPos[e];
  if (e < 0 && e >= -22) return kNeg[-e];
  double r = 1;
  for (int i = 0; i < (e < 0 ? -e : e); ++i) r *= 10;
  return e < 0 ? 1 / r : r;
}

std::optional<Info> primary(unsigned c) {
  const int n3 = int(c & 7), n2 = int(c & 3);
  switch (c >> 3) {
    case 0x00:
      return decimal_info(n3 - 3, "Wh", "Energy");
    case 0x01:
      return decimal_info(n3, "J", "Energy");
    case 0x02:
      return decimal_info(n3 - 6, "m^3", "Volume");
    case 0x03:
      return decimal_info(n3 - 3, "kg", "Mass");
    case 0x04:
      return time_info(c, (c & 4) ? "Operating time" : "On time");
    case 0x05:
      return decimal_info(n3 - 3, "W", "Power");
    case 0x06:
      return decimal_info(n3, "J/h", "Power");
    case 0x07:
      return decimal_info(n3 - 6, "m^3/h", "Volume flow");
    case 0x08:
      return decimal_info(n3 - 7, "m^3/min", "Volume flow");
    case 0x09:
      return decimal_info(n3 - 9, "m^3/s", "Volume flow");
    case 0x0A:
      return decimal_info(n3 - 3, "kg/h", "Mass flow");
    case 0x0B:
      return decimal_info(n2 - 3, "°C", (c & 4) ? "Return temperature" : "Flow temperature");
    case 0x0C:
      if (c & 4) return decimal_info(n2 - 3, "°C", "External temperature");
      return decimal_info(n2 - 3, "K", "Temperature difference");
    case 0x0D:
      if (!(c & 4)) return decimal_info(n2 - 3, "bar", "Pressure");
      switch (c) {
        case 0x6C:
          return Info{1, "-", "Time point (date)"};
        case 0x6D:
          return Info{1, "-", "Time point (date & time)"};
        case 0x6E:
          return decimal_info(0, "Units for H.C.A.", "H.C.A.");
        default:
          return Info{0.0, "Reserved", "Reserved"};  // 0x6F
      }
    case 0x0E:
      return time_info(c, (c & 4) ? "Actuality Duration" : "Averaging Duration");
    default:  // 0x78 .. 0x7F
      switch (c) {
        case 0x78:
          return decimal_info(0, "", "Fabrication No");
        case 0x79:
          return decimal_info(0, "", "(Enhanced) Identification");
        case 0x7A:
          return decimal_info(0, "", "Bus Address");
        case 0x7E:
          return decimal_info(0, "", "Any VIF");
        case 0x7F:
          return decimal_info(0, "", "Manufacturer specific");
        default:
          return std::nullopt;  // 0x7B, 0x7D: extension markers without the E bit
      }
  }
}

Info main_extension(unsigned code) { return lookup(kMain, code & 0x7F); }

Info alternate_extension(unsigned code) { return lookup(kAlternate, code & 0x7F); }

Correction combinable(std::span<const uint8_t> vife, size_t first) {
  Correction c;
  for (size_t k = first; k < vife.size(); ++k) {
    const unsigned code = vife[k] & 0x7F;
    if (code == 0x7F) break;  // the rest is manufacturer specific
    if (code == 0x7C) {       // the next VIFE comes from the combinable extension table
      ++k;
      continue;
    }
    if (code >= 0x70 && code <= 0x77) {
      c.exp10 += int(code & 7) - 6;
    } else if (code >= 0x78 && code <= 0x7B) {
      if (!c.add) {
        c.add = true;
        c.add_exp10 = int(code & 3) - 3;
      }
    } else if (code == 0x7D) {
      c.exp10 += 3;
    }
  }
  return c;
}

}  // namespace mp::mbus::vif
