// Rules engine: a simulated meter and clock drive the pure engine through whole days.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "actuate/rules.h"
#include "actuate/state_store.h"

using namespace mp::actuate;

namespace {

constexpr int64_t S = kNsPerSec;
// 2024-06-03 00:00:00 UTC, a Monday; tests use UTC as local time.
constexpr int64_t T0 = int64_t{1717372800} * S;

int64_t at(int h, int m, int s = 0) { return T0 + (int64_t{h} * 3600 + m * 60 + s) * S; }

std::string hms(int64_t t) {
  int64_t s = (t - T0) / S;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d", static_cast<int>(s / 3600),
                static_cast<int>(s / 60 % 60), static_cast<int>(s % 60));
  return buf;
}

LocalTime lt_of(int64_t t, int weekday = 1) {
  int64_t s = (t - T0) / S;
  return {weekday, static_cast<int>(s / 60 % 1440)};
}

mp::Reading reading(double net) {
  mp::Reading r;
  r.meter = "main";
  r.protocol = "dsmr";
  r.values.push_back({"power_net_w", net, "", false, "W", "", 0, ""});
  return r;
}

RelaySpec relay(std::string name, int priority, double load, double on_below) {
  RelaySpec r;
  r.name = std::move(name);
  r.meter = "main";
  r.output = r.name;
  r.priority = priority;
  r.load_w = load;
  r.on_below_w = on_below;
  r.off_above_w = 100;
  r.on_delay_s = 60;
  r.off_delay_s = 120;
  return r;
}

// Every relay starts known and off (as if restored from a state file).
EngineState all_off(const std::vector<RelaySpec>& rs) {
  EngineState s;
  for (const auto& r : rs) {
    RelayState st;
    st.name = r.name;
    s.relays.push_back(st);
  }
  return s;
}

struct Event {
  std::string relay;
  std::string time;
  bool on;
  bool operator==(const Event&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Event& e) {
  return os << "{" << e.relay << " " << e.time << " " << (e.on ? "on" : "off") << "}";
}

// A meter that sees base(t) plus the load of every relay that is on, one reading a second.
struct Sim {
  Engine eng;
  std::map<std::string, double> load;
  std::function<double(int64_t)> base;
  std::function<void(mp::Reading&, int64_t, double)> decorate;  // add values to a reading
  std::function<bool(const Decision&)> output_ok = [](const Decision&) { return true; };
  std::function<LocalTime(int64_t)> local = [](int64_t t) { return lt_of(t); };
  std::vector<Event> events;        // confirmed changes
  std::vector<Decision> decisions;  // everything the engine asked for
  std::vector<int64_t> switch_times;

  Sim(SiteSpec site, std::vector<RelaySpec> rs) : eng(site, rs) {
    for (const auto& r : rs) load[r.name] = r.load_w;
  }
  double grid(int64_t t) const {
    double p = base(t);
    for (const auto& [name, w] : load)
      if (eng.state(name)) p += w;
    return p;
  }
  void run(int64_t from, int64_t to) {
    for (int64_t t = from; t < to; t += S) {
      double net = grid(t);
      mp::Reading rd = reading(net);
      if (decorate) decorate(rd, t, net);
      handle(t, eng.step(t, local(t), &rd));
    }
  }
  void tick(int64_t t) { handle(t, eng.step(t, local(t), nullptr)); }
  void handle(int64_t t, const std::vector<Decision>& ds) {
    for (const auto& d : ds) {
      decisions.push_back(d);
      bool ok = output_ok(d);
      CHECK(eng.confirm(d.relay, ok, t));
      if (ok && d.old_state != d.new_state) {
        events.push_back({d.relay, hms(t), d.new_state});
        switch_times.push_back(t);
      }
    }
  }
};

// Piecewise constant profile: {start, value} sorted by start.
std::function<double(int64_t)> steps(std::vector<std::pair<int64_t, double>> v) {
  return [v](int64_t t) {
    double out = 0;
    for (const auto& [s, w] : v)
      if (t >= s) out = w;
    return out;
  };
}

}  // namespace

TEST_CASE("validate reports problems by field") {
  RelaySpec r = relay("boiler", 1, 2000, 200);
  r.off_above_w = 100;
  r.max_switches_per_hour = 1;
  r.stale_after_s = 0;
  r.conditions.push_back(Condition::window(600, 600));
  r.conditions.push_back(Condition::value_range("voltage_l1_v", 250, 210));
  r.conditions.push_back(Condition::value_range("", std::nullopt, std::nullopt));
  std::vector<Problem> expect = {
      {"on_below_w", "must be below off_above_w (100)"},
      {"max_switches_per_hour", "must be 0 (unlimited) or at least 2 (one on and one off)"},
      {"stale_after_s", "must be a positive number of seconds"},
      {"conditions[0].windows[0]",
       "must end at another time than it starts (the window would be empty)"},
      {"conditions[1].max", "must not be below min (250)"},
      {"conditions[2].name", "must name a reading value"},
      {"conditions[2].min", "needs min, max or both"},
  };
  CHECK(validate(r) == expect);
  CHECK(validate(relay("ok", 1, 1000, -1500)).empty());

  SiteSpec s;
  s.demand_limit_w = 2500;
  s.margin_w = 3000;
  CHECK(validate(s) == std::vector<Problem>{{"margin", "must be below demand_limit_w (2500)"}});
  Failsafe f;
  CHECK(parse_failsafe("keep", f));
  CHECK(f == Failsafe::keep);
  CHECK_FALSE(parse_failsafe("Off", f));
}

