// Simulated DSMR 5 meter (Dutch household with solar panels and a gas meter). Pure and
// deterministic: the telegram depends only on the seed, the state and the times passed in;
// time acceleration is the caller's job (it passes simulated times).
//
// Model (local time = Europe/Amsterdam by the EU rules):
//  - household load: a base load of 300-500 W drifting slowly, a morning peak around 07:30
//    (09:00 at weekends), an evening peak around 18:30, and short appliance spikes;
//    split over the phases 40/35/25 %;
//  - solar on L1: a bell between sunrise and sunset (day length from the season), peak up to
//    about 3 kW in summer (about 1 kW in winter), dimmed by clouds that change every few minutes
//    and by a per-day overcast level;
//  - the meter sums the phases: power_import = max(net, 0), power_export = max(-net, 0);
//  - energy registers integrate the power over the time since the previous telegram (steps of
//    at most 60 s, power at each step's midpoint) into T1 (low: weekdays 23:00-07:00 and
//    weekends; public holidays are not modelled) or T2 (normal);
//  - gas (M-Bus channel 1, device type 3) rises mostly in the morning and evening, more in
//    winter; like a real DSMR 5 meter it reports the value captured at the last 5-minute
//    boundary with that capture's timestamp.
#pragma once

#include <cstdint>
#include <string>

namespace mp::dsmr {

struct SimState {
  uint64_t seed = 1;
  bool started = false;  // set by the first make_telegram(); counters start from the seed then
  int64_t last_ns = 0;   // time of the previous telegram
  double import_t1_kwh = 0, import_t2_kwh = 0, export_t1_kwh = 0, export_t2_kwh = 0;
  double gas_m3 = 0;           // running total
  double gas_reported_m3 = 0;  // value at the last 5-minute capture
  int64_t gas_capture_ns = 0;  // time of that capture
  uint32_t power_failures = 0, long_power_failures = 0;
};

// Household load and solar production in W at a time (no state): the profile the meter sees.
struct SimPower {
  double load_l[3] = {0, 0, 0};
  double solar_l1 = 0;
  double gas_m3_per_h = 0;
};
SimPower sim_power(int64_t unix_ns, uint64_t seed);

// 1 = low (night, weekend), 2 = normal.
int sim_tariff(int64_t unix_ns);

// "YYMMDDhhmmssX" Dutch local time with X = 'S' (summer, UTC+2) or 'W' (winter, UTC+1).
std::string dsmr_timestamp(int64_t unix_ns);

// The next telegram at `unix_ns` (CRLF line ends, valid CRC). Updates `state`.
std::string make_telegram(int64_t unix_ns, SimState& state);

}  // namespace mp::dsmr
