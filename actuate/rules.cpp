#include "actuate/rules.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace mp::actuate {
namespace {

constexpr int64_t kQuarterNs = 900 * kNsPerSec;
constexpr int64_t kHourNs = 3600 * kNsPerSec;

[[gnu::format(printf, 1, 2)]] std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  int n = std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  if (n < 0) return {};
  return std::string(buf, static_cast<size_t>(n) < sizeof buf ? n : sizeof buf - 1);
}

// Seconds -> ns, saturating, NaN/negative -> 0.
int64_t to_ns(double s) {
  if (!(s > 0)) return 0;
  if (s > 1e9) return int64_t{1'000'000'000} * kNsPerSec;
  return static_cast<int64_t>(std::llround(s * 1e9));
}

double to_s(int64_t ns) { return static_cast<double>(ns) / 1e9; }

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t quarter_of(int64_t t) { return floor_div(t, kQuarterNs) * kQuarterNs; }

// Times the engine accepts (ns since the epoch, up to the year 2096): keeps every sum and
// difference of times far from int64 overflow, whatever a corrupt state file holds.
constexpr int64_t kMaxTime = int64_t{4'000'000'000} * kNsPerSec;
bool sane(int64_t t) { return t >= 0 && t <= kMaxTime; }
std::optional<int64_t> sane(std::optional<int64_t> t) { return t && sane(*t) ? t : std::nullopt; }

bool number_of(const mp::Value& v, double& out) {
  if (!v.is_text) {
    out = v.number;
    return std::isfinite(out);
  }
  const char* s = v.text.c_str();
  char* end = nullptr;
  double d = std::strtod(s, &end);
  if (end == s || !std::isfinite(d)) return false;
  out = d;
  return true;
}

std::string hhmm(int minute) { return fmt("%02d:%02d", minute / 60, minute % 60); }

bool finite(double v) { return std::isfinite(v); }

}  // namespace

bool parse_failsafe(std::string_view t, Failsafe& out) {
  if (t == "off")
    out = Failsafe::off;
  else if (t == "on")
    out = Failsafe::on;
  else if (t == "keep")
    out = Failsafe::keep;
  else
    return false;
  return true;
}

bool parse_override(std::string_view t, Override& out) {
  if (t == "auto")
    out = Override::automatic;
  else if (t == "on")
    out = Override::on;
  else if (t == "off")
    out = Override::off;
  else
    return false;
  return true;
}

const char* to_string(Failsafe f) {
  switch (f) {
    case Failsafe::off:
      return "off";
    case Failsafe::on:
      return "on";
    case Failsafe::keep:
      return "keep";
  }
  return "off";
}

const char* to_string(Override o) {
  switch (o) {
    case Override::automatic:
      return "auto";
    case Override::on:
      return "on";
    case Override::off:
      return "off";
  }
  return "auto";
}

// ---- Condition ----

Condition Condition::window(int from, int to) {
  Condition c;
  c.kind = Kind::time_window;
  c.from_minute = from;
  c.to_minute = to;
  return c;
}

Condition Condition::any_window(const std::vector<std::pair<int, int>>& windows) {
  Condition c =
      window(windows.empty() ? 0 : windows[0].first, windows.empty() ? 0 : windows[0].second);
  if (windows.size() > 1) c.more_windows.assign(windows.begin() + 1, windows.end());
  return c;
}

Condition Condition::weekdays(unsigned mask) {
  Condition c;
  c.kind = Kind::weekdays;
  c.weekday_mask = mask;
  return c;
}

Condition Condition::value_range(std::string name, std::optional<double> min,
                                 std::optional<double> max) {
  Condition c;
  c.kind = Kind::value;
  c.name = std::move(name);
  c.min = min;
  c.max = max;
  return c;
}

std::string Condition::describe() const {
  switch (kind) {
    case Kind::time_window: {
      std::string s = "time " + hhmm(from_minute) + "-" + hhmm(to_minute);
      for (const auto& [f, t] : more_windows) s += " or " + hhmm(f) + "-" + hhmm(t);
      return s;
    }
    case Kind::weekdays: {
      static const char* names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
      std::string s = "weekdays ";
      bool first = true;
      for (int d = 0; d < 7; ++d)
        if (weekday_mask & (1u << d)) {
          if (!first) s += ',';
          s += names[d];
          first = false;
        }
      return s;
    }
    case Kind::value:
      if (min && max && *min == *max) return fmt("%s == %g", name.c_str(), *min);
      if (min && max) return fmt("%s in [%g, %g]", name.c_str(), *min, *max);
      if (min) return fmt("%s >= %g", name.c_str(), *min);
      if (max) return fmt("%s <= %g", name.c_str(), *max);
      return name;
  }
  return "?";
}

// ---- validation ----

std::vector<Problem> validate(const RelaySpec& r) {
  std::vector<Problem> p;
  auto add = [&](std::string f, std::string m) { p.push_back({std::move(f), std::move(m)}); };
  if (r.name.empty()) add("name", "must not be empty");
  if (r.meter.empty()) add("meter", "must not be empty");
  if (r.output.empty()) add("output", "must not be empty");
  struct Num {
    const char* field;
    double v;
    bool allow_negative;
  };
  const Num nums[] = {{"load_w", r.load_w, false},           {"on_below_w", r.on_below_w, true},
                      {"off_above_w", r.off_above_w, true},  {"on_delay_s", r.on_delay_s, false},
                      {"off_delay_s", r.off_delay_s, false}, {"min_on_s", r.min_on_s, false},
                      {"min_off_s", r.min_off_s, false}};
  for (const auto& n : nums) {
    if (!finite(n.v))
      add(n.field, "must be a finite number");
    else if (!n.allow_negative && n.v < 0)
      add(n.field, "must not be negative");
  }
  if (finite(r.on_below_w) && finite(r.off_above_w) && !(r.on_below_w < r.off_above_w))
    add("on_below_w", fmt("must be below off_above_w (%g)", r.off_above_w));
  if (r.max_switches_per_hour < 0 || r.max_switches_per_hour == 1)
    add("max_switches_per_hour", "must be 0 (unlimited) or at least 2 (one on and one off)");
  if (!finite(r.stale_after_s) || !(r.stale_after_s > 0))
    add("stale_after_s", "must be a positive number of seconds");
  for (size_t i = 0; i < r.conditions.size(); ++i) {
    const Condition& c = r.conditions[i];
    std::string pre = fmt("conditions[%zu].", i);
    switch (c.kind) {
      case Condition::Kind::time_window: {
        // windows[j]: the first window is from/to, the others more_windows[j - 1]
        auto check = [&](size_t j, int from, int to) {
          const std::string f = pre + fmt("windows[%zu]", j);
          if (from < 0 || from > 1440 || to < 0 || to > 1440)
            add(f, "must hold times of day between 00:00 and 24:00");
          else if (from % 1440 == to % 1440)
            add(f, "must end at another time than it starts (the window would be empty)");
        };
        check(0, c.from_minute, c.to_minute);
        for (size_t j = 0; j < c.more_windows.size(); ++j)
          check(j + 1, c.more_windows[j].first, c.more_windows[j].second);
        break;
      }
      case Condition::Kind::weekdays:
        if (c.weekday_mask == 0 || c.weekday_mask >= 128)
          add(pre + "weekdays", "must name at least one day of the week");
        break;
      case Condition::Kind::value:
        if (c.name.empty()) add(pre + "name", "must name a reading value");
        if (!c.min && !c.max) add(pre + "min", "needs min, max or both");
        if (c.min && !finite(*c.min)) add(pre + "min", "must be a finite number");
        if (c.max && !finite(*c.max)) add(pre + "max", "must be a finite number");
        if (c.min && c.max && finite(*c.min) && finite(*c.max) && *c.min > *c.max)
          add(pre + "max", fmt("must not be below min (%g)", *c.min));
        break;
    }
  }
  return p;
}

std::vector<Problem> validate(const SiteSpec& s) {
  std::vector<Problem> p;
  if (s.demand_limit_w && (!finite(*s.demand_limit_w) || *s.demand_limit_w <= 0))
    p.push_back({"demand_limit_w", "must be a positive number of watts"});
  if (!finite(s.margin_w) || s.margin_w < 0)
    p.push_back({"margin", "must not be negative"});
  else if (s.demand_limit_w && finite(*s.demand_limit_w) && s.margin_w >= *s.demand_limit_w)
    p.push_back({"margin", fmt("must be below demand_limit_w (%g)", *s.demand_limit_w)});
  if (!finite(s.settle_s) || s.settle_s < 0) p.push_back({"settle_s", "must not be negative"});
  if (!finite(s.retry_base_s) || s.retry_base_s <= 0)
    p.push_back({"retry_base_s", "must be positive"});
  if (!finite(s.retry_max_s) || s.retry_max_s < s.retry_base_s)
    p.push_back({"retry_max_s", "must be at least retry_base_s"});
  if (!finite(s.pending_timeout_s) || s.pending_timeout_s <= 0)
    p.push_back({"pending_timeout_s", "must be positive"});
  return p;
}

// ---- local time (not pure: outside the engine) ----

LocalTime local_time(int64_t unix_ns, const std::string& tz) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::string saved;
  bool had = false;
  if (!tz.empty()) {
    if (const char* old = std::getenv("TZ")) {
      saved = old;
      had = true;
    }
    setenv("TZ", tz.c_str(), 1);
  }
  tzset();
  time_t t = static_cast<time_t>(floor_div(unix_ns, kNsPerSec));
  struct tm tm {};
  LocalTime lt;
  if (localtime_r(&t, &tm)) {
    lt.weekday = tm.tm_wday;
    lt.minute = tm.tm_hour * 60 + tm.tm_min;
  }
  if (!tz.empty()) {
    if (had)
      setenv("TZ", saved.c_str(), 1);
    else
      unsetenv("TZ");
    tzset();
  }
  return lt;
}