TEST_CASE("one relay through a day: night import, clouds at noon, evening import") {
  RelaySpec r = relay("boiler", 1, 1000, -1500);
  r.min_on_s = 600;
  r.min_off_s = 300;
  Sim sim(SiteSpec{}, {r});
  sim.eng.import_state(all_off({r}));
  auto alternate = [](int64_t from, double even, double odd) {
    return [=](int64_t t) { return ((t - from) / (30 * S)) % 2 == 0 ? even : odd; };
  };
  auto plain = steps({{at(0, 0), 300},
                      {at(9, 0), -2000},
                      {at(12, 0), 500},  // a cloud: import for 30 s only
                      {at(12, 0, 30), -2000},
                      {at(12, 5), 500},  // a longer cloud: off after off_delay
                      {at(12, 8), -2000},
                      {at(16, 0), -300},  // 60 s of import: below off_delay
                      {at(16, 1), -2000},
                      {at(16, 5), -300},
                      {at(18, 0), 800}});
  auto around_off = alternate(at(12, 30), -850, -950);  // net +150 / +50 around off_above 100
  auto around_on = alternate(at(17, 0), -1450, -1550);  // around on_below -1500
  sim.base = [&](int64_t t) {
    if (t >= at(12, 30) && t < at(13, 0)) return around_off(t);
    if (t >= at(17, 0) && t < at(17, 30)) return around_on(t);
    return plain(t);
  };
  sim.run(at(0, 0), at(24, 0));
  std::vector<Event> expect = {{"boiler", "09:01:00", true},
                               {"boiler", "12:07:00", false},
                               {"boiler", "12:12:00", true},  // min_off_s holds 3 minutes
                               {"boiler", "16:07:00", false}};
  CHECK(sim.events == expect);
  REQUIRE(sim.decisions.size() == 4);
  CHECK(sim.decisions[0].mode == "auto");
  CHECK(sim.decisions[0].reason == "net -2000 W below -1500 W for 60 s");
  CHECK(sim.decisions[1].reason == "net 1500 W above 100 W for 120 s");
  CHECK(sim.decisions[2].reason == "net -2000 W below -1500 W for 240 s");
  CHECK(sim.decisions[3].reason == "net 700 W above 100 W for 120 s");
}

TEST_CASE("three relays: surplus goes by priority, load_w staging, lowest off first") {
  std::vector<RelaySpec> rs = {relay("a", 30, 1000, -1200), relay("b", 20, 1500, -1700),
                               relay("c", 10, 2000, -2200)};
  SiteSpec site;
  site.settle_s = 5;
  Sim sim(site, rs);
  sim.eng.import_state(all_off(rs));
  sim.base = steps({{at(0, 0), 300},
                    {at(9, 0), -2000},
                    {at(10, 0), -4000},
                    {at(11, 0), -6500},
                    {at(15, 0), -3000},
                    {at(17, 0), -500},
                    {at(19, 0), 800}});
  sim.run(at(0, 0), at(24, 0));
  std::vector<Event> expect = {
      {"a", "09:01:00", true},   // -2000 is enough for a only
      {"b", "10:01:00", true},   // c also saw -3000, but not with b's 1500 W counted
      {"c", "11:01:00", true},   //
      {"c", "15:02:00", false},  // import: lowest priority first; a and b keep running
      {"b", "17:02:00", false},  // import again: b, then a after settling + off_delay
      {"a", "17:04:05", false},
  };
  CHECK(sim.events == expect);
}

TEST_CASE("staging: a big surplus switches relays one on_delay apart") {
  std::vector<RelaySpec> rs = {relay("a", 30, 1000, -1200), relay("b", 20, 1000, -1200)};
  Sim sim(SiteSpec{}, rs);
  sim.eng.import_state(all_off(rs));
  sim.base = steps({{at(0, 0), 300}, {at(10, 0), -5000}});
  sim.run(at(9, 59), at(10, 10));
  std::vector<Event> expect = {{"a", "10:01:00", true}, {"b", "10:02:00", true}};
  CHECK(sim.events == expect);
}

TEST_CASE("noise around the threshold never exceeds max_switches_per_hour") {
  RelaySpec r = relay("pump", 1, 0, -1000);
  r.on_delay_s = 0;
  r.off_delay_s = 0;
  r.off_above_w = 0;
  uint32_t seed = 12345;
  std::vector<double> noise;
  for (int i = 0; i < 3 * 360; ++i) {
    seed = seed * 1103515245u + 12345u;
    noise.push_back((seed >> 16) % 2 ? -3000.0 : 3000.0);
  }
  auto base = [&](int64_t t) { return noise[static_cast<size_t>((t - at(10, 0)) / (10 * S))]; };
  auto max_in_hour = [](const std::vector<int64_t>& ts) {
    size_t best = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
      size_t n = 0;
      for (size_t j = 0; j <= i; ++j)
        if (ts[j] > ts[i] - 3600 * S) ++n;
      best = std::max(best, n);
    }
    return best;
  };
  Sim unlimited(SiteSpec{}, {r});
  unlimited.eng.import_state(all_off({r}));
  unlimited.base = base;
  unlimited.run(at(10, 0), at(13, 0));
  CHECK(unlimited.switch_times.size() > 100);

  r.max_switches_per_hour = 4;
  Sim sim(SiteSpec{}, {r});
  sim.eng.import_state(all_off({r}));
  sim.base = base;
  sim.run(at(10, 0), at(13, 0));
  CHECK(max_in_hour(sim.switch_times) == 4);
  CHECK(sim.switch_times.size() >= 8);
}

TEST_CASE("min_on_s and min_off_s hold the relay") {
  struct Row {
    double min_on, min_off;
    std::vector<std::pair<int64_t, double>> profile;
    std::vector<std::string> expect;  // switch times, alternating on/off
  };
  std::vector<Row> rows = {
      {0, 0, {{at(10, 0), -2000}, {at(10, 0, 10), 500}}, {"10:00:00", "10:00:10"}},
      {300, 0, {{at(10, 0), -2000}, {at(10, 0, 10), 500}}, {"10:00:00", "10:05:00"}},
      {0,
       300,
       {{at(10, 0), -2000}, {at(10, 0, 10), 500}, {at(10, 0, 20), -2000}},
       {"10:00:00", "10:00:10", "10:05:10"}},
  };
  for (const auto& row : rows) {
    RelaySpec r = relay("r", 1, 0, -1500);
    r.on_delay_s = 0;
    r.off_delay_s = 0;
    r.min_on_s = row.min_on;
    r.min_off_s = row.min_off;
    Sim sim(SiteSpec{}, {r});
    sim.eng.import_state(all_off({r}));
    sim.base = steps(row.profile);
    sim.run(at(10, 0), at(10, 10));
    std::vector<std::string> got;
    for (const auto& e : sim.events) got.push_back(e.time);
    CHECK(got == row.expect);
  }
}

