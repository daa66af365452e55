// The relay rules engine of actuate: pure (no clocks, sockets or files). The caller feeds it
// readings and the time, and gets decisions back; a decision becomes the relay's state only
// after the caller reports the output's result with confirm().
//
// Typical loop of the worker:
//   auto ds = engine.step(now_ns, local_time(now_ns, tz), &reading);   // or nullptr on a tick
//   for (auto& d : ds) { auto r = outputs[d.relay]->set(d.new_state);
//                        engine.confirm(d.relay, r.ok, clock_now_ns); publish(d, r); }
//   if (!ds.empty()) save_state(path, engine.export_state());
//
// Behaviour, in order of precedence for one relay:
//  1. A switch that failed is retried with exponential backoff (retry_base_s, doubling, at
//     most retry_max_s); no decision is made for the relay before its retry time, and none
//     while a decision is still waiting for confirm() (pending_timeout_s turns a missing
//     confirmation into a failure). The engine's state changes only on confirm(..., true), so
//     it never believes a relay is on when its output did not switch it on. A failure that
//     may have switched all the same (a timeout after the request went out) leaves the
//     state in doubt: when the retry time comes and the rules do not want the other state,
//     the believed state is re-asserted, so the output and the engine agree again.
//  2. Manual override (on/off, optional expiry) wins over everything else, fail-safe
//     included: a user who forces a relay on gets it on even while the meter is silent. It
//     ignores min_on_s/min_off_s/max_switches_per_hour (its switches are counted). When it
//     expires the relay is back in auto and the rules continue from the relay's state with
//     their usual hysteresis.
//  3. Fail-safe: when the relay's meter has sent no power reading for more than
//     stale_after_s (or none since start without persisted state), the relay goes to its
//     `failsafe` state ("keep" = leave it) at once, ignoring min-on/min-off and the switch
//     budget. Data age is measured with the engine's own clock: a reading counts as
//     received at the `now` of the step() that carried it, so a wrong meter clock or a
//     wrong system clock cannot make data look fresh.
//  4. Peak shaving (site demand_limit_w): see SiteSpec. Shedding ignores min_on_s.
//  5. Conditions: when one becomes false the relay goes off once min_on_s has passed; no
//     relay switches on while one is false.
//  6. Surplus rule on power_net_w (import - export; or power_import_w - power_export_w):
//     on when the net stays below on_below_w for on_delay_s (and min_off_s has passed, and
//     the switch budget allows an on AND the later off); off when it stays above
//     off_above_w for off_delay_s (and min_on_s has passed). "Stays" is measured by the
//     readings (first to last reading that showed it); a tick without a reading never
//     completes a delay. A gap longer than stale_after_s restarts the delays.
//     min_on_s/min_off_s count from the relay's last switch, whatever its mode. Choose
//     off_above_w - on_below_w larger than load_w, or the load's own power flaps it.
//
// Several relays on one meter (priority, load_w):
//  - Relays are evaluated highest priority first (ties: config order).
//  - A relay that switched (or is pending a switch) changes the net that the OTHER relays of
//    its meter see until a reading arrives at least settle_s after the switch; after that
//    the meter's reading is trusted. Switch-on checks add the load_w of such relays that
//    switched on (one surplus is not used twice); switch-off checks subtract the load_w of
//    those that switched off (one import is not shed twice). Each check takes the estimate
//    that is cautious for it, so a meter that already shows the switch costs at most a
//    delay of settle_s, never an extra switch. Peak shaving does the same with the site's
//    import.
//  - Staging: after a higher-priority relay switched on at T, a lower-priority relay's
//    on-timer counts from T at the earliest (it must see the surplus persist for its own
//    on_delay_s with the new load running).
//  - Import: at most one relay per meter goes off per settle period for the surplus rule,
//    the lowest priority first among those allowed to switch off (a relay held on by
//    min_on_s is skipped), so the highest priority is kept longest.
//  - max_switches_per_hour counts confirmed switches in the sliding last hour. An auto
//    switch-on needs room for itself and for the later switch-off, so the auto rules never
//    exceed the budget and a switch-off is never blocked by it. Manual and fail-safe
//    switches are not limited but are counted.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/reading.h"

