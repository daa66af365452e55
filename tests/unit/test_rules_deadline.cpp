// Engine::next_deadline: actuate sleeps until it instead of stepping the engine every second
// (docs/ARCHITECTURE.md, "Threading"). Random relay setups and inputs (readings with gaps,
// overrides with expiry, outputs that fail, answer late or not at all) drive two engines
// side by side: one ticks every second after its last step, as actuate did, the other only
// at the first such tick at or after its next deadline (or one second after a confirm or an
// override). Every decision, its time and reason, and the final state must be the same.
#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "actuate/rules.h"

using namespace mp::actuate;

namespace {

constexpr int64_t S = kNsPerSec;
constexpr int64_t MS = 1000000;
// 2024-06-03 23:30:00 UTC, a Monday: the runs cross midnight (weekday and time windows)
constexpr int64_t T0 = (int64_t{1717372800} + 23 * 3600 + 1800) * S;

LocalTime local(int64_t t) {
  const int64_t s = t / S;
  return {int((s / 86400 + 4) % 7), int(s / 60 % 1440)};  // 1970-01-01 was a Thursday
}

struct Setup {
  SiteSpec site;
  std::vector<RelaySpec> relays;
};

Setup random_setup(std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto half = [&](int lo, int hi) { return pick(lo * 2, hi * 2) / 2.0; };  // steps of 0.5 s
  Setup s;
  s.site.settle_s = half(0, 4);
  s.site.retry_base_s = half(1, 3);
  s.site.retry_max_s = s.site.retry_base_s * pick(1, 8);
  s.site.pending_timeout_s = half(1, 6);
  if (pick(0, 3) == 0) {
    s.site.demand_limit_w = pick(1500, 4000);
    s.site.margin_w = pick(0, 300);
  }
  const int n = pick(1, 3);
  for (int i = 0; i < n; ++i) {
    RelaySpec r;
    r.name = "r" + std::to_string(i);
    r.meter = pick(0, 4) == 0 ? "other" : "main";
    r.output = r.name;
    r.priority = pick(0, 3);
    r.load_w = pick(0, 6) * 500;
    r.on_below_w = -pick(0, 30) * 100;
    r.off_above_w = r.on_below_w + pick(1, 40) * 100;
    r.on_delay_s = half(0, 8);
    r.off_delay_s = half(0, 8);
    r.min_on_s = pick(0, 2) ? half(0, 20) : 0;
    r.min_off_s = pick(0, 2) ? half(0, 20) : 0;
    r.max_switches_per_hour = pick(0, 2) ? 0 : pick(2, 8);
    r.failsafe = Failsafe(pick(0, 2));
    r.stale_after_s = half(1, 10);
    if (pick(0, 3) == 0) r.conditions.push_back(Condition::window(pick(0, 1439), pick(0, 1439)));
    if (r.conditions.size() == 1 && r.conditions[0].from_minute == r.conditions[0].to_minute)
      r.conditions.clear();
    if (pick(0, 5) == 0) r.conditions.push_back(Condition::weekdays(1u << 1));  // Mondays
    if (pick(0, 3) == 0) r.conditions.push_back(Condition::equals("tariff", 2));
    s.relays.push_back(r);
  }
  return s;
}

// What happens to a decision's switch: answered at `at` (ns) with ok/uncertain, or never.
struct Outcome {
  bool answered = true;
  int64_t delay = 0;
  bool ok = true;
  bool uncertain = false;
};

struct Logged {
  int64_t t;
  std::string relay;
  bool old_state, new_state;
  std::string mode, reason;
  bool operator==(const Logged&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Logged& l) {
  return os << "{" << (l.t - T0) / MS << " ms " << l.relay << " " << l.old_state << "->"
            << l.new_state << " " << l.mode << ": " << l.reason << "}";
}

// One engine and how it is ticked: every second after its last step (`every_second`), or
// only when its deadline says a step may matter.
struct Runner {
  Engine eng;
  bool every_second;
  int64_t last_step = 0;
  // a confirm or an override since the last step, at this time: tick at the next second
  std::optional<int64_t> changed_at = T0;
  std::vector<Logged> log;
  struct Waiting {
    std::string relay;
    int64_t at;
    Outcome o;
  };
  std::vector<Waiting> waiting;
  uint64_t steps = 0;

