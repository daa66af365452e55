// Simulated DSMR 5 meter: valid telegrams, determinism, realistic day profile, counters that
// integrate the power, tariffs, Dutch local timestamps, gas captures.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "protocols/dsmr/dsmr_framer.h"
#include "protocols/simulate/dsmr_sim.h"
#include "common/clock.h"
#include "protocols/dsmr/dsmr.h"

namespace {

constexpr int64_t kNs = 1000000000;

int64_t utc(int y, unsigned mo, unsigned d, int h, int mi = 0, int s = 0) {
  return (mp::dsmr::days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * kNs;
}

double num(const mp::dsmr::Result& r, const char* name) {
  const mp::Value* v = r.reading.find(name);
  REQUIRE_MESSAGE(v, "missing " << name);
  return v->number;
}

mp::dsmr::Result decode(const std::string& t) {
  mp::dsmr::Result r;
  REQUIRE_MESSAGE(mp::dsmr::decode(t, r), (r.errors.empty() ? "" : r.errors[0]));
  CHECK(r.crc_ok);
  CHECK(r.errors.empty());
  return r;
}

}  // namespace

TEST_CASE("telegram format and timestamps in Dutch local time") {
  mp::dsmr::SimState s;
  s.seed = 7;
  int64_t t = utc(2024, 1, 15, 12);  // Monday, winter
  std::string tg = mp::dsmr::make_telegram(t, s);
  CHECK(tg.rfind("/ISk5\\2MT382-1000\r\n\r\n1-3:0.2.8(50)\r\n0-0:1.0.0(240115130000W)\r\n", 0) ==
        0);
  CHECK(tg.find("\r\n0-1:24.2.1(240115130000W)(") != std::string::npos);
  CHECK(tg.size() > 700);
  CHECK(tg.substr(tg.size() - 2) == "\r\n");
  mp::dsmr::Result r = decode(tg);
  CHECK(r.reading.meter_time_ns == t);
  CHECK(r.header == "/ISk5\\2MT382-1000");
  CHECK(r.reading.device_id.rfind("E00", 0) == 0);
  CHECK(num(r, "tariff") == 2);
  CHECK(r.reading.find("gas_m3")->time_ns == t);

  CHECK(mp::dsmr::dsmr_timestamp(utc(2024, 7, 1, 10, 5, 9)) == "240701120509S");
  CHECK(mp::dsmr::dsmr_timestamp(utc(2024, 3, 31, 0, 59, 59)) == "240331015959W");
  CHECK(mp::dsmr::dsmr_timestamp(utc(2024, 3, 31, 1)) == "240331030000S");
  CHECK(mp::dsmr::dsmr_timestamp(utc(2024, 10, 27, 0, 59, 59)) == "241027025959S");
  CHECK(mp::dsmr::dsmr_timestamp(utc(2024, 10, 27, 1)) == "241027020000W");
  CHECK(mp::dsmr::dsmr_timestamp(utc(2023, 12, 31, 23, 30)) == "240101003000W");
}

TEST_CASE("tariff: low at night and at weekends") {
  CHECK(mp::dsmr::sim_tariff(utc(2024, 1, 17, 2)) == 1);       // Wed 03:00 local
  CHECK(mp::dsmr::sim_tariff(utc(2024, 1, 17, 5, 59)) == 1);   // Wed 06:59
  CHECK(mp::dsmr::sim_tariff(utc(2024, 1, 17, 6)) == 2);       // Wed 07:00
  CHECK(mp::dsmr::sim_tariff(utc(2024, 1, 17, 21, 59)) == 2);  // Wed 22:59
  CHECK(mp::dsmr::sim_tariff(utc(2024, 1, 17, 22)) == 1);      // Wed 23:00
  CHECK(mp::dsmr::sim_tariff(utc(2024, 1, 20, 11)) == 1);      // Saturday noon
  CHECK(mp::dsmr::sim_tariff(utc(2024, 7, 17, 10)) == 2);      // Wed 12:00 summer time
  CHECK(mp::dsmr::sim_tariff(utc(2024, 7, 17, 4)) == 1);       // Wed 06:00 summer time
}

TEST_CASE("deterministic for a seed, different for another seed") {
  mp::dsmr::SimState a, b, c;
  a.seed = b.seed = 42;
  c.seed = 43;
  int64_t t0 = utc(2024, 6, 12, 8);
  for (int i = 0; i < 50; ++i) {
    int64_t t = t0 + i * 10 * kNs;
    std::string ta = mp::dsmr::make_telegram(t, a);
    CHECK(ta == mp::dsmr::make_telegram(t, b));
    CHECK(ta != mp::dsmr::make_telegram(t, c));
  }
}

TEST_CASE("a summer day: night base load, solar export at midday, counters integrate power") {
  mp::dsmr::SimState s;
  s.seed = 2024;
  const int64_t step = 10 * kNs;
  const int64_t start = utc(2024, 6, 19, 22);  // Thu 2024-06-20 00:00 local
  double last_imp = -1, last_exp = -1, last_gas = -1;
  double first_imp = 0, first_exp = 0;
  double integral_imp_kwh = 0, integral_exp_kwh = 0;
  double max_export = 0, min_night = 1e9, max_night = 0, max_import = 0;
  int64_t last_gas_time = 0;
  int samples = 0;
  mp::dsmr::Framer framer;
  for (int64_t t = start; t <= start + 86400 * kNs; t += step) {
    std::string tg = mp::dsmr::make_telegram(t, s);
    framer.feed(tg);  // the telegrams also pass the framer untouched
    std::string framed;
    REQUIRE(framer.pop(framed));
    REQUIRE(framed == tg);
    mp::dsmr::Result r = decode(tg);
    double imp = num(r, "energy_import_kwh"), exp = num(r, "energy_export_kwh");
    double pi = num(r, "power_import_w"), pe = num(r, "power_export_w");
    CHECK(pi >= 0);
    CHECK(pe >= 0);
    CHECK((pi == 0 || pe == 0));
    CHECK(num(r, "power_net_w") == doctest::Approx(pi - pe));
    CHECK(num(r, "voltage_l1_v") > 220);
    CHECK(num(r, "voltage_l1_v") < 245);
    double phases = num(r, "power_l1_w") + num(r, "power_l2_w") + num(r, "power_l3_w") -
                    num(r, "power_export_l1_w");
    CHECK(std::fabs(phases - (pi - pe)) <= 2.0);  // each shown value is rounded to 1 W
    if (last_imp >= 0) {
      CHECK(imp >= last_imp);
      CHECK(exp >= last_exp);
      integral_imp_kwh += pi * 10 / 3.6e6;  // the power shown covers the previous 10 s
      integral_exp_kwh += pe * 10 / 3.6e6;
    } else {
      first_imp = imp;
      first_exp = exp;
    }
    last_imp = imp;
    last_exp = exp;
    const mp::Value* gas = r.reading.find("gas_m3");
    REQUIRE(gas);
    CHECK(gas->number >= last_gas);
    CHECK(gas->time_ns % (300 * kNs) == 0);
    CHECK(gas->time_ns <= t);
    CHECK(t - gas->time_ns < 300 * kNs);
    CHECK(gas->time_ns >= last_gas_time);
    last_gas = gas->number;
    last_gas_time = gas->time_ns;

    double local_h = static_cast<double>((t - start) / kNs) / 3600.0;
    if (local_h >= 1 && local_h < 5) {
      min_night = std::min(min_night, pi);
      max_night = std::max(max_night, pi);
      CHECK(num(r, "tariff") == 1);
      CHECK(pe == 0);
    }
    max_export = std::max(max_export, pe);
    max_import = std::max(max_import, pi);
    ++samples;
  }
  CHECK(samples == 8641);
  CHECK(min_night >= 300);
  CHECK(max_night <= 550);
  CHECK(max_export > 1500);  // solar at midday
  CHECK(max_export < 3200);
  CHECK(max_import > 1800);  // evening peak
  // The registers integrate the power: within 1 % (+ rounding of the shown values).
  CHECK(last_imp - first_imp == doctest::Approx(integral_imp_kwh).epsilon(0.01));
  CHECK(last_exp - first_exp == doctest::Approx(integral_exp_kwh).epsilon(0.01));
  CHECK(last_imp - first_imp > 3);
  CHECK(last_imp - first_imp < 20);
  CHECK(last_exp - first_exp > 3);
}

TEST_CASE("a winter day: gas mostly in the morning and evening, little solar") {
  uint64_t seed = 5;
  double gas_morning = 0, gas_midday = 0, gas_evening = 0, gas_total = 0, max_solar = 0;
  for (int m = 0; m < 24 * 60; ++m) {
    int64_t t = utc(2024, 1, 16, 23) + m * 60 * kNs;  // Wed 2024-01-17 local
    mp::dsmr::SimPower p = mp::dsmr::sim_power(t, seed);
    double h = m / 60.0;
    gas_total += mp::dsmr::sim_power(t + 30 * kNs, seed).gas_m3_per_h / 60;
    if (h >= 6 && h < 9) gas_morning += p.gas_m3_per_h / 60;
    if (h >= 11 && h < 14) gas_midday += p.gas_m3_per_h / 60;
    if (h >= 17 && h < 22) gas_evening += p.gas_m3_per_h / 60;
    max_solar = std::max(max_solar, p.solar_l1);
    if (h < 7 || h > 17.5) CHECK(p.solar_l1 == 0);
  }
  CHECK(gas_morning > 2 * gas_midday);
  CHECK(gas_evening > 2 * gas_midday);
  CHECK(max_solar > 200);
  CHECK(max_solar < 1300);

  // The gas register over a day of telegrams every minute.
  mp::dsmr::SimState s;
  s.seed = seed;
  mp::dsmr::Result first = decode(mp::dsmr::make_telegram(utc(2024, 1, 16, 23), s));
  mp::dsmr::Result last;
  for (int m = 1; m <= 24 * 60; ++m)
    last = decode(mp::dsmr::make_telegram(utc(2024, 1, 16, 23) + m * 60 * kNs, s));
  double day_gas = last.reading.find("gas_m3")->number - first.reading.find("gas_m3")->number;
  CHECK(day_gas == doctest::Approx(gas_total).epsilon(0.002));
  CHECK(day_gas > 3);
  CHECK(day_gas < 15);
}

TEST_CASE("a time jump integrates the gap; time going back does not") {
  mp::dsmr::SimState a, b;
  a.seed = b.seed = 9;
  int64_t t0 = utc(2024, 4, 10, 6);
  mp::dsmr::make_telegram(t0, a);
  mp::dsmr::make_telegram(t0, b);
  // a: one telegram per second for an hour; b: one telegram an hour later.
  std::string ta;
  for (int i = 1; i <= 3600; ++i) ta = mp::dsmr::make_telegram(t0 + i * kNs, a);
  std::string tb = mp::dsmr::make_telegram(t0 + 3600 * kNs, b);
  mp::dsmr::Result ra = decode(ta), rb = decode(tb);
  CHECK(num(ra, "energy_import_kwh") ==
        doctest::Approx(num(rb, "energy_import_kwh")).epsilon(1e-4));
  CHECK(num(ra, "energy_export_kwh") ==
        doctest::Approx(num(rb, "energy_export_kwh")).epsilon(1e-4));
  CHECK(ra.reading.find("gas_m3")->number ==
        doctest::Approx(rb.reading.find("gas_m3")->number).epsilon(1e-4));
  double before = num(rb, "energy_import_kwh");
  mp::dsmr::Result back = decode(mp::dsmr::make_telegram(t0, b));
  CHECK(num(back, "energy_import_kwh") == before);
}