TEST_CASE("conditions: time window, weekdays, tariff, voltage") {
  SUBCASE("time window, off when it closes (respecting min_on_s)") {
    RelaySpec r = relay("r", 1, 0, -1500);
    r.conditions.push_back(Condition::window(10 * 60, 11 * 60));
    Sim sim(SiteSpec{}, {r});
    sim.eng.import_state(all_off({r}));
    sim.base = [](int64_t) { return -2000.0; };
    sim.run(at(9, 0), at(12, 0));
    std::vector<Event> expect = {{"r", "10:00:00", true}, {"r", "11:00:00", false}};
    CHECK(sim.events == expect);
    CHECK(sim.decisions[1].reason == "condition time 10:00-11:00 not met (now 11:00)");

    r.min_on_s = 7200;
    Sim held(SiteSpec{}, {r});
    held.eng.import_state(all_off({r}));
    held.base = [](int64_t) { return -2000.0; };
    held.run(at(9, 0), at(13, 0));
    std::vector<Event> expect2 = {{"r", "10:00:00", true}, {"r", "12:00:00", false}};
    CHECK(held.events == expect2);
  }
  SUBCASE("several windows: on in any of them, off between them") {
    RelaySpec r = relay("r", 1, 0, -1500);
    r.on_delay_s = 0;
    r.conditions.push_back(Condition::any_window({{7 * 60, 9 * 60}, {17 * 60, 20 * 60}}));
    CHECK(validate(r).empty());
    CHECK(r.conditions[0].describe() == "time 07:00-09:00 or 17:00-20:00");
    Sim sim(SiteSpec{}, {r});
    sim.eng.import_state(all_off({r}));
    sim.base = [](int64_t) { return -2000.0; };
    sim.run(at(6, 0), at(21, 0));
    std::vector<Event> expect = {{"r", "07:00:00", true},
                                 {"r", "09:00:00", false},
                                 {"r", "17:00:00", true},
                                 {"r", "20:00:00", false}};
    CHECK(sim.events == expect);
    RelaySpec bad = r;
    bad.conditions[0] = Condition::any_window({{7 * 60, 9 * 60}, {600, 600}});
    auto probs = validate(bad);
    REQUIRE(probs.size() == 1);
    CHECK(probs[0].field == "conditions[0].windows[1]");
  }
  SUBCASE("window across midnight and weekdays") {
    RelaySpec r = relay("r", 1, 0, -1500);
    r.on_delay_s = 0;
    r.conditions.push_back(Condition::window(22 * 60, 6 * 60));
    r.conditions.push_back(Condition::weekdays(0b0111110));  // Mon-Fri
    Sim sim(SiteSpec{}, {r});
    sim.eng.import_state(all_off({r}));
    sim.base = [](int64_t) { return -2000.0; };
    int weekday = 0;  // Sunday first
    sim.local = [&](int64_t t) { return lt_of(t, weekday); };
    sim.run(at(23, 0), at(23, 5));
    CHECK(sim.events.empty());
    weekday = 1;
    sim.run(at(23, 5), at(23, 10));
    CHECK(sim.events == std::vector<Event>{{"r", "23:05:00", true}});
    CHECK(Condition::weekdays(0b0111110).describe() == "weekdays Mon,Tue,Wed,Thu,Fri");
  }
  SUBCASE("tariff == 2 (text value) and a voltage maximum") {
    RelaySpec r = relay("r", 1, 0, -1500);
    r.on_delay_s = 0;
    r.conditions.push_back(Condition::equals("tariff", 2));
    r.conditions.push_back(Condition::value_range("voltage_l1_v", std::nullopt, 250));
    Sim sim(SiteSpec{}, {r});
    sim.eng.import_state(all_off({r}));
    sim.base = [](int64_t) { return -2000.0; };
    sim.decorate = [](mp::Reading& rd, int64_t t, double) {
      mp::Value tariff{"tariff", 0,  t < at(10, 1) || t >= at(10, 2) ? "0002" : "0001",
                       true,     "", "0-0:96.14.0",
                       0, ""};
      rd.values.push_back(tariff);
      rd.values.push_back({"voltage_l1_v", t < at(10, 3) ? 235.0 : 251.0, "", false, "V", "", 0, ""});
    };
    sim.run(at(10, 0), at(10, 4));
    std::vector<Event> expect = {{"r", "10:00:00", true},
                                 {"r", "10:01:00", false},
                                 {"r", "10:02:00", true},
                                 {"r", "10:03:00", false}};
    CHECK(sim.events == expect);
    CHECK(sim.decisions[1].reason == "condition tariff == 2 not met (tariff 1)");
    CHECK(sim.decisions[3].reason == "condition voltage_l1_v <= 250 not met (voltage_l1_v 251)");
  }
  SUBCASE("a value the meter never sent makes the condition false") {
    RelaySpec r = relay("r", 1, 0, -1500);
    r.on_delay_s = 0;
    r.conditions.push_back(Condition::equals("tariff", 2));
    Sim sim(SiteSpec{}, {r});
    sim.eng.import_state(all_off({r}));
    sim.base = [](int64_t) { return -2000.0; };
    sim.run(at(10, 0), at(10, 5));
    CHECK(sim.events.empty());
  }
}