// ---- Engine ----

Engine::Engine(SiteSpec site, std::vector<RelaySpec> relays) : site_(std::move(site)) {
  relays_.reserve(relays.size());
  for (size_t i = 0; i < relays.size(); ++i) {
    Relay r;
    r.spec = std::move(relays[i]);
    r.index = i;
    relays_.push_back(std::move(r));
  }
  std::stable_sort(relays_.begin(), relays_.end(), [](const Relay& a, const Relay& b) {
    return a.spec.priority > b.spec.priority;
  });
  demand_meter_ = site_.demand_meter;
  if (demand_meter_.empty() && !relays_.empty()) {
    for (const auto& r : relays_)
      if (r.index == 0) demand_meter_ = r.spec.meter;
  }
}

Engine::Relay* Engine::find(std::string_view name) {
  for (auto& r : relays_)
    if (r.spec.name == name) return &r;
  return nullptr;
}

const Engine::Relay* Engine::find(std::string_view name) const {
  for (const auto& r : relays_)
    if (r.spec.name == name) return &r;
  return nullptr;
}

const Engine::Meter* Engine::find_meter(const std::string& name) const {
  auto it = meters_.find(name);
  return it == meters_.end() ? nullptr : &it->second;
}

bool Engine::state(std::string_view relay) const {
  const Relay* r = find(relay);
  return r && r->on;
}