  Runner(const Setup& s, bool every) : eng(s.site, s.relays), every_second(every) {}

  // The first tick of the old one-second grid at or after the due time.
  std::optional<int64_t> next_tick() const {
    if (every_second) return last_step + S;
    std::optional<int64_t> due;
    auto at = [&](int64_t t) {
      if (!due || t < *due) due = t;
    };
    if (changed_at) at(*changed_at);
    if (auto d = eng.next_deadline(last_step)) at(*d);
    if (eng.uses_local_time()) at((last_step / (60 * S) + 1) * 60 * S);
    if (!due) return std::nullopt;
    const int64_t k = std::max<int64_t>(1, (*due - last_step + S - 1) / S);
    return last_step + k * S;
  }

  void apply(int64_t t, const std::vector<Decision>& ds, std::mt19937& rng) {
    ++steps;
    for (const auto& d : ds) {
      log.push_back({t, d.relay, d.old_state, d.new_state, d.mode, d.reason});
      Outcome o;
      const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
      o.answered = kind != 0;
      o.delay = kind < 5 ? 0 : std::uniform_int_distribution<int>(1, 40)(rng) * 100 * MS;
      o.ok = kind != 1 && kind != 6;
      o.uncertain = kind == 6;
      if (o.answered) waiting.push_back({d.relay, t + o.delay, o});
    }
    deliver(t);
  }
  void deliver(int64_t t) {
    for (size_t i = 0; i < waiting.size();) {
      if (waiting[i].at <= t) {
        eng.confirm(waiting[i].relay, waiting[i].o.ok, t, waiting[i].o.uncertain);
        if (!changed_at) changed_at = t;
        waiting.erase(waiting.begin() + long(i));
      } else {
        ++i;
      }
    }
  }
  void reading(int64_t t, const mp::Reading& r, std::mt19937& rng) {
    auto ds = eng.step(t, local(t), &r);
    last_step = t;
    changed_at.reset();  // a confirm of these decisions is a change after the step
    apply(t, ds, rng);
  }
  void override_(int64_t t, const std::string& relay, Override o, int64_t expires,
                 std::mt19937& rng) {
    eng.set_override(relay, o, expires);
    apply(t, eng.step(t, local(t)), rng);  // as actuate's control reply (no new tick grid)
    if (!changed_at) changed_at = t;
  }
  void tick(int64_t t, std::mt19937& rng) {
    deliver(t);
    auto when = next_tick();
    if (!when || t < *when) return;
    auto ds = eng.step(t, local(t));
    last_step = t;
    changed_at.reset();
    apply(t, ds, rng);
  }
};

}  // namespace

TEST_CASE("stepping only at the engine's deadlines decides exactly as ticking every second") {
  uint64_t steps_every = 0, steps_due = 0;
  for (uint32_t seed = 1; seed <= 150; ++seed) {
    CAPTURE(seed);
    std::mt19937 setup_rng(seed);
    const Setup setup = random_setup(setup_rng);
    Runner a(setup, true), b(setup, false);
    // the same random inputs and switch outcomes for both
    std::mt19937 in(seed * 7919u), out_a(seed), out_b(seed);
    double net = 0;
    int64_t next_reading = T0, quiet_until = 0;
    double avg = 0;
    for (int64_t t = T0; t < T0 + 3600 * S; t += 100 * MS) {
      auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(in); };
      if (t >= next_reading && t >= quiet_until) {
        net += pick(-600, 600);
        if (pick(0, 40) == 0) net = pick(-40, 40) * 100;
        avg = avg * 0.9 + std::max(0.0, net) * 0.1;
        mp::Reading r;
        r.meter = pick(0, 6) == 0 ? "other" : "main";
        r.protocol = "dsmr";
        r.values.push_back({"power_net_w", net, "", false, "W", "", 0, ""});
        if (pick(0, 2) == 0)
          r.values.push_back({"tariff", double(pick(1, 2)), "", false, "", "", 0, ""});
        if (pick(0, 1) == 0) r.values.push_back({"demand_avg_w", avg, "", false, "W", "", 0, ""});
        a.reading(t, r, out_a);
        b.reading(t, r, out_b);
        next_reading = t + pick(5, 15) * 100 * MS;
        if (pick(0, 60) == 0) quiet_until = t + pick(1, 300) * 100 * MS;  // meter silent
      }
      if (pick(0, 3000) == 0) {
        const std::string relay = setup.relays[size_t(pick(0, int(setup.relays.size()) - 1))].name;
        const Override o = Override(pick(0, 2));
        const int64_t expires = pick(0, 1) ? t + pick(1, 200) * 100 * MS : 0;
        a.override_(t, relay, o, expires, out_a);
        b.override_(t, relay, o, expires, out_b);
      }
      a.tick(t, out_a);
      b.tick(t, out_b);
    }
    // the first decision that differs, printed
    for (size_t i = 0; i < std::min(a.log.size(), b.log.size()); ++i) REQUIRE(a.log[i] == b.log[i]);
    REQUIRE(a.log.size() == b.log.size());
    CHECK(a.eng.export_state() == b.eng.export_state());
    steps_every += a.steps;
    steps_due += b.steps;
  }
  MESSAGE("engine steps: every second " << steps_every << ", at deadlines " << steps_due);
  CHECK(steps_due < steps_every);
}