namespace mp::actuate {

constexpr int64_t kNsPerSec = 1'000'000'000;

enum class Failsafe { off, on, keep };
enum class Override { automatic, on, off };

bool parse_failsafe(std::string_view text, Failsafe& out);  // "off" | "on" | "keep"
bool parse_override(std::string_view text, Override& out);  // "auto" | "on" | "off"
const char* to_string(Failsafe f);
const char* to_string(Override o);

// One condition of a relay; all conditions of a relay must hold.
struct Condition {
  enum class Kind { time_window, weekdays, value };
  Kind kind = Kind::value;
  // time_window: local minutes since midnight, from_minute inclusive, to_minute exclusive;
  // from_minute > to_minute wraps past midnight (22:00-06:00). Range 0..1440.
  int from_minute = 0;
  int to_minute = 0;
  // time_window: further windows of the same condition (`windows = ["07:00-09:00",
  // "17:00-20:00"]`); the condition holds when the local time lies in any of them.
  std::vector<std::pair<int, int>> more_windows;
  // weekdays: bit d set = allowed on weekday d (0 = Sunday ... 6 = Saturday, as tm_wday).
  unsigned weekday_mask = 0;
  // value: the last value `name` of the relay's meter (e.g. "tariff", "voltage_l1_v") lies
  // within [min, max] (either bound optional). A value that is absent, or older than the
  // relay's stale_after_s, makes the condition false. Text values are read as numbers
  // ("0002" -> 2).
  std::string name;
  std::optional<double> min;
  std::optional<double> max;

  static Condition window(int from_minute, int to_minute);
  // Any of several windows (at least one): the first as from/to, the rest in more_windows.
  static Condition any_window(const std::vector<std::pair<int, int>>& windows);
  static Condition weekdays(unsigned mask);
  static Condition value_range(std::string name, std::optional<double> min,
                               std::optional<double> max);
  static Condition equals(std::string name, double v) { return value_range(name, v, v); }
  std::string describe() const;  // "time 07:00-22:00", "weekdays Mon-Fri", "tariff == 2"
};

struct RelaySpec {
  std::string name;
  std::string meter;   // reading/<meter> whose values drive the relay
  std::string output;  // name of the output (the worker maps it; the engine ignores it)
  int priority = 0;    // higher = served first from a surplus, shed last
  double load_w = 0;   // power the load draws when on (estimate)
  double on_below_w = -1500;
  double off_above_w = 100;
  double on_delay_s = 60;
  double off_delay_s = 60;
  double min_on_s = 0;
  double min_off_s = 0;
  int max_switches_per_hour = 0;  // 0 = unlimited; otherwise at least 2
  std::vector<Condition> conditions;
  Failsafe failsafe = Failsafe::off;
  double stale_after_s = 30;
};

// Site-wide settings.
struct SiteSpec {
  // Peak shaving (capacity tariff): keep every quarter-hour average import (quarters aligned
  // to the clock, xx:00/15/30/45) at most demand_limit_w - margin_w. The engine projects
  // the quarter's average from demand_avg_w (the meter's running average of the current
  // quarter) or, without it, from energy_import_kwh, and sheds relays (lowest priority
  // first, auto mode only) until the projection fits; a shed relay stays off for the rest
  // of the quarter. A relay also does not switch on when its load would push the projection
  // over the limit, nor, when the limit cannot carry its load continuously, with less than
  // max(min_on_s, 300 s) of the quarter left. Quarters are aligned on unix time (equal to
  // local quarters in every zone whose offset is a multiple of 15 minutes). Demand data
  // older than 30 s is not used. Relays under manual override are never shed.
  std::optional<double> demand_limit_w;
  double margin_w = 0;
  // Meter measuring the site's grid connection; empty = the meter of the first relay.
  std::string demand_meter;
  // Seconds after a switch before a reading is trusted to show its effect.
  double settle_s = 5;
  // Failed switches: retry after retry_base_s, doubling per failure, at most retry_max_s.
  double retry_base_s = 5;
  double retry_max_s = 300;
  // A decision not confirmed within this time counts as failed.
  double pending_timeout_s = 60;
};

struct Problem {
  std::string field;  // RelaySpec/SiteSpec field name; "conditions[2].max" for a condition
  std::string message;
  bool operator==(const Problem&) const = default;
};
std::vector<Problem> validate(const RelaySpec& r);
std::vector<Problem> validate(const SiteSpec& s);

// Local time fields, computed outside the pure core (see local_time()).
struct LocalTime {
  int weekday = 0;  // 0 = Sunday ... 6 = Saturday
  int minute = 0;   // minutes since local midnight, 0..1439
};
// Local time of `unix_ns` in time zone `tz` (e.g. "Europe/Brussels"; empty = the system's).
// Not pure: uses TZ + localtime_r (changes TZ of the process briefly; call from one thread).
LocalTime local_time(int64_t unix_ns, const std::string& tz);

struct Decision {
  std::string relay;
  bool old_state = false;
  bool new_state = false;
  std::string mode;    // "auto" | "manual" | "failsafe"
  std::string reason;  // "net -1830 W below -1500 W for 60 s"
};

// Persisted part of the engine (state_store.h writes it to disk).
struct RelayState {
  std::string name;
  bool on = false;
  int64_t last_switch_ns = 0;        // 0 = never
  std::vector<int64_t> switches_ns;  // confirmed switches of the last hour
  Override override_mode = Override::automatic;
  int64_t override_expires_ns = 0;         // 0 = no expiry
  std::optional<int64_t> below_since_ns;   // net below on_below_w since
  std::optional<int64_t> above_since_ns;   // net above off_above_w since
  std::optional<int64_t> shed_quarter_ns;  // shed by peak shaving in the quarter starting then
  bool operator==(const RelayState&) const = default;
};
struct MeterState {
  std::string name;
  int64_t last_data_ns = 0;  // engine time of the last reading with a power value
  bool operator==(const MeterState&) const = default;
};
struct EngineState {
  std::vector<RelayState> relays;
  std::vector<MeterState> meters;
  // When the state was written (engine time; 0 = unknown, a file of an older version) and
  // whether by a clean stop (else by a periodic save: the process may have run on after).
  int64_t saved_ns = 0;
  bool clean = false;
  bool operator==(const EngineState&) const = default;
};

struct RelayStatus {
  std::string name;
  bool on = false;
  bool known = false;  // false until the state was set by a confirmed switch or a load
  bool doubt = false;  // a failed switch may have happened: the state is re-asserted
  std::string mode;    // mode of the last decision ("auto", "manual", "failsafe", "")
  Override override_mode = Override::automatic;
  int64_t override_expires_ns = 0;
  bool pending = false;
  int failures = 0;  // consecutive failed switches
  int64_t retry_at_ns = 0;
  int switches_last_hour = 0;
};

class Engine {
 public:
  Engine(SiteSpec site, std::vector<RelaySpec> relays);