bool Engine::stale(const Relay& r, int64_t now) const {
  const Meter* m = find_meter(r.spec.meter);
  if (!m || !m->last_data_ns) return true;
  return now - *m->last_data_ns > to_ns(r.spec.stale_after_s);
}

// Load change that the meter's last reading may not show yet: switches of the OTHER relays
// of `self`'s meter that are pending or not settled. `ons` = only switches to on (added:
// used before switching on, so one surplus is not used twice); otherwise only switches to
// off (subtracted: used before switching off, so one import is not shed twice). Each check
// thus takes the estimate that is cautious for it.
double Engine::compensation(const Relay* self, const std::string* meter, bool ons) const {
  double c = 0;
  int64_t settle = to_ns(site_.settle_s);
  for (const auto& x : relays_) {
    if (&x == self || (meter && x.spec.meter != *meter)) continue;
    bool to_on;
    if (x.pending) {
      if (x.pending_state == x.on) continue;
      to_on = x.pending_state;
    } else {
      if (x.last_switch_ns == 0) continue;
      const Meter* m = find_meter(x.spec.meter);
      if (m && m->last_data_ns && *m->last_data_ns >= x.last_switch_ns + settle) continue;
      to_on = x.on;
    }
    if (to_on && ons) c += x.spec.load_w;
    if (!to_on && !ons) c -= x.spec.load_w;
  }
  return c;
}

double Engine::eff_net(const Relay& r, bool for_on) const {
  const Meter* m = find_meter(r.spec.meter);
  double net = (m && m->net) ? *m->net : 0;
  return net + compensation(&r, &r.spec.meter, for_on);
}

bool Engine::conditions_hold(const Relay& r, LocalTime lt, int64_t now, std::string& why) const {
  const Meter* m = find_meter(r.spec.meter);
  for (const auto& c : r.spec.conditions) {
    bool ok = false;
    std::string extra;
    switch (c.kind) {
      case Condition::Kind::time_window: {
        const int t = lt.minute;
        auto in = [t](int from, int to) {
          if (from < to) return t >= from && t < to;
          if (from > to) return t >= from || t < to;  // across midnight
          return false;
        };
        ok = in(c.from_minute, c.to_minute);
        for (const auto& [f, to] : c.more_windows) ok = ok || in(f, to);
        extra = " (now " + hhmm(std::clamp(t, 0, 1439)) + ")";
        break;
      }
      case Condition::Kind::weekdays:
        ok = lt.weekday >= 0 && lt.weekday < 7 && (c.weekday_mask & (1u << lt.weekday));
        break;
      case Condition::Kind::value: {
        const Meter::Val* v = nullptr;
        if (m) {
          auto it = m->values.find(c.name);
          if (it != m->values.end()) v = &it->second;
        }
        if (!v || now - v->at > to_ns(r.spec.stale_after_s)) {
          extra = " (no recent value)";
        } else {
          ok = (!c.min || v->v >= *c.min) && (!c.max || v->v <= *c.max);
          extra = fmt(" (%s %g)", c.name.c_str(), v->v);
        }
        break;
      }
    }
    if (!ok) {
      why = "condition " + c.describe() + " not met" + extra;
      return false;
    }
  }
  return true;
}