namespace {

// The meter's running average import of the current quarter, and quarter averages.
struct DemandMeter {
  int64_t q0 = -1;
  double joules = 0;
  std::vector<double> quarters;  // completed quarter averages (W)
  bool energy_only = false;
  double counter_kwh = 1000;
  void add(mp::Reading& rd, int64_t t, double net) {
    int64_t q = t / (900 * S) * (900 * S);
    if (q != q0) {
      if (q0 >= 0) quarters.push_back(joules / 900);
      q0 = q;
      joules = 0;
    }
    double imp = std::max(0.0, net);
    double avg = t > q0 ? joules / (static_cast<double>(t - q0) / S) : imp;
    rd.values.push_back({"power_import_w", imp, "", false, "W", "", 0, ""});
    if (energy_only)
      rd.values.push_back({"energy_import_kwh", counter_kwh, "", false, "kWh", "", 0, ""});
    else
      rd.values.push_back({"demand_avg_w", avg, "", false, "W", "", 0, ""});
    joules += imp;  // this power lasts until the next reading, 1 s later
    counter_kwh += imp / 3.6e6;
  }
};

struct PeakDay {
  std::vector<Event> events;
  std::vector<Decision> decisions;
  std::vector<double> quarters;
};

PeakDay peak_day(std::optional<double> limit, bool energy_only) {
  // A boiler that runs whenever it may, an EV charger from 18:00 to 23:00, and cooking.
  RelaySpec boiler = relay("boiler", 10, 2500, 20000);
  boiler.off_above_w = 30000;
  boiler.on_delay_s = 0;
  boiler.off_delay_s = 0;
  RelaySpec ev = boiler;
  ev.name = ev.output = "ev";
  ev.priority = 20;
  ev.load_w = 3000;
  ev.conditions.push_back(Condition::window(18 * 60, 23 * 60));
  SiteSpec site;
  site.demand_limit_w = limit;
  site.margin_w = 245;
  Sim sim(site, {boiler, ev});
  sim.eng.import_state(all_off({boiler, ev}));
  sim.base = steps({{at(0, 0), 300}, {at(18, 5), 3800}, {at(18, 40), 300}});
  DemandMeter dm;
  dm.energy_only = energy_only;
  sim.decorate = [&](mp::Reading& rd, int64_t t, double net) { dm.add(rd, t, net); };
  sim.run(at(0, 0), at(24, 0) + S);
  return {sim.events, sim.decisions, dm.quarters};
}

}  // namespace

TEST_CASE("peak shaving keeps every quarter-hour under the limit") {
  PeakDay free = peak_day(std::nullopt, false);
  REQUIRE(free.quarters.size() == 96);
  double worst = *std::max_element(free.quarters.begin(), free.quarters.end());
  CHECK(worst == doctest::Approx(9300));  // 300 base + 3500 cooking + 2500 + 3000
  // 18:00-18:15: the ev switches on at 18:00:00 and the meter shows it from 18:00:01.
  CHECK(free.quarters[72] == doctest::Approx((2800.0 + 5800 * 299 + 9300 * 600) / 900));

  for (bool energy_only : {false, true}) {
    CAPTURE(energy_only);
    PeakDay d = peak_day(6000, energy_only);
    REQUIRE(d.quarters.size() == 96);
    for (size_t i = 0; i < d.quarters.size(); ++i) {
      CAPTURE(i);
      CHECK(d.quarters[i] < 6000);
    }
    CHECK(d.quarters[72] == doctest::Approx((2800.0 * 15 + 5800 * 285 + 9300 + 3800 * 599) / 900));
    // The EV waits until its load fits the quarter, both relays are shed when cooking
    // starts, and they come back in later quarters once there is room.
    REQUIRE(d.events.size() >= 7);
    CHECK(d.events[0] == Event{"boiler", "00:00:00", true});
    // 3000 W for the remaining 886 s of the quarter fit under 5755 W with 2800 W running.
    CHECK(d.events[1] == Event{"ev", "18:00:14", true});
    CHECK(d.events[2] == Event{"boiler", "18:05:00", false});
    CHECK(d.events[3] == Event{"ev", "18:05:00", false});
    // Next quarter: the boiler fits once enough of the quarter is left at 3800 W; not the ev.
    CHECK(d.events[4] == Event{"boiler", "18:18:17", true});
    CHECK(d.events[5] == Event{"boiler", "18:30:00", false});  // 6300 W at a quarter start
    CHECK(d.events[6] == Event{"ev", "18:35:15", true});
    bool ev_back = false, boiler_back = false;
    for (size_t i = 4; i < d.events.size(); ++i) {
      if (d.events[i].on && d.events[i].relay == "ev") ev_back = true;
      if (d.events[i].on && d.events[i].relay == "boiler") boiler_back = true;
    }
    CHECK(ev_back);
    CHECK(boiler_back);
    CHECK(d.decisions[2].reason.rfind("peak shaving: quarter-hour average projected ", 0) == 0);
  }
}