  // Advances to `now_ns` (engine time, ns since the epoch; must not go backwards by much:
  // a step older than the previous one is treated as happening at the previous time).
  // `reading` may be null (a tick: staleness, expiries, retries are still handled).
  std::vector<Decision> step(int64_t now_ns, LocalTime local, const mp::Reading* reading = nullptr);

  // Result of the output for the relay's pending decision. ok: the state becomes the
  // decision's new state (and counts as a switch). !ok: state unchanged, retry with backoff.
  // Returns false when the relay is unknown or has no pending decision.
  // uncertain (with !ok): the output may have switched all the same (see 1. above).
  bool confirm(std::string_view relay, bool ok, int64_t now_ns, bool uncertain = false);

  // The relay's real state is no longer known (re-asserting a restored state failed): the
  // next step() treats it as at a start without state (failsafe or off, then the rules).
  // Ignored while the engine has a decision of its own pending for the relay.
  void forget_state(std::string_view relay);

  // Manual override; Override::automatic clears it. expires_ns 0 = until cleared.
  // Takes effect at the next step(). Returns false for an unknown relay.
  bool set_override(std::string_view relay, Override mode, int64_t expires_ns = 0);

  // The earliest engine time after `now_ns` at which step() without a reading may decide
  // something or change the engine's state: a retry, a pending switch timing out, an
  // override expiring, a meter's data or a condition's value going stale, min_on_s /
  // min_off_s running out, a switch leaving the budget's hour, a quarter hour starting (peak
  // shaving; while its demand data is fresh the projection moves with the time: now_ns + 1).
  // A tick before it returns nothing and changes nothing. nullopt: no such time (only a
  // reading, confirm(), forget_state() or set_override() changes anything). Local time is
  // not the engine's: see uses_local_time().
  std::optional<int64_t> next_deadline(int64_t now_ns) const;
  // Some relay has a time-of-day or weekday condition: step() may also decide differently
  // when the local minute changes.
  bool uses_local_time() const;

  // Believed (confirmed) state; false for an unknown relay.
  bool state(std::string_view relay) const;
  std::vector<RelayStatus> status(int64_t now_ns) const;
  // Latest projected quarter-hour average import (W), if known.
  std::optional<double> projected_demand_w() const { return projected_w_; }

  EngineState export_state() const;
  // Loads persisted state (relays/meters matched by name; unknown names ignored). Call
  // before the first step(). Relays found become "known": no start-up switch for them.
  void import_state(const EngineState& s);
  // After a restart with imported state, at engine time `now_ns`:
  //  - Saved times later than now (a Pi without RTC starts with its clock behind, before
  //    NTP) are moved back by the difference: the restart counts as immediate, and min-on,
  //    min-off, switch budgets, overrides and running timers keep their remaining time.
  //  - Quick restart: the meters of relays whose state is known count as fresh at now, so
  //    neither the failsafe nor a switch follows; the failsafe still comes when no reading
  //    arrives within stale_after_s. A restart is quick unless the state file proves a
  //    downtime longer than the relay's stale_after_s: a periodic save (every
  //    `save_interval_s`) may be that old at a crash, a clean stop's save is exact.
  //  - After a longer downtime the saved data is stale: failsafe until fresh data arrives,
  //    and the sustained-net timers start again with the first reading.
  void grace_after_restart(int64_t now_ns, double save_interval_s);