bool Engine::budget_allows_on(const Relay& r) const {
  if (r.spec.max_switches_per_hour <= 0) return true;
  return static_cast<int64_t>(r.switches.size()) + 2 <= r.spec.max_switches_per_hour;
}

void Engine::ingest(int64_t now, const mp::Reading& rd) {
  Meter& m = meter(rd.meter);
  std::optional<double> imp, exp, net;
  for (const auto& v : rd.values) {
    double d;
    if (!number_of(v, d)) continue;
    m.values[v.name] = {d, now};
    if (v.name == "power_net_w")
      net = d;
    else if (v.name == "power_import_w")
      imp = d;
    else if (v.name == "power_export_w")
      exp = d;
  }
  if (!net && (imp || exp)) net = imp.value_or(0) - exp.value_or(0);
  if (net) {
    std::optional<int64_t> prev = m.last_data_ns;
    m.net = net;
    m.last_data_ns = now;
    for (auto& r : relays_) {
      if (r.spec.meter != rd.meter) continue;
      if (!prev || now - *prev > to_ns(r.spec.stale_after_s)) {
        r.below_since.reset();  // a gap: sustained conditions start again
        r.above_since.reset();
      }
      double eff = eff_net(r, true);
      if (eff < r.spec.on_below_w) {
        if (!r.below_since) r.below_since = now;
      } else {
        r.below_since.reset();
      }
      eff = eff_net(r, false);
      if (eff > r.spec.off_above_w) {
        if (!r.above_since) r.above_since = now;
      } else {
        r.above_since.reset();
      }
    }
  }
  if (rd.meter == demand_meter_) update_demand(now, rd);
}

void Engine::update_demand(int64_t now, const mp::Reading& rd) {
  const Meter& m = meter(rd.meter);
  std::optional<double> import_w;
  double d;
  if (const Value* v = rd.find("power_import_w"); v && number_of(*v, d))
    import_w = std::max(0.0, d);
  else if (m.net && m.last_data_ns == now)
    import_w = std::max(0.0, *m.net);
  if (!import_w) return;
  int64_t q0 = quarter_of(now);
  if (q0 != quarter_ns_) {
    quarter_ns_ = q0;
    avg_so_far_w_.reset();
    e_quarter_kwh_.reset();
  }
  if (const Value* v = rd.find("demand_avg_w"); v && number_of(*v, d)) {
    avg_so_far_w_ = std::max(0.0, d);
  } else if (const Value* e = rd.find("energy_import_kwh"); e && number_of(*e, d)) {
    if (!e_quarter_kwh_) {
      if (e_prev_kwh_ && e_prev_at_ < q0 && now > e_prev_at_ &&
          now - e_prev_at_ <= 120 * kNsPerSec && d >= *e_prev_kwh_) {
        // Interpolate the counter at the quarter boundary.
        e_quarter_kwh_ = *e_prev_kwh_ + (d - *e_prev_kwh_) * static_cast<double>(q0 - e_prev_at_) /
                                            static_cast<double>(now - e_prev_at_);
        e_quarter_at_ = q0;
      } else {
        e_quarter_kwh_ = d;
        e_quarter_at_ = now;
      }
    }
    if (now > e_quarter_at_ && d >= *e_quarter_kwh_)
      avg_so_far_w_ = (d - *e_quarter_kwh_) * 3.6e6 / to_s(now - e_quarter_at_);
    e_prev_kwh_ = d;
    e_prev_at_ = now;
  }
  demand_at_ = now;
  import_now_w_ = *import_w;
}

double Engine::projection_at(int64_t now, bool high) const {
  // Current import corrected by switches the meter may not show yet (see compensation()).
  double p = std::max(0.0, import_now_w_ + compensation(nullptr, nullptr, high));
  if (quarter_ns_ < 0 || now >= quarter_ns_ + kQuarterNs) return p;
  double elapsed = to_s(std::max<int64_t>(0, now - quarter_ns_));
  double remaining = 900.0 - elapsed;
  double avg = avg_so_far_w_.value_or(p);
  return (avg * elapsed + p * remaining) / 900.0;
}

void Engine::fail(Relay& r, int64_t now) {
  r.pending = false;
  ++r.failures;
  double backoff = site_.retry_base_s;
  for (int i = 1; i < r.failures && backoff < site_.retry_max_s; ++i) backoff *= 2;
  backoff = std::min(backoff, site_.retry_max_s);
  r.retry_at_ns = now + to_ns(backoff);
}

