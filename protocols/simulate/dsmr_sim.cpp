#include "protocols/simulate/dsmr_sim.h"

#include <cmath>
#include <cstdio>
#include <string_view>

#include "protocols/dsmr/dsmr.h"

namespace mp::dsmr {

namespace {

constexpr int64_t kNs = 1000000000;
constexpr double kPi = 3.14159265358979323846;

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Deterministic value in [0, 1) for an integer point of a named stream.
double hash01(uint64_t seed, uint64_t stream, int64_t k) {
  return static_cast<double>(mix(seed ^ mix(stream * 0x632BE59BD9B4E019ULL ^ uint64_t(k))) >> 11) *
         (1.0 / 9007199254740992.0);
}

// Smooth value noise in [0, 1) over x.
double noise(uint64_t seed, uint64_t stream, double x) {
  double f = std::floor(x);
  double t = x - f;
  t = t * t * (3 - 2 * t);
  int64_t k = static_cast<int64_t>(f);
  return hash01(seed, stream, k) * (1 - t) + hash01(seed, stream, k + 1) * t;
}

double bump(double h, double center, double width) {
  double d = (h - center) / width;
  return std::exp(-0.5 * d * d);
}

struct Civil {
  int64_t year;
  unsigned month, day, hour, minute, second;
  unsigned weekday;  // 0 = Sunday
  int day_of_year;   // 0-based
};

Civil civil(int64_t secs) {
  int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
  int64_t rem = secs - days * 86400;
  Civil c;
  c.weekday = static_cast<unsigned>(((days % 7) + 7 + 4) % 7);
  int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mi = (5 * doy + 2) / 153;
  c.day = static_cast<unsigned>(doy - (153 * mi + 2) / 5 + 1);
  c.month = static_cast<unsigned>(mi < 10 ? mi + 3 : mi - 9);
  c.year = yoe + era * 400 + (c.month <= 2);
  c.hour = static_cast<unsigned>(rem / 3600);
  c.minute = static_cast<unsigned>(rem / 60 % 60);
  c.second = static_cast<unsigned>(rem % 60);
  c.day_of_year = static_cast<int>(days - days_from_civil(c.year, 1, 1));
  return c;
}

int64_t local_seconds(int64_t unix_secs, bool& summer) {
  summer = eu_summer_time(unix_secs);
  return unix_secs + (summer ? 7200 : 3600);
}

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : (a - b + 1) / b; }

void line(std::string& t, const char* fmt, double v) {
  char buf[96];
  std::snprintf(buf, sizeof buf, fmt, v);
  t += buf;
  t += "\r\n";
}

std::string hex_ascii(const std::string& s) {
  static const char digits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

}  // namespace

std::string dsmr_timestamp(int64_t unix_ns) {
  bool summer;
  Civil c = civil(local_seconds(floor_div(unix_ns, kNs), summer));
  char buf[24];
  std::snprintf(buf, sizeof buf, "%02u%02u%02u%02u%02u%02u%c",
                static_cast<unsigned>(((c.year % 100) + 100) % 100), c.month, c.day, c.hour,
                c.minute, c.second, summer ? 'S' : 'W');
  return buf;
}

int sim_tariff(int64_t unix_ns) {
  bool summer;
  Civil c = civil(local_seconds(floor_div(unix_ns, kNs), summer));
  if (c.weekday == 0 || c.weekday == 6) return 1;
  return (c.hour >= 23 || c.hour < 7) ? 1 : 2;
}

SimPower sim_power(int64_t unix_ns, uint64_t seed) {
  SimPower p;
  int64_t secs = floor_div(unix_ns, kNs);
  bool summer;
  Civil lc = civil(local_seconds(secs, summer));
  double h = lc.hour + lc.minute / 60.0 + lc.second / 3600.0;  // local hour
  bool weekend = lc.weekday == 0 || lc.weekday == 6;
  double season = 0.5 * (1 + std::cos(2 * kPi * (lc.day_of_year - 172) / 365.0));  // 1 = June

  // Household load.
  double hours = static_cast<double>(secs) / 3600.0;
  double load = 300 + 200 * noise(seed, 1, hours / 3.0);
  load += (weekend ? 1000 : 1500) * bump(h, weekend ? 9.0 : 7.5, 0.7);
  load += 2000 * bump(h, 18.5, 1.3);
  load += 300 * bump(h, 12.5, 1.0);
  int64_t minute = floor_div(secs, 60);
  if (h > 6.5 && h < 23 && hash01(seed, 2, minute) < 0.04)  // kettle, oven, washing machine
    load += 1200 + 1000 * hash01(seed, 3, minute);
  p.load_l[0] = load * 0.40;
  p.load_l[1] = load * 0.35;
  p.load_l[2] = load * 0.25;

  // Solar (the sun does not follow summer time: use UTC hours; solar noon ~11:40 UTC in NL).
  double hu = static_cast<double>(((secs % 86400) + 86400) % 86400) / 3600.0;
  double day_len = 12 + 4.3 * (2 * season - 1);
  double rise = 11.67 - day_len / 2;
  if (hu > rise && hu < rise + day_len) {
    double shape = std::pow(std::sin(kPi * (hu - rise) / day_len), 1.5);
    double peak = 3000 * (0.35 + 0.65 * season);
    int64_t day = floor_div(secs, 86400);
    double overcast = hash01(seed, 4, day);                            // per day
    double cloud = noise(seed, 5, static_cast<double>(secs) / 420.0);  // every ~7 min
    double clear = 1 - overcast * 0.6 - (cloud > 0.6 ? (cloud - 0.6) * 1.5 * (0.3 + overcast) : 0);
    if (clear < 0.05) clear = 0.05;
    p.solar_l1 = peak * shape * clear;
  }

  // Gas: heating in the morning and evening, more in winter; hot water all year.
  double winter = 1 - season;
  p.gas_m3_per_h = winter * (0.9 * bump(h, 7.0, 1.0) + 0.7 * bump(h, 19.5, 1.8) +
                             (h > 6 && h < 23 ? 0.12 : 0.04)) +
                   0.25 * bump(h, 7.3, 0.25) + 0.15 * bump(h, 20.5, 0.3);
  return p;
}

std::string make_telegram(int64_t unix_ns, SimState& s) {
  if (!s.started) {
    s.started = true;
    s.import_t1_kwh = 1000 + static_cast<double>(mix(s.seed) % 8000000) / 1000.0;
    s.import_t2_kwh = 1000 + static_cast<double>(mix(s.seed + 1) % 8000000) / 1000.0;
    s.export_t1_kwh = static_cast<double>(mix(s.seed + 2) % 3000000) / 1000.0;
    s.export_t2_kwh = static_cast<double>(mix(s.seed + 3) % 3000000) / 1000.0;
    s.gas_m3 = 100 + static_cast<double>(mix(s.seed + 4) % 5000000) / 1000.0;
    s.power_failures = static_cast<uint32_t>(mix(s.seed + 5) % 20);
    s.long_power_failures = static_cast<uint32_t>(mix(s.seed + 6) % 5);
    s.last_ns = unix_ns;
    s.gas_capture_ns = floor_div(unix_ns, 300 * kNs) * 300 * kNs;
    s.gas_reported_m3 = s.gas_m3;
  }

  // Integrate from the previous telegram to now.
  if (unix_ns > s.last_ns) {
    const int64_t step = 60 * kNs;
    const int64_t max_steps = 7 * 24 * 60;
    int64_t t = s.last_ns;
    for (int64_t n = 0; t < unix_ns; ++n) {
      int64_t dt = unix_ns - t;
      if (dt > step && n < max_steps) dt = step;
      int64_t mid = t + dt / 2;
      SimPower p = sim_power(mid, s.seed);
      double net = p.load_l[0] + p.load_l[1] + p.load_l[2] - p.solar_l1;
      double hours = static_cast<double>(dt) / 3.6e12;
      bool low = sim_tariff(mid) == 1;
      if (net >= 0)
        (low ? s.import_t1_kwh : s.import_t2_kwh) += net * hours / 1000;
      else
        (low ? s.export_t1_kwh : s.export_t2_kwh) += -net * hours / 1000;
      // Gas: capture the running total at each 5-minute boundary crossed.
      int64_t capture = floor_div(t + dt, 300 * kNs) * 300 * kNs;
      if (capture > t) {
        double before = static_cast<double>(capture - t) / 3.6e12;
        s.gas_reported_m3 = s.gas_m3 + p.gas_m3_per_h * before;
        s.gas_capture_ns = capture;
      }
      s.gas_m3 += p.gas_m3_per_h * hours;
      t += dt;
    }
  }
  s.last_ns = unix_ns;

  SimPower p = sim_power(unix_ns, s.seed);
  double net_l[3] = {p.load_l[0] - p.solar_l1, p.load_l[1], p.load_l[2]};
  double net = net_l[0] + net_l[1] + net_l[2];
  int64_t secs = floor_div(unix_ns, kNs);
  double v[3];
  for (int i = 0; i < 3; ++i) {
    v[i] = 229 + 4 * noise(s.seed, 10 + i, static_cast<double>(secs) / 600.0) +
           (net_l[i] < 0 ? -net_l[i] * 0.0015 : -net_l[i] * 0.0005);
  }

  std::string id = "E00" + std::to_string(4000000000000ULL + s.seed % 1000000000000ULL);
  std::string gas_id = "G00" + std::to_string(3000000000000ULL + mix(s.seed) % 1000000000000ULL);

  std::string t;
  t.reserve(1024);
  t += "/ISk5\\2MT382-1000\r\n\r\n";
  t += "1-3:0.2.8(50)\r\n";
  t += "0-0:1.0.0(" + dsmr_timestamp(unix_ns) + ")\r\n";
  t += "0-0:96.1.1(" + hex_ascii(id) + ")\r\n";
  line(t, "1-0:1.8.1(%010.3f*kWh)", s.import_t1_kwh);
  line(t, "1-0:1.8.2(%010.3f*kWh)", s.import_t2_kwh);
  line(t, "1-0:2.8.1(%010.3f*kWh)", s.export_t1_kwh);
  line(t, "1-0:2.8.2(%010.3f*kWh)", s.export_t2_kwh);
  line(t, "0-0:96.14.0(%04.0f)", sim_tariff(unix_ns));
  line(t, "1-0:1.7.0(%06.3f*kW)", net > 0 ? net / 1000 : 0.0);
  line(t, "1-0:2.7.0(%06.3f*kW)", net < 0 ? -net / 1000 : 0.0);
  line(t, "0-0:96.7.21(%05.0f)", s.power_failures);
  line(t, "0-0:96.7.9(%05.0f)", s.long_power_failures);
  t += "1-0:99.97.0(0)(0-0:96.7.19)\r\n";
  t += "1-0:32.32.0(00000)\r\n1-0:52.32.0(00000)\r\n1-0:72.32.0(00000)\r\n";
  t += "1-0:32.36.0(00000)\r\n1-0:52.36.0(00000)\r\n1-0:72.36.0(00000)\r\n";
  t += "0-0:96.13.0()\r\n";
  line(t, "1-0:32.7.0(%05.1f*V)", v[0]);
  line(t, "1-0:52.7.0(%05.1f*V)", v[1]);
  line(t, "1-0:72.7.0(%05.1f*V)", v[2]);
  line(t, "1-0:31.7.0(%03.0f*A)", std::fabs(net_l[0]) / v[0]);
  line(t, "1-0:51.7.0(%03.0f*A)", std::fabs(net_l[1]) / v[1]);
  line(t, "1-0:71.7.0(%03.0f*A)", std::fabs(net_l[2]) / v[2]);
  static const char* const kImport[] = {"1-0:21.7.0(%06.3f*kW)", "1-0:41.7.0(%06.3f*kW)",
                                        "1-0:61.7.0(%06.3f*kW)"};
  static const char* const kExport[] = {"1-0:22.7.0(%06.3f*kW)", "1-0:42.7.0(%06.3f*kW)",
                                        "1-0:62.7.0(%06.3f*kW)"};
  for (int i = 0; i < 3; ++i) line(t, kImport[i], net_l[i] > 0 ? net_l[i] / 1000 : 0.0);
  for (int i = 0; i < 3; ++i) line(t, kExport[i], net_l[i] < 0 ? -net_l[i] / 1000 : 0.0);
  t += "0-1:24.1.0(003)\r\n";
  t += "0-1:96.1.0(" + hex_ascii(gas_id) + ")\r\n";
  t += "0-1:24.2.1(" + dsmr_timestamp(s.gas_capture_ns) + ")";
  line(t, "(%09.3f*m3)", s.gas_reported_m3);
  t += "!";
  char crc[8];
  std::snprintf(crc, sizeof crc, "%04X\r\n", crc16(t));
  t += crc;
  return t;
}

}  // namespace mp::dsmr