TEST_CASE("stale data: failsafe at start and when the meter goes silent") {
  RelaySpec on_safe = relay("heat", 2, 1000, -1500);
  on_safe.failsafe = Failsafe::on;
  RelaySpec off_safe = relay("boiler", 1, 1000, -1500);
  RelaySpec keep = relay("pool", 0, 1000, -1500);
  keep.failsafe = Failsafe::keep;
  Engine eng(SiteSpec{}, {on_safe, off_safe, keep});

  // Start, no data yet: fail-safe states, emitted even where the believed state matches
  // (the real state is unknown); "keep" does nothing.
  auto ds = eng.step(at(10, 0), lt_of(at(10, 0)), nullptr);
  REQUIRE(ds.size() == 2);
  CHECK(ds[0].relay == "heat");
  CHECK(ds[0].new_state == true);
  CHECK(ds[0].mode == "failsafe");
  CHECK(ds[0].reason == "no data from meter 'main' yet: failsafe on");
  CHECK(ds[1].relay == "boiler");
  CHECK(ds[1].new_state == false);
  for (auto& d : ds) eng.confirm(d.relay, true, at(10, 0));
  CHECK(eng.step(at(10, 0, 1), lt_of(at(10, 0, 1)), nullptr).empty());

  // Fresh data: the rules take over ("heat" goes off: no surplus; "pool" gets a known state).
  mp::Reading rd = reading(-2000);
  ds = eng.step(at(10, 0, 2), lt_of(at(10, 0, 2)), &rd);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].relay == "pool");
  CHECK(ds[0].new_state == false);
  for (auto& d : ds) eng.confirm(d.relay, true, at(10, 0, 2));
  for (int s = 3; s < 62; ++s) {
    rd = reading(-2000);
    ds = eng.step(at(10, 0, s), lt_of(at(10, 0, s)), &rd);
    for (auto& d : ds) eng.confirm(d.relay, true, at(10, 0, s));
  }
  CHECK(eng.state("heat"));
  CHECK(eng.state("boiler") == false);  // staged behind heat
  CHECK(eng.state("pool") == false);

  // Meter silent: ticks only. 30 s is still fresh, 31 s is not.
  int64_t last = at(10, 1, 1);
  CHECK(eng.step(last + 30 * S, lt_of(last), nullptr).empty());
  ds = eng.step(last + 31 * S, lt_of(last), nullptr);
  REQUIRE(ds.size() == 0);  // heat is already on (its fail-safe), boiler already off
  eng.set_override("pool", Override::on);
  ds = eng.step(last + 32 * S, lt_of(last), nullptr);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].mode == "manual");  // an override wins over the fail-safe
  eng.confirm("pool", true, last + 32 * S);
  eng.set_override("pool", Override::automatic);
  CHECK(eng.step(last + 33 * S, lt_of(last), nullptr).empty());  // keep: stays on

  RelaySpec lone = relay("lone", 1, 1000, -1500);
  Engine e2(SiteSpec{}, {lone});
  e2.import_state(all_off({lone}));
  rd = reading(-2000);
  for (int s = 0; s <= 60; ++s) {
    rd = reading(-2000);
    for (auto& d : e2.step(at(11, 0, s), lt_of(at(11, 0, s)), &rd)) e2.confirm(d.relay, true, 0);
  }
  CHECK(e2.state("lone"));
  ds = e2.step(at(11, 1, 31), lt_of(at(11, 1, 31)), nullptr);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].mode == "failsafe");
  CHECK(ds[0].new_state == false);
  CHECK(ds[0].reason == "no fresh data from meter 'main' for 31 s: failsafe off");
}

TEST_CASE("restart from persisted state: same switches as without restart") {
  RelaySpec r = relay("boiler", 1, 1000, -1500);
  r.min_on_s = 600;
  r.min_off_s = 300;
  r.max_switches_per_hour = 6;
  auto base = steps(
      {{at(0, 0), 300}, {at(9, 0), -2000}, {at(9, 30), 500}, {at(9, 33), -2000}, {at(12, 0), 800}});
  Sim straight(SiteSpec{}, {r});
  straight.eng.import_state(all_off({r}));
  straight.base = base;
  straight.run(at(8, 0), at(13, 0));
  std::vector<Event> expect = {{"boiler", "09:01:00", true},
                               {"boiler", "09:32:00", false},
                               {"boiler", "09:37:00", true},
                               {"boiler", "12:02:00", false}};
  CHECK(straight.events == expect);

  // Stop at 09:34 (inside min_off_s, on-timer running), restart 5 s later.
  for (int64_t stop : {at(9, 34), at(9, 20), at(9, 31)}) {
    CAPTURE(hms(stop));
    Sim first(SiteSpec{}, {r});
    first.eng.import_state(all_off({r}));
    first.base = base;
    first.run(at(8, 0), stop);
    std::string text = serialize_state(first.eng.export_state());
    EngineState loaded;
    std::string err;
    REQUIRE(parse_state(text, loaded, err));
    CHECK(loaded == first.eng.export_state());

    Sim second(SiteSpec{}, {r});
    second.eng.import_state(loaded);
    second.base = base;
    second.tick(stop + 5 * S);  // restarted, no reading yet: no switch
    second.run(stop + 5 * S, at(13, 0));
    std::vector<Event> all = first.events;
    all.insert(all.end(), second.events.begin(), second.events.end());
    CHECK(all == expect);
    CHECK(second.decisions.size() == second.events.size());
  }
}

TEST_CASE("manual override with expiry") {
  RelaySpec r = relay("boiler", 1, 1000, -1500);
  r.min_on_s = 3600;
  Sim sim(SiteSpec{}, {r});
  sim.eng.import_state(all_off({r}));
  sim.base = [](int64_t) { return 500.0; };
  sim.run(at(10, 0), at(10, 1));
  CHECK(sim.eng.set_override("boiler", Override::on, at(10, 30)));
  CHECK_FALSE(sim.eng.set_override("nope", Override::on));
  sim.run(at(10, 1), at(11, 5));
  // Back in auto at 10:30 the import says off, but min_on_s counts from the manual switch.
  std::vector<Event> expect = {{"boiler", "10:01:00", true}, {"boiler", "11:01:00", false}};
  CHECK(sim.events == expect);
  REQUIRE(sim.decisions.size() == 2);
  CHECK(sim.decisions[0].mode == "manual");
  CHECK(sim.decisions[0].reason == "manual override on (expires in 1740 s)");
  CHECK(sim.decisions[1].mode == "auto");
  CHECK(sim.decisions[1].reason == "net 1500 W above 100 W for 3599 s");

  // Override off during a surplus, without expiry, then back to auto.
  sim.base = [](int64_t) { return -3000.0; };
  sim.run(at(11, 5), at(11, 10));
  CHECK(sim.events.size() == 3);  // on again at 11:06:00
  sim.eng.set_override("boiler", Override::off);
  sim.run(at(11, 10), at(12, 0));
  REQUIRE(sim.events.size() == 4);
  CHECK(sim.events[3] == Event{"boiler", "11:10:00", false});
  CHECK(sim.eng.status(at(12, 0))[0].override_mode == Override::off);
  sim.eng.set_override("boiler", Override::automatic);
  sim.run(at(12, 0), at(12, 1));
  REQUIRE(sim.events.size() == 5);
  CHECK(sim.events[4] == Event{"boiler", "12:00:00", true});  // surplus lasted all along
}