void Engine::emit(Relay& r, bool target, const char* mode, std::string reason, int64_t now,
                  std::vector<Decision>& out) {
  if (r.failures > 0) reason += fmt(" (retry %d)", r.failures);
  r.pending = true;
  r.pending_state = target;
  r.pending_ns = now;
  r.pending_mode = mode;
  out.push_back({r.spec.name, r.on, target, mode, std::move(reason)});
}

bool Engine::confirm(std::string_view relay, bool ok, int64_t now, bool uncertain) {
  now = std::clamp<int64_t>(now, 0, kMaxTime);
  Relay* r = find(relay);
  if (!r || !r->pending) return false;
  if (!ok) {
    fail(*r, now);
    // Only a switch to the other state can have left the output elsewhere than believed.
    if (uncertain && r->known && r->pending_state != r->on) r->doubt = true;
    return true;
  }
  r->pending = false;
  r->doubt = false;
  r->failures = 0;
  r->retry_at_ns = 0;
  r->last_mode = r->pending_mode;
  bool changed = r->pending_state != r->on;
  r->on = r->pending_state;
  r->known = true;
  if (changed) {
    r->last_switch_ns = now;
    r->switches.push_back(now);
    r->below_since.reset();
    r->above_since.reset();
  }
  return true;
}

void Engine::forget_state(std::string_view relay) {
  Relay* r = find(relay);
  if (r && !r->pending) r->known = false;
}

bool Engine::set_override(std::string_view relay, Override mode, int64_t expires_ns) {
  Relay* r = find(relay);
  if (!r) return false;
  r->ovr = mode;
  r->ovr_expires_ns =
      mode == Override::automatic ? 0 : std::clamp<int64_t>(expires_ns, 0, kMaxTime);
  return true;
}

std::vector<Decision> Engine::step(int64_t now, LocalTime lt, const mp::Reading* reading) {
  now = std::clamp(now, last_now_, kMaxTime);
  last_now_ = now;
  std::vector<Decision> out;
  if (reading) ingest(now, *reading);
  expire_timers(now);
  // The decision order: overrides and fail-safe, shedding, import, surplus, re-assertions.
  decide_overrides_and_failsafe(now, lt, out);
  const QuarterBudget budget = shave_peak(now, out);
  shed_on_import(now, out);
  switch_on_surplus(now, lt, budget, out);
  reassert_doubtful(now, out);
  return out;
}

bool Engine::has_net(const Relay& r) const {
  const Meter* m = find_meter(r.spec.meter);
  return m && m->net;
}

// Switch counts of the last hour, pending switches that never answered, expired overrides.
void Engine::expire_timers(int64_t now) {
  for (auto& r : relays_) {
    while (!r.switches.empty() && r.switches.front() <= now - kHourNs) r.switches.pop_front();
    if (r.pending && now - r.pending_ns > to_ns(site_.pending_timeout_s)) fail(r, now);
    if (r.ovr != Override::automatic && r.ovr_expires_ns != 0 && now >= r.ovr_expires_ns) {
      r.ovr = Override::automatic;
      r.ovr_expires_ns = 0;
    }
  }
}

// 1. Manual override, fail-safe, unknown start state, conditions that stopped holding.
void Engine::decide_overrides_and_failsafe(int64_t now, LocalTime lt, std::vector<Decision>& out) {
  for (auto& r : relays_) {
    if (!can_decide(r, now)) continue;
    if (r.ovr != Override::automatic) {
      bool target = r.ovr == Override::on;
      if (target != r.on || !r.known || r.doubt) {
        std::string why = fmt("manual override %s", target ? "on" : "off");
        if (r.ovr_expires_ns) why += fmt(" (expires in %.0f s)", to_s(r.ovr_expires_ns - now));
        emit(r, target, "manual", why, now, out);
      }
      continue;
    }
    if (stale(r, now)) {
      if (r.spec.failsafe == Failsafe::keep) continue;
      bool target = r.spec.failsafe == Failsafe::on;
      if (target != r.on || !r.known || r.doubt) {
        const Meter* m = find_meter(r.spec.meter);
        std::string why = (m && m->last_data_ns)
                              ? fmt("no fresh data from meter '%s' for %.0f s",
                                    r.spec.meter.c_str(), to_s(now - *m->last_data_ns))
                              : fmt("no data from meter '%s' yet", r.spec.meter.c_str());
        emit(r, target, "failsafe", why + ": failsafe " + to_string(r.spec.failsafe), now, out);
      }
      continue;
    }
    if (!r.known) {
      emit(r, false, "auto", "state unknown at start: off until the rules switch it on", now, out);
      continue;
    }
    std::string why;
    if (r.on && !conditions_hold(r, lt, now, why) &&
        now - r.last_switch_ns >= to_ns(r.spec.min_on_s))
      emit(r, false, "auto", why, now, out);
  }
}