 private:
  struct Relay {
    RelaySpec spec;
    size_t index = 0;
    bool on = false;
    bool known = false;
    bool doubt = false;  // a failed switch may have happened (see confirm())
    int64_t last_switch_ns = 0;
    std::deque<int64_t> switches;
    Override ovr = Override::automatic;
    int64_t ovr_expires_ns = 0;
    std::optional<int64_t> below_since, above_since;
    std::optional<int64_t> shed_quarter;
    bool pending = false;
    bool pending_state = false;
    int64_t pending_ns = 0;
    std::string pending_mode;
    std::string last_mode;
    int failures = 0;
    int64_t retry_at_ns = 0;
  };
  struct Meter {
    std::optional<int64_t> last_data_ns;  // last reading with a net power
    std::optional<double> net;
    struct Val {
      double v = 0;
      int64_t at = 0;
    };
    std::map<std::string, Val, std::less<>> values;
  };

  Meter& meter(const std::string& name) { return meters_[name]; }
  const Meter* find_meter(const std::string& name) const;
  Relay* find(std::string_view name);
  const Relay* find(std::string_view name) const;
  void ingest(int64_t now, const mp::Reading& r);
  void update_demand(int64_t now, const mp::Reading& r);
  double compensation(const Relay* self, const std::string* meter, bool ons) const;
  double eff_net(const Relay& r, bool for_on) const;
  bool stale(const Relay& r, int64_t now) const;
  bool conditions_hold(const Relay& r, LocalTime lt, int64_t now, std::string& why) const;
  void emit(Relay& r, bool target, const char* mode, std::string reason, int64_t now,
            std::vector<Decision>& out);
  void fail(Relay& r, int64_t now);
  bool budget_allows_on(const Relay& r) const;
  double projection_at(int64_t now, bool high) const;

  // The phases of step(), in order.
  // What the peak-shaving phase leaves for switching on in this quarter hour.
  struct QuarterBudget {
    std::optional<double> headroom;  // budget left for the whole quarter (W); none: no limit
    double steady_room_w = 0;        // instantaneous import left under the limit (W)
    double quarter_left = 0;         // fraction of the quarter hour still to come
  };
  void expire_timers(int64_t now);
  void decide_overrides_and_failsafe(int64_t now, LocalTime lt, std::vector<Decision>& out);
  QuarterBudget shave_peak(int64_t now, std::vector<Decision>& out);
  void shed_on_import(int64_t now, std::vector<Decision>& out);
  void switch_on_surplus(int64_t now, LocalTime lt, QuarterBudget budget,
                         std::vector<Decision>& out);
  void reassert_doubtful(int64_t now, std::vector<Decision>& out);
  // helpers of the phases
  bool can_decide(const Relay& r, int64_t now) const { return !r.pending && now >= r.retry_at_ns; }
  bool auto_fresh(const Relay& r, int64_t now) const {
    return r.ovr == Override::automatic && !stale(r, now);
  }
  bool has_net(const Relay& r) const;
  // A relay of this meter is still switching off, or one switched off and the meter has
  // not reported since it settled: its effect on the net power is not visible yet.
  bool meter_settling(const std::string& meter) const;
  // Switch-on staging: from the latest switch-on of a higher-priority relay of the meter.
  int64_t staging_start(size_t index) const;

  SiteSpec site_;
  std::vector<Relay> relays_;  // priority order (desc), ties in config order
  std::map<std::string, Meter, std::less<>> meters_;
  int64_t last_now_ = 0;
  // Demand tracking for peak shaving.
  std::string demand_meter_;
  int64_t quarter_ns_ = -1;             // start of the quarter of the last demand reading
  std::optional<double> avg_so_far_w_;  // average import of the quarter up to demand_at_
  int64_t demand_at_ = 0;
  double import_now_w_ = 0;
  std::optional<double> e_quarter_kwh_;  // import counter at the quarter start (estimated)
  int64_t e_quarter_at_ = 0;             // when e_quarter_kwh_ holds
  std::optional<double> e_prev_kwh_;
  int64_t e_prev_at_ = 0;
  std::optional<double> projected_w_;
  int64_t saved_ns_ = 0;  // of the imported state
  bool saved_clean_ = false;
};

}  // namespace mp::actuate