TEST_CASE("a failed switch is retried with backoff and the state is never wrong") {
  RelaySpec r = relay("boiler", 1, 1000, -1500);
  r.on_delay_s = 0;
  Sim sim(SiteSpec{}, {r});
  sim.eng.import_state(all_off({r}));
  sim.base = [](int64_t) { return -2000.0; };
  std::vector<std::string> attempts;
  int failures_left = 3;
  std::vector<bool> believed;
  for (int64_t t = at(10, 0); t < at(10, 1); t += S) {
    mp::Reading rd = reading(sim.grid(t));
    auto ds = sim.eng.step(t, lt_of(t), &rd);
    for (auto& d : ds) {
      bool ok = failures_left-- <= 0;
      attempts.push_back(hms(t) + " " + d.reason);
      sim.eng.confirm(d.relay, ok, t);
      // The engine believes "on" only after a successful switch.
      CHECK(sim.eng.state("boiler") == ok);
    }
    believed.push_back(sim.eng.state("boiler"));
  }
  std::vector<std::string> expect = {
      "10:00:00 net -2000 W below -1500 W for 0 s",
      "10:00:05 net -2000 W below -1500 W for 5 s (retry 1)",
      "10:00:15 net -2000 W below -1500 W for 15 s (retry 2)",
      "10:00:35 net -2000 W below -1500 W for 35 s (retry 3)",
  };
  CHECK(attempts == expect);
  CHECK(std::count(believed.begin(), believed.end(), true) == 60 - 35);

  // No confirmation at all: counts as failed after pending_timeout_s.
  Engine e(SiteSpec{}, {r});
  e.import_state(all_off({r}));
  mp::Reading rd = reading(-2000);
  CHECK(e.step(at(10, 0), lt_of(at(10, 0)), &rd).size() == 1);
  CHECK(e.step(at(10, 1), lt_of(at(10, 1)), &rd).empty());        // 60 s: still waiting
  CHECK(e.step(at(10, 1, 1), lt_of(at(10, 1, 1)), &rd).empty());  // failed, retry in 5 s
  CHECK_FALSE(e.confirm("boiler", true, at(10, 1, 2)));           // late answer: nothing pending
  CHECK_FALSE(e.state("boiler"));
  auto ds = e.step(at(10, 1, 6), lt_of(at(10, 1, 6)), &rd);
  REQUIRE(ds.size() == 1);
  CHECK(e.confirm("boiler", true, at(10, 1, 6)));
  CHECK(e.state("boiler"));
}

TEST_CASE("the engine never crashes on odd input") {
  RelaySpec r = relay("r", 1, 1000, -1500);
  Engine e(SiteSpec{}, {r});
  mp::Reading rd;
  rd.meter = "main";
  rd.values.push_back({"power_net_w", std::nan(""), "", false, "W", "", 0, ""});
  rd.values.push_back({"tariff", 0, "garbage", true, "", "", 0, ""});
  CHECK(e.step(at(1, 0), {9, 9999}, &rd).size() == 1);  // unknown state: failsafe off
  CHECK(e.step(at(0, 0), {-1, -5}, nullptr).empty());   // time going backwards
  CHECK_FALSE(e.confirm("missing", true, 0));
  Engine empty(SiteSpec{}, {});
  CHECK(empty.step(0, {}, &rd).empty());

  // A corrupt state file: absurd times are dropped, not computed with.
  EngineState bad;
  RelayState rs;
  rs.name = "r";
  rs.on = true;
  rs.last_switch_ns = INT64_MIN;
  rs.switches_ns = {INT64_MAX, -1, at(0, 30)};
  rs.override_mode = Override::off;
  rs.override_expires_ns = INT64_MIN;
  rs.below_since_ns = INT64_MAX;
  rs.above_since_ns = INT64_MIN;
  bad.relays.push_back(rs);
  bad.meters.push_back({"main", INT64_MAX});
  Engine e3(SiteSpec{}, {r});
  e3.import_state(bad);
  EngineState cleaned = e3.export_state();
  REQUIRE(cleaned.relays.size() == 1);
  CHECK(cleaned.relays[0].last_switch_ns == 0);
  CHECK(cleaned.relays[0].switches_ns == std::vector<int64_t>{at(0, 30)});
  CHECK(cleaned.relays[0].override_mode == Override::automatic);
  CHECK_FALSE(cleaned.relays[0].below_since_ns);
  CHECK(cleaned.meters.empty());
  auto ds = e3.step(INT64_MAX, {}, nullptr);  // no data: fail-safe off
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].new_state == false);
  CHECK(e3.confirm("r", true, INT64_MIN));
}

TEST_CASE("restart with old saved data time: grace instead of a failsafe flap") {
  using namespace mp::actuate;
  RelaySpec r;
  r.name = "boiler";
  r.meter = "home";
  r.stale_after_s = 30;
  r.failsafe = Failsafe::off;
  const int64_t t0 = 1'700'000'000LL * kNsPerSec;
  EngineState saved;
  RelayState rs;
  rs.name = "boiler";
  rs.on = true;
  rs.last_switch_ns = t0 - 600 * kNsPerSec;
  saved.relays.push_back(rs);
  saved.meters.push_back(MeterState{"home", t0 - 40 * kNsPerSec});  // saved long ago

  // Without grace the saved data time is already stale: the relay would flap off.
  Engine plain(SiteSpec{}, {r});
  plain.import_state(saved);
  auto ds = plain.step(t0, LocalTime{});
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].mode == "failsafe");

  Engine e(SiteSpec{}, {r});
  e.import_state(saved);
  e.grace_after_restart(t0, 300);  // a file without a saved time: a quick restart
  CHECK(e.step(t0, LocalTime{}).empty());
  CHECK(e.step(t0 + 29 * kNsPerSec, LocalTime{}).empty());
  CHECK(e.state("boiler"));
  // still no reading after stale_after_s: now the failsafe applies
  ds = e.step(t0 + 31 * kNsPerSec, LocalTime{});
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].mode == "failsafe");
  CHECK_FALSE(ds[0].new_state);
}