// 2. Peak shaving: shed the lowest priorities while the quarter-hour average is projected
// over the limit; what is left of the quarter's budget limits phase 4.
Engine::QuarterBudget Engine::shave_peak(int64_t now, std::vector<Decision>& out) {
  QuarterBudget qb;
  const int64_t quarter_start = quarter_of(now);
  const Meter* demand_meter = find_meter(demand_meter_);
  if (!site_.demand_limit_w || !demand_meter || !demand_meter->last_data_ns ||
      quarter_ns_ != quarter_start || now - demand_at_ > 30 * kNsPerSec) {
    if (site_.demand_limit_w) projected_w_.reset();
    return qb;
  }
  // Shed on the low estimate (a shed relay not yet visible in the reading is not shed
  // twice), switch on against the high one (a load just switched on counts already).
  double projected = projection_at(now, false);
  projected_w_ = projected;
  const double budget = *site_.demand_limit_w - site_.margin_w;
  qb.quarter_left = to_s(quarter_start + kQuarterNs - now) / 900.0;
  for (auto it = relays_.rbegin(); it != relays_.rend() && projected > budget; ++it) {
    Relay& r = *it;
    if (!can_decide(r, now) || !r.on || !r.known || !auto_fresh(r, now) || r.spec.load_w <= 0)
      continue;
    emit(r, false, "auto",
         fmt("peak shaving: quarter-hour average projected %.0f W above %.0f W (limit %.0f W "
             "- margin %.0f W)",
             projected, budget, *site_.demand_limit_w, site_.margin_w),
         now, out);
    r.shed_quarter = quarter_start;
    projected -= r.spec.load_w * qb.quarter_left;
  }
  double projected_high = projection_at(now, true);
  double import_high_w = std::max(0.0, import_now_w_ + compensation(nullptr, nullptr, true));
  for (const auto& x : out)
    if (!x.new_state && x.old_state)
      if (const Relay* r = find(x.relay)) {
        projected_high -= r->spec.load_w * qb.quarter_left;
        import_high_w -= r->spec.load_w;
      }
  qb.headroom = budget - projected_high;
  qb.steady_room_w = budget - import_high_w;
  return qb;
}

bool Engine::meter_settling(const std::string& meter) const {
  const Meter* m = find_meter(meter);
  for (const auto& x : relays_) {
    if (x.spec.meter != meter) continue;
    if (x.pending && !x.pending_state && x.on) return true;
    if (!x.pending && !x.on && x.last_switch_ns != 0 &&
        !(m && m->last_data_ns && *m->last_data_ns >= x.last_switch_ns + to_ns(site_.settle_s)))
      return true;
  }
  return false;
}

// 3. Import: one relay per meter off at a time, lowest priority first.
void Engine::shed_on_import(int64_t now, std::vector<Decision>& out) {
  std::vector<std::string> meters_done;
  for (auto it = relays_.rbegin(); it != relays_.rend(); ++it) {
    Relay& r = *it;
    if (!can_decide(r, now) || !r.on || !r.known || !auto_fresh(r, now) || !has_net(r) ||
        !r.above_since)
      continue;
    if (now - r.last_switch_ns < to_ns(r.spec.min_on_s)) continue;
    // Timers count what the readings showed (up to the last one), not the ticks after it.
    const int64_t seen = *find_meter(r.spec.meter)->last_data_ns;
    if (seen - *r.above_since < to_ns(r.spec.off_delay_s)) continue;
    const double eff = eff_net(r, false);
    if (!(eff > r.spec.off_above_w)) continue;
    if (std::find(meters_done.begin(), meters_done.end(), r.spec.meter) != meters_done.end() ||
        meter_settling(r.spec.meter))
      continue;
    emit(r, false, "auto",
         fmt("net %.0f W above %.0f W for %.0f s", eff, r.spec.off_above_w,
             to_s(seen - *r.above_since)),
         now, out);
    meters_done.push_back(r.spec.meter);
  }
}

int64_t Engine::staging_start(size_t index) const {
  const Relay& r = relays_[index];
  int64_t from = *r.below_since;
  for (size_t j = 0; j < index; ++j) {
    const Relay& h = relays_[j];
    if (h.spec.meter != r.spec.meter) continue;
    if (h.pending && h.pending_state)
      from = std::max(from, h.pending_ns);
    else if (!h.pending && h.on)
      from = std::max(from, h.last_switch_ns);
  }
  return from;
}