TEST_CASE("next_deadline names each timer of the rules") {
  RelaySpec r;
  r.name = "boiler";
  r.meter = "main";
  r.output = "boiler";
  r.load_w = 1000;
  r.on_delay_s = 0;
  r.off_delay_s = 0;
  r.min_on_s = 120;
  r.min_off_s = 60;
  r.stale_after_s = 30;
  SiteSpec site;
  Engine eng(site, {r});
  EngineState st;
  st.relays.push_back(RelayState{"boiler", false, 0, {}, Override::automatic, 0, {}, {}, {}});
  eng.import_state(st);
  CHECK_FALSE(eng.next_deadline(T0).has_value());  // no data yet: failsafe until a reading
  CHECK_FALSE(eng.uses_local_time());
  mp::Reading rd;
  rd.meter = "main";
  rd.values.push_back({"power_net_w", -3000, "", false, "W", "", 0, ""});
  auto ds = eng.step(T0, local(T0), &rd);
  REQUIRE(ds.size() == 1);                          // on at once (no delays)
  CHECK(eng.next_deadline(T0) == T0 + 30 * S + 1);  // the data goes stale (strictly after)
  CHECK(eng.next_deadline(T0 + 30 * S + 1) ==
        T0 + int64_t(site.pending_timeout_s) * S + 1);  // the switch is not confirmed in time
  REQUIRE(eng.confirm("boiler", true, T0));
  CHECK(eng.next_deadline(T0) == T0 + 30 * S + 1);            // the data goes stale
  CHECK(eng.next_deadline(T0 + 30 * S + 1) == T0 + 60 * S);   // min_off_s (counts from a switch)
  CHECK(eng.next_deadline(T0 + 60 * S) == T0 + 120 * S);      // min_on_s
  CHECK(eng.next_deadline(T0 + 120 * S) == T0 + 3600 * S);    // the switch leaves the hour
  CHECK_FALSE(eng.next_deadline(T0 + 3600 * S).has_value());  // nothing left
  eng.set_override("boiler", Override::off, T0 + 10 * S);
  CHECK(eng.next_deadline(T0) == T0 + 10 * S);  // the override's expiry
}