TEST_CASE("forget_state (a restored state could not be re-asserted): decided anew") {
  RelaySpec r = relay("boiler", 1, 1000, -1500);
  Sim sim(SiteSpec{}, {r});
  sim.eng.import_state(all_off({r}));
  sim.base = [](int64_t) { return -2000.0; };
  sim.run(at(9, 0), at(9, 10));
  REQUIRE(sim.events.size() == 1);
  CHECK(sim.events[0].on);
  const size_t before = sim.decisions.size();
  sim.eng.forget_state("boiler");
  sim.run(at(9, 10), at(9, 10, 5));
  REQUIRE(sim.decisions.size() == before + 1);
  CHECK(sim.decisions[before].new_state == false);
  CHECK(sim.decisions[before].reason == "state unknown at start: off until the rules switch it on");
  // then the rules (still -2000 W) switch it on again, after min_off_s and on_delay_s
  sim.run(at(9, 10, 5), at(9, 30));
  CHECK(sim.events.back().on);
}

namespace {

// A restart at 10:00 from a state saved `saved_before_s` earlier (clean stop or periodic
// save), optionally by a clock `clock_behind_ns` ahead of today's: the boiler was on, its
// off-timer (import above off_above_w) had run for 31 s, the last reading 1 s before the save.
struct Restart {
  RelaySpec r = relay("boiler", 1, 1000, -1500);
  Engine eng{SiteSpec{}, {r}};
  int64_t t0 = at(10, 0);
  std::vector<Decision> first;
  Restart(double saved_before_s, bool clean, int64_t clock_behind_ns = 0) {
    r.failsafe = Failsafe::off;
    r.stale_after_s = 30;
    r.off_delay_s = 120;
    eng = Engine(SiteSpec{}, {r});
    const int64_t saved = t0 - int64_t(saved_before_s * 1e9) + clock_behind_ns;
    EngineState st;
    RelayState rs;
    rs.name = "boiler";
    rs.on = true;
    rs.last_switch_ns = saved - 100 * S;
    rs.switches_ns = {saved - 100 * S};
    rs.above_since_ns = saved - 31 * S;
    st.relays.push_back(rs);
    st.meters.push_back({"main", saved - 1 * S});
    st.saved_ns = saved;
    st.clean = clean;
    eng.import_state(st);
    eng.grace_after_restart(t0, 300);
    first = eng.step(t0, lt_of(t0));
  }
  // Readings of +500 W (import) each second from t0 + 1 s: when does the boiler go off?
  int64_t off_time() {
    for (auto& d : first) eng.confirm(d.relay, true, t0);
    for (int64_t t = t0 + S; t < t0 + 3 * 3600 * S; t += S) {
      mp::Reading rd = reading(500);
      for (const auto& d : eng.step(t, lt_of(t), &rd)) {
        eng.confirm(d.relay, true, t);
        if (!d.new_state) return t;
      }
    }
    return 0;
  }
};

}  // namespace

TEST_CASE("restart: downtime proven by the state file decides between grace and failsafe") {
  SUBCASE("clean stop 5 s ago: grace, the off-timer goes on where it was") {
    Restart x(5, true);
    CHECK(x.first.empty());
    CHECK(x.eng.state("boiler"));
    // above since 36 s before t0, off_delay 120 s: off 84 s after the restart
    CHECK(hms(x.off_time()) == "10:01:24");
  }
  SUBCASE("periodic save 200 s ago (a crash any time after it): still a quick restart") {
    Restart x(200, false);
    CHECK(x.first.empty());
  }
  SUBCASE("periodic save 400 s ago: down at least 100 s > stale_after_s: failsafe") {
    Restart x(400, false);
    REQUIRE(x.first.size() == 1);
    CHECK(x.first[0].mode == "failsafe");
    CHECK_FALSE(x.first[0].new_state);
    CHECK(x.first[0].reason == "no fresh data from meter 'main' for 401 s: failsafe off");
  }
  SUBCASE("clean stop 1 h ago: failsafe at once; timers start again with fresh data") {
    Restart x(3600, true);
    REQUIRE(x.first.size() == 1);
    CHECK(x.first[0].mode == "failsafe");
    CHECK(x.first[0].reason == "no fresh data from meter 'main' for 3601 s: failsafe off");
    // Failsafe "keep": the relay stays on; the off-timer starts with the first reading
    // (t0 + 1 s), not from the hour-old saved timer.
    const int64_t t0 = at(10, 0);
    RelaySpec keep = relay("boiler", 1, 1000, -1500);
    keep.failsafe = Failsafe::keep;
    keep.off_delay_s = 120;
    Engine e(SiteSpec{}, {keep});
    EngineState st;
    RelayState rs;
    rs.name = "boiler";
    rs.on = true;
    rs.last_switch_ns = t0 - 4000 * S;
    rs.above_since_ns = t0 - 3631 * S;
    st.relays.push_back(rs);
    st.meters.push_back({"main", t0 - 3601 * S});
    st.saved_ns = t0 - 3600 * S;
    st.clean = true;
    e.import_state(st);
    e.grace_after_restart(t0, 300);
    CHECK(e.step(t0, lt_of(t0)).empty());
    int64_t off = 0;
    for (int64_t t = t0 + S; t < t0 + 600 * S && !off; t += S) {
      mp::Reading rd = reading(500);
      for (const auto& d : e.step(t, lt_of(t), &rd))
        if (e.confirm(d.relay, true, t) && !d.new_state) off = t;
    }
    CHECK(hms(off) == "10:02:01");  // 120 s after the first fresh reading
  }
  SUBCASE("clock 2 h behind the saved state (no RTC): saved times move back, nothing lost") {
    Restart x(5, true, 2 * 3600 * S);
    CHECK(x.first.empty());  // a quick restart (its downtime cannot be known)
    auto st = x.eng.status(x.t0);
    REQUIRE(st.size() == 1);
    CHECK(st[0].switches_last_hour == 1);  // the switch 105 s ago still counts
    // The restart counts as immediate: above since 31 s before the save = before t0,
    // off_delay 120 s -> 89 s after t0 (not two hours later)
    CHECK(hms(x.off_time()) == "10:01:29");
  }
  SUBCASE("clock behind with min_on_s: held for what was left, not hours more") {
    RelaySpec r = relay("boiler", 1, 1000, -1500);
    r.min_on_s = 600;
    Engine e(SiteSpec{}, {r});
    const int64_t t0 = at(10, 0), ahead = 2 * 3600 * S;
    EngineState st;
    RelayState rs;
    rs.name = "boiler";
    rs.on = true;
    rs.last_switch_ns = t0 + ahead - 100 * S;  // on for 100 s at the stop
    st.relays.push_back(rs);
    st.meters.push_back({"main", t0 + ahead - S});
    st.saved_ns = t0 + ahead;
    st.clean = true;
    e.import_state(st);
    e.grace_after_restart(t0, 300);
    int64_t off = 0;
    for (int64_t t = t0 + S; t < t0 + 3 * 3600 * S && !off; t += S) {
      mp::Reading rd = reading(500);
      for (const auto& d : e.step(t, lt_of(t), &rd))
        if (e.confirm(d.relay, true, t) && !d.new_state) off = t;
    }
    CHECK(hms(off) == "10:08:20");  // min_on_s: 500 s left at the restart
  }
}