// 4. Surplus: switch on, highest priority first, within the quarter's budget.
void Engine::switch_on_surplus(int64_t now, LocalTime lt, QuarterBudget budget,
                               std::vector<Decision>& out) {
  const int64_t quarter_start = quarter_of(now);
  for (size_t i = 0; i < relays_.size(); ++i) {
    Relay& r = relays_[i];
    if (!can_decide(r, now) || r.on || !r.known || !auto_fresh(r, now) || !has_net(r) ||
        !r.below_since)
      continue;
    if (r.shed_quarter && *r.shed_quarter == quarter_start) continue;
    if (r.last_switch_ns != 0 && now - r.last_switch_ns < to_ns(r.spec.min_off_s)) continue;
    if (!budget_allows_on(r)) continue;
    std::string why;
    if (!conditions_hold(r, lt, now, why)) continue;
    const int64_t seen = *find_meter(r.spec.meter)->last_data_ns;
    if (seen - staging_start(i) < to_ns(r.spec.on_delay_s)) continue;
    const double eff = eff_net(r, true);
    if (!(eff < r.spec.on_below_w)) continue;
    if (budget.headroom) {
      const double need = r.spec.load_w * budget.quarter_left;
      if (need > *budget.headroom) continue;
      // A load that the limit cannot carry for a whole quarter would be shed at the next
      // quarter's start: only worth it with at least max(min_on_s, 300 s) left.
      if (r.spec.load_w > budget.steady_room_w &&
          to_s(quarter_start + kQuarterNs - now) < std::max(r.spec.min_on_s, 300.0))
        continue;
      *budget.headroom -= need;
      budget.steady_room_w -= r.spec.load_w;
    }
    emit(r, true, "auto",
         fmt("net %.0f W below %.0f W for %.0f s", eff, r.spec.on_below_w,
             to_s(seen - *r.below_since)),
         now, out);
  }
}

// 5. A failed switch that may have happened all the same: when the rules want no other
// state, the believed one is re-asserted (not counted as a switch: it changes nothing
// the engine knows). "keep" leaves a stale relay's output alone.
void Engine::reassert_doubtful(int64_t now, std::vector<Decision>& out) {
  for (auto& r : relays_) {
    if (!r.doubt || !r.known || !can_decide(r, now) || !auto_fresh(r, now)) continue;
    emit(r, r.on, "auto",
         fmt("re-asserting %s: the switch %s may have happened although it failed",
             r.on ? "on" : "off", r.on ? "off" : "on"),
         now, out);
  }
}

// Every threshold of the phases of step() that only the time can cross (docs/ARCHITECTURE.md,
// "Threading": the worker sleeps until the earliest one). Strict comparisons (now - t > d)
// turn at t + d + 1.
std::optional<int64_t> Engine::next_deadline(int64_t now) const {
  std::optional<int64_t> next;
  auto at = [&](int64_t t) {
    if (t > now && (!next || t < *next)) next = t;
  };
  for (const auto& r : relays_) {
    if (!r.switches.empty()) at(r.switches.front() + kHourNs);  // expire_timers, the budget
    if (r.pending) at(r.pending_ns + to_ns(site_.pending_timeout_s) + 1);
    if (r.ovr != Override::automatic && r.ovr_expires_ns != 0) at(r.ovr_expires_ns);
    at(r.retry_at_ns);  // can_decide
    if (r.last_switch_ns != 0) {
      at(r.last_switch_ns + to_ns(r.spec.min_on_s));
      at(r.last_switch_ns + to_ns(r.spec.min_off_s));
    }
    const Meter* m = find_meter(r.spec.meter);
    if (!m) continue;
    if (m->last_data_ns) at(*m->last_data_ns + to_ns(r.spec.stale_after_s) + 1);  // stale()
    for (const auto& c : r.spec.conditions) {
      if (c.kind != Condition::Kind::value) continue;
      auto it = m->values.find(c.name);
      if (it != m->values.end()) at(it->second.at + to_ns(r.spec.stale_after_s) + 1);
    }
  }
  bool shed = false;
  for (const auto& r : relays_) shed = shed || r.shed_quarter.has_value();
  if (site_.demand_limit_w || shed) at(quarter_of(now) + kQuarterNs);
  if (site_.demand_limit_w && quarter_ns_ >= 0) {
    // shave_peak: fresh demand data of this quarter projects with the time itself
    if (quarter_ns_ == quarter_of(now) && now - demand_at_ <= 30 * kNsPerSec) at(now + 1);
    at(demand_at_ + 30 * kNsPerSec + 1);
  }
  return next;
}

bool Engine::uses_local_time() const {
  for (const auto& r : relays_)
    for (const auto& c : r.spec.conditions)
      if (c.kind != Condition::Kind::value) return true;
  return false;
}

std::vector<RelayStatus> Engine::status(int64_t now) const {
  std::vector<const Relay*> order;
  for (const auto& r : relays_) order.push_back(&r);
  std::sort(order.begin(), order.end(), [](auto a, auto b) { return a->index < b->index; });
  std::vector<RelayStatus> out;
  for (const Relay* r : order) {
    RelayStatus s;
    s.name = r->spec.name;
    s.on = r->on;
    s.known = r->known;
    s.doubt = r->doubt;
    s.mode = r->last_mode;
    s.override_mode = r->ovr;
    s.override_expires_ns = r->ovr_expires_ns;
    s.pending = r->pending;
    s.failures = r->failures;
    s.retry_at_ns = r->retry_at_ns;
    for (int64_t t : r->switches)
      if (t > now - kHourNs) ++s.switches_last_hour;
    out.push_back(std::move(s));
  }
  return out;
}

EngineState Engine::export_state() const {
  EngineState s;
  std::vector<const Relay*> order;
  for (const auto& r : relays_) order.push_back(&r);
  std::sort(order.begin(), order.end(), [](auto a, auto b) { return a->index < b->index; });
  for (const Relay* r : order) {
    if (!r->known) continue;
    RelayState rs;
    rs.name = r->spec.name;
    rs.on = r->on;
    rs.last_switch_ns = r->last_switch_ns;
    rs.switches_ns.assign(r->switches.begin(), r->switches.end());
    rs.override_mode = r->ovr;
    rs.override_expires_ns = r->ovr_expires_ns;
    rs.below_since_ns = r->below_since;
    rs.above_since_ns = r->above_since;
    rs.shed_quarter_ns = r->shed_quarter;
    s.relays.push_back(std::move(rs));
  }
  for (const auto& [name, m] : meters_)
    if (m.last_data_ns) s.meters.push_back({name, *m.last_data_ns});
  return s;
}

void Engine::grace_after_restart(int64_t now_ns, double save_interval_s) {
  const int64_t now = std::clamp<int64_t>(now_ns, 0, kMaxTime);
  // Every saved time of the past (an override's expiry lies ahead and is not one of them).
  auto each_time = [&](auto&& f) {
    for (auto& r : relays_) {
      if (!r.known) continue;
      f(r.last_switch_ns);
      for (int64_t& t : r.switches) f(t);
      if (r.below_since) f(*r.below_since);
      if (r.above_since) f(*r.above_since);
    }
    for (auto& [name, m] : meters_)
      if (m.last_data_ns) f(*m.last_data_ns);
  };
  // Clock behind the saved state: the latest saved time marks "just before the restart".
  int64_t latest = saved_ns_;
  each_time([&](int64_t t) { latest = std::max(latest, t); });
  if (latest > now) {
    const int64_t shift = latest - now;
    auto back = [&](int64_t& t) {
      if (t > 0) t = std::max<int64_t>(1, t - shift);
    };
    each_time(back);
    for (auto& r : relays_) {
      if (!r.known) continue;
      if (r.ovr_expires_ns) back(r.ovr_expires_ns);
      r.shed_quarter.reset();  // a quarter of the wrong clock
    }
    if (saved_ns_) back(saved_ns_);
  }
  // Least downtime the file proves (0 when it does not say when it was written).
  const int64_t unsaved = saved_clean_ ? 0 : to_ns(save_interval_s);
  const int64_t down = saved_ns_ ? std::max<int64_t>(0, now - saved_ns_ - unsaved) : 0;
  std::map<std::string, double> min_stale;  // per meter, over its known relays
  for (const auto& r : relays_) {
    if (!r.known) continue;
    auto [it, fresh] = min_stale.emplace(r.spec.meter, r.spec.stale_after_s);
    if (!fresh) it->second = std::min(it->second, r.spec.stale_after_s);
  }
  for (const auto& [name, stale_s] : min_stale)
    if (down <= to_ns(stale_s)) meter(name).last_data_ns = now;
}

void Engine::import_state(const EngineState& s) {
  saved_ns_ = sane(s.saved_ns) ? s.saved_ns : 0;
  saved_clean_ = s.clean;
  for (const auto& rs : s.relays) {
    Relay* r = find(rs.name);
    if (!r) continue;
    r->on = rs.on;
    r->known = true;
    r->last_switch_ns = sane(rs.last_switch_ns) ? rs.last_switch_ns : 0;
    r->switches.clear();
    for (int64_t t : rs.switches_ns)
      if (sane(t)) r->switches.push_back(t);
    std::sort(r->switches.begin(), r->switches.end());
    bool expiry_ok = sane(rs.override_expires_ns);
    r->ovr = expiry_ok ? rs.override_mode : Override::automatic;
    r->ovr_expires_ns = expiry_ok ? rs.override_expires_ns : 0;
    r->below_since = sane(rs.below_since_ns);
    r->above_since = sane(rs.above_since_ns);
    r->shed_quarter = sane(rs.shed_quarter_ns);
    r->pending = false;
    r->failures = 0;
    r->retry_at_ns = 0;
  }
  for (const auto& ms : s.meters) {
    if (ms.last_data_ns <= 0 || !sane(ms.last_data_ns)) continue;
    Meter& m = meter(ms.name);
    m.last_data_ns = ms.last_data_ns;
  }
}

}  // namespace mp::actuate