TEST_CASE("a switch that failed but may have happened: the believed state is re-asserted") {
  RelaySpec r = relay("boiler", 1, 1000, -1500);
  SiteSpec site;
  site.retry_base_s = 5;
  auto run_until_on = [&](Engine& e) {
    e.import_state(all_off({r}));
    for (int64_t t = at(9, 0); t < at(9, 5); t += S) {
      mp::Reading rd = reading(-2000);
      auto ds = e.step(t, lt_of(t), &rd);
      if (!ds.empty()) {
        REQUIRE(ds.size() == 1);
        CHECK(ds[0].new_state);
        return t;
      }
    }
    FAIL("no switch-on");
    return int64_t{0};
  };
  auto next = [&](Engine& e, int64_t from, double net) {
    for (int64_t t = from; t < from + 60 * S; t += S) {
      mp::Reading rd = reading(net);
      auto ds = e.step(t, lt_of(t), &rd);
      if (!ds.empty()) return std::make_pair(t, ds[0]);
    }
    return std::make_pair(int64_t{0}, Decision{});
  };

  SUBCASE("the net turned to import: off is re-asserted at the retry time") {
    Engine e(site, {r});
    int64_t t = run_until_on(e);
    CHECK(e.confirm("boiler", false, t, true));  // timed out
    auto st = e.status(t);
    CHECK_FALSE(st[0].on);
    CHECK(st[0].doubt);
    auto [when, d] = next(e, t + S, 500);
    CHECK(when == t + 5 * S);
    CHECK_FALSE(d.old_state);
    CHECK_FALSE(d.new_state);
    CHECK(d.reason ==
          "re-asserting off: the switch on may have happened although it failed "
          "(retry 1)");
    CHECK(e.confirm("boiler", true, when));
    st = e.status(when);
    CHECK_FALSE(st[0].doubt);
    CHECK_FALSE(st[0].on);
    CHECK(st[0].switches_last_hour == 0);      // nothing changed that the engine knew
    CHECK(next(e, when + S, 500).first == 0);  // and nothing more to do
  }
  SUBCASE("still surplus: the rules retry on, no re-assertion") {
    Engine e(site, {r});
    int64_t t = run_until_on(e);
    CHECK(e.confirm("boiler", false, t, true));
    auto [when, d] = next(e, t + S, -2000);
    CHECK(when == t + 5 * S);
    CHECK(d.new_state);
    CHECK(d.reason.find("below -1500 W") != std::string::npos);
    CHECK(e.confirm("boiler", true, when));
    CHECK(e.state("boiler"));
    CHECK_FALSE(e.status(when)[0].doubt);
  }
  SUBCASE("a failure that cannot have switched (refused, exit code): no re-assertion") {
    Engine e(site, {r});
    int64_t t = run_until_on(e);
    CHECK(e.confirm("boiler", false, t, false));
    CHECK_FALSE(e.status(t)[0].doubt);
    CHECK(next(e, t + S, 500).first == 0);
  }
  SUBCASE("manual override: its state is re-asserted after a doubtful failure") {
    Engine e(site, {r});
    e.import_state(all_off({r}));
    mp::Reading rd = reading(300);
    e.step(at(9, 0), lt_of(at(9, 0)), &rd);
    e.set_override("boiler", Override::on);
    auto ds = e.step(at(9, 0, 1), lt_of(at(9, 0, 1)), &rd);
    REQUIRE(ds.size() == 1);
    CHECK(e.confirm("boiler", true, at(9, 0, 1)));
    e.set_override("boiler", Override::off);
    ds = e.step(at(9, 0, 2), lt_of(at(9, 0, 2)), &rd);
    REQUIRE(ds.size() == 1);
    CHECK(e.confirm("boiler", false, at(9, 0, 2), true));  // off timed out: still on?
    auto [when, d] = next(e, at(9, 0, 3), 300);
    CHECK(when == at(9, 0, 7));
    CHECK(d.mode == "manual");
    CHECK_FALSE(d.new_state);
  }
}
