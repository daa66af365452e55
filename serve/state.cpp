#include "serve/state.h"

#include <algorithm>
#include <cmath>

#include "common/clock.h"
#include "common/json.h"
#include "serve/metric_names.h"
#include "serve/prom_text.h"

namespace mp::serve {
namespace {

using json::append_number;
using json::append_string;

constexpr int64_t kMinuteMs = 60000;

const meterpipe::Value* find_value(const meterpipe::Reading& r, std::string_view name) {
  for (const auto& v : r.values())
    if (v.name() == name && v.value_case() == meterpipe::Value::kNumber) return &v;
  return nullptr;
}

int64_t reading_time_ns(const meterpipe::Envelope& env) {
  const auto& r = env.reading();
  if (r.receive_time_ns() > 0) return r.receive_time_ns();
  return env.send_time_ns();
}

void append_key(std::string& s, bool& first, std::string_view key) {
  if (!first) s += ',';
  first = false;
  append_string(s, key);
  s += ':';
}

std::string iso_or_null(int64_t ns) { return ns > 0 ? json::quote(clock::iso8601(ns)) : "null"; }

void append_relay_event(std::string& s, const meterpipe::RelayEvent& e, int64_t t_ns) {
  s += "{\"old_state\":";
  s += e.old_state() ? "true" : "false";
  s += ",\"new_state\":";
  s += e.new_state() ? "true" : "false";
  s += ",\"reason\":";
  append_string(s, e.reason());
  s += ",\"mode\":";
  append_string(s, e.mode());
  s += ",\"ok\":";
  s += e.ok() ? "true" : "false";
  s += ",\"error\":";
  append_string(s, e.error());
  s += ",\"time_ns\":" + std::to_string(t_ns) + ",\"time\":" + iso_or_null(t_ns) + "}";
}

double rate_of(const WorkerState& w, const std::string& counter, uint64_t now_value,
               int64_t now_mono, bool& ok) {
  ok = false;
  if (w.snapshots.empty()) return 0;
  const auto& [t0, c0] = w.snapshots.front();
  const double dt = double(now_mono - t0) / 1e9;
  if (dt < 1) return 0;
  auto it = c0.find(counter);
  const uint64_t before = it == c0.end() ? 0 : it->second;
  if (now_value < before) return 0;  // worker restarted: counters began again
  ok = true;
  return double(now_value - before) / dt;
}

}  // namespace

void DayCounter::update(int64_t d, double value, int64_t t_ns) {
  if (!std::isfinite(value)) return;
  if (!have) {
    day = d;
    base = last = value;
    have = true;
    from_midnight = false;
    since_ns = t_ns;
    return;
  }
  if (d != day) {
    // the last value of the previous day is the counter at midnight; after a longer gap
    // it is only the counter when we last saw it
    from_midnight = d == day + 1;
    base = last;
    since_ns = from_midnight ? 0 : t_ns;
    day = d;
  }
  if (value < base) {  // meter replaced or counter reset
    base = value;
    from_midnight = false;
    since_ns = t_ns;
  }
  last = value;
}

std::optional<double> net_power(const meterpipe::Reading& r) {
  if (auto* v = find_value(r, "power_net_w")) return v->number();
  auto* i = find_value(r, "power_import_w");
  auto* e = find_value(r, "power_export_w");
  if (i || e) return (i ? i->number() : 0.0) - (e ? e->number() : 0.0);
  return std::nullopt;
}

std::optional<double> energy_total(const meterpipe::Reading& r, const std::string& dir) {
  if (auto* v = find_value(r, "energy_" + dir + "_kwh")) return v->number();
  auto* t1 = find_value(r, "energy_" + dir + "_t1_kwh");
  auto* t2 = find_value(r, "energy_" + dir + "_t2_kwh");
  if (t1 || t2) return (t1 ? t1->number() : 0.0) + (t2 ? t2->number() : 0.0);
  return std::nullopt;
}

State::State(const std::vector<std::string>& meters,
             const std::vector<std::pair<std::string, std::string>>& relays,
             const std::vector<std::string>& workers) {
  for (const auto& m : meters) {
    if (meters_.size() >= kMaxMeters) break;
    auto& ms = meters_[m];
    ms.name = m;
    ms.configured = true;
  }
  for (const auto& [name, meter] : relays) {
    if (relays_.size() >= kMaxRelays) break;
    auto& r = relays_[name];
    r.name = name;
    r.meter = meter;
    r.configured = true;
  }
  for (const auto& w : workers) {
    if (workers_.size() >= kMaxWorkers) break;
    workers_[w].name = w;
  }
}

MeterState* State::meter_for(const std::string& name) {
  auto it = meters_.find(name);
  if (it != meters_.end()) return &it->second;
  if (meters_.size() >= kMaxMeters || name.empty()) return nullptr;
  auto& m = meters_[name];
  m.name = name;
  return &m;
}

const MeterState* State::meter(const std::string& m) const {
  auto it = meters_.find(m);
  return it == meters_.end() ? nullptr : &it->second;
}

std::vector<std::string> State::meter_names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : meters_) out.push_back(k);
  return out;
}

std::vector<std::string> State::relay_names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : relays_) out.push_back(k);
  return out;
}

bool State::on_reading(const meterpipe::Envelope& env, int64_t local_day) {
  if (!env.has_reading()) return false;
  const auto& r = env.reading();
  MeterState* m = meter_for(r.meter());
  if (!m) return false;
  const int64_t t_ns = reading_time_ns(env);
  const int64_t t_ms = t_ns / 1000000;
  m->have = true;
  m->last = r;
  m->publisher = env.publisher();
  m->seq = env.seq();
  m->send_time_ns = env.send_time_ns();
  ++m->readings;
  if (!m->first_ns) m->first_ns = t_ns;
  m->reading_rate.add(t_ms, 1);
  for (const auto& v : r.values()) {
    if (v.value_case() != meterpipe::Value::kNumber) continue;
    auto it = m->avg.find(v.name());
    if (it == m->avg.end()) {
      if (m->avg.size() >= kMaxValuesPerMeter) continue;
      it = m->avg.emplace(v.name(), std::make_unique<BucketRing>(60, 1000)).first;
    }
    it->second->add(t_ms, v.number());
    if (m->units.size() < kMaxValuesPerMeter || m->units.count(v.name()))
      m->units[v.name()] = v.unit();
  }
  for (const auto& series : history_series()) {
    std::optional<double> v;
    if (series == "power_net_w") {
      v = net_power(r);
    } else if (auto* p = find_value(r, series)) {
      v = p->number();
    }
    if (!v) continue;
    auto& h = m->history[series];
    if (!h) h = std::make_unique<SeriesHistory>();
    h->add(t_ms, *v);
  }
  if (auto v = energy_total(r, "import")) m->import_kwh.update(local_day, *v, t_ns);
  if (auto v = energy_total(r, "export")) m->export_kwh.update(local_day, *v, t_ns);
  if (auto* v = find_value(r, "gas_m3")) m->gas_m3.update(local_day, v->number(), t_ns);
  return true;
}

void State::on_relay(const meterpipe::Envelope& env) {
  if (!env.has_relay()) return;
  const auto& e = env.relay();
  auto it = relays_.find(e.relay());
  if (it == relays_.end()) {
    if (relays_.size() >= kMaxRelays || e.relay().empty()) return;
    it = relays_.emplace(e.relay(), RelayState{}).first;
    it->second.name = e.relay();
  }
  auto& r = it->second;
  r.known = true;
  r.on = e.new_state();
  r.have_event = true;
  r.last_event = e;
  r.event_time_ns = env.send_time_ns();
  ++r.events;
  if (e.ok() && e.old_state() != e.new_state()) ++r.switches;
  if (!e.ok()) ++r.failures;
}

void State::on_health(const meterpipe::Envelope& env, int64_t now_mono, int64_t now_wall) {
  if (!env.has_health()) return;
  const auto& h = env.health();
  auto it = workers_.find(h.worker());
  if (it == workers_.end()) {
    if (workers_.size() >= kMaxWorkers || h.worker().empty()) return;
    it = workers_.emplace(h.worker(), WorkerState{}).first;
    it->second.name = h.worker();
  }
  auto& w = it->second;
  if (w.have && w.health.pid() != h.pid()) w.snapshots.clear();  // restarted
  w.have = true;
  w.health = h;
  w.last_mono_ns = now_mono;
  w.last_wall_ns = now_wall;
  if (w.snapshots.empty() || now_mono - w.snapshots.back().first >= 10000000000LL) {
    w.snapshots.emplace_back(
        now_mono, std::map<std::string, uint64_t>(h.counters().begin(), h.counters().end()));
  }
  while (w.snapshots.size() > 1 && now_mono - w.snapshots[1].first >= 60000000000LL)
    w.snapshots.pop_front();
  // actuate's heartbeat carries the current state of each relay as gauge relay_<name>
  if (h.worker() == "actuate") {
    for (auto& [name, r] : relays_) {
      auto g = h.gauges().find("relay_" + name);
      if (g != h.gauges().end() && !r.have_event) {
        r.known = true;
        r.on = g->second != 0;
      }
    }
  }
}

void State::set_lost(const std::string& meter, uint64_t n) {
  auto it = meters_.find(meter);
  if (it != meters_.end()) it->second.bus_lost = n;
}

void State::append_today(std::string& s, const MeterState& m) const {
  s += '{';
  bool first = true;
  auto one = [&](const char* key, const DayCounter& d) {
    if (!d.have) return;
    append_key(s, first, key);
    s += "{\"value\":";
    append_number(s, d.today());
    s += ",\"counter\":";
    append_number(s, d.last);
    s += ",\"from_midnight\":";
    s += d.from_midnight ? "true" : "false";
    s += ",\"since_ns\":" + std::to_string(d.since_ns) + "}";
  };
  one("import_kwh", m.import_kwh);
  one("export_kwh", m.export_kwh);
  one("gas_m3", m.gas_m3);
  s += '}';
}

void State::append_reading(std::string& s, const MeterState& m) const {
  const auto& r = m.last;
  s += "{\"meter\":";
  append_string(s, m.name);
  s += ",\"protocol\":";
  append_string(s, r.protocol());
  s += ",\"device_id\":";
  append_string(s, r.device_id());
  s += ",\"publisher\":";
  append_string(s, m.publisher);
  s += ",\"seq\":" + std::to_string(m.seq);
  s += ",\"send_time_ns\":" + std::to_string(m.send_time_ns);
  s += ",\"meter_time_ns\":" + std::to_string(r.meter_time_ns());
  s += ",\"receive_time_ns\":" + std::to_string(r.receive_time_ns());
  s += ",\"receive_mono_ns\":" + std::to_string(r.receive_mono_ns());
  s += ",\"time\":" + iso_or_null(r.receive_time_ns());
  s += ",\"meter_time\":" + iso_or_null(r.meter_time_ns());
  s += ",\"clock_synced\":";
  s += r.clock_synced() ? "true" : "false";
  s += ",\"net_w\":";
  if (auto n = net_power(r))
    append_number(s, *n);
  else
    s += "null";
  s += ",\"values\":{";
  bool first = true;
  for (const auto& v : r.values()) {
    append_key(s, first, v.name());
    if (v.value_case() == meterpipe::Value::kNumber)
      append_number(s, v.number());
    else
      append_string(s, v.text());
  }
  s += "},\"today\":";
  append_today(s, m);
}

std::string State::last_json(const MeterState& m) const {
  std::string s;
  append_reading(s, m);
  s += ",\"units\":{";
  bool first = true;
  for (const auto& v : m.last.values()) {
    append_key(s, first, v.name());
    append_string(s, v.unit());
  }
  s += "}}";
  return s;
}

std::string State::all_last_json() const {
  std::string s = "{";
  bool first = true;
  for (const auto& [name, m] : meters_) {
    if (!m.have) continue;
    append_key(s, first, name);
    s += last_json(m);
  }
  s += '}';
  return s;
}

std::string State::reading_event_json(const meterpipe::Envelope& env) const {
  const MeterState* m = meter(env.reading().meter());
  if (!m || !m->have) return {};
  std::string s = "{\"type\":\"reading\",\"reading\":";
  append_reading(s, *m);
  s += "}}";
  return s;
}

std::string State::relay_event_json(const meterpipe::Envelope& env) {
  const auto& e = env.relay();
  std::string s = "{\"type\":\"relay\",\"relay\":";
  append_string(s, e.relay());
  s += ",\"publisher\":";
  append_string(s, env.publisher());
  s += ",\"seq\":" + std::to_string(env.seq());
  s += ",\"on\":";
  s += e.new_state() ? "true" : "false";
  s += ",\"event\":";
  append_relay_event(s, e, env.send_time_ns());
  s += '}';
  return s;
}

std::string State::minuteavg_json(const MeterState& m, int64_t now_ns) const {
  const int64_t now_ms = now_ns / 1000000;
  std::string s = "{\"meter\":";
  append_string(s, m.name);
  s += ",\"window_s\":60,\"time_ns\":" + std::to_string(now_ns) + ",\"values\":{";
  bool first = true;
  uint32_t most = 0;
  for (const auto& [name, ring] : m.avg) {
    double a;
    uint32_t n = 0;
    if (!ring->average(now_ms, kMinuteMs, a, &n)) continue;
    most = std::max(most, n);
    append_key(s, first, name);
    append_number(s, a);
  }
  s += "},\"units\":{";
  first = true;
  for (const auto& [name, ring] : m.avg) {
    double a;
    if (!ring->average(now_ms, kMinuteMs, a)) continue;
    auto u = m.units.find(name);
    append_key(s, first, name);
    append_string(s, u == m.units.end() ? "" : u->second);
  }
  s += "},\"samples\":" + std::to_string(most) + "}";
  return s;
}

std::string State::history_json(const MeterState& m, const std::string& series, int minutes,
                                int resolution_s, int64_t now_ns) const {
  const int64_t now_ms = now_ns / 1000000;
  std::string s = "{\"meter\":";
  append_string(s, m.name);
  s += ",\"series\":";
  append_string(s, series);
  s += ",\"unit\":\"W\",\"minutes\":" + std::to_string(minutes) +
       ",\"resolution_s\":" + std::to_string(resolution_s) +
       ",\"time_ns\":" + std::to_string(now_ns) + ",\"points\":[";
  auto it = m.history.find(series);
  if (it != m.history.end()) {
    const CompactRing& ring = resolution_s == 1 ? it->second->seconds : it->second->minutes;
    bool first = true;
    for (const auto& p : ring.range(now_ms, int64_t(minutes) * kMinuteMs)) {
      if (!first) s += ',';
      first = false;
      s += '[' + std::to_string(p.t_ms) + ',';
      append_number(s, p.avg);
      if (resolution_s != 1) {
        s += ',';
        append_number(s, p.min);
        s += ',';
        append_number(s, p.max);
      }
      s += ']';
    }
  }
  s += "]}";
  return s;
}

std::string State::relays_json() const {
  std::string s = "{\"relays\":[";
  bool first = true;
  for (const auto& [name, r] : relays_) {
    if (!first) s += ',';
    first = false;
    s += "{\"name\":";
    append_string(s, name);
    s += ",\"meter\":";
    append_string(s, r.meter);
    s += ",\"configured\":";
    s += r.configured ? "true" : "false";
    s += ",\"on\":";
    s += !r.known ? "null" : r.on ? "true" : "false";
    s += ",\"events\":" + std::to_string(r.events) + ",\"switches\":" + std::to_string(r.switches) +
         ",\"failures\":" + std::to_string(r.failures);
    s += ",\"last_event\":";
    if (r.have_event)
      append_relay_event(s, r.last_event, r.event_time_ns);
    else
      s += "null";
    s += '}';
  }
  s += "]}";
  return s;
}

std::string State::status_json(const ServeInfo& self, int64_t now_wall, int64_t now_mono) const {
  std::string s = "{\"time_ns\":" + std::to_string(now_wall) + ",\"serve\":{\"uptime_s\":";
  append_number(s, self.uptime_s);
  s += ",\"pid\":" + std::to_string(self.pid) + ",\"listen\":";
  append_string(s, self.listen);
  s += ",\"websocket_clients\":" + std::to_string(self.ws_clients) +
       ",\"websocket_dropped\":" + std::to_string(self.ws_dropped) +
       ",\"websocket_messages\":" + std::to_string(self.ws_messages) +
       ",\"http_requests\":" + std::to_string(self.http_requests) +
       ",\"bus_received\":" + std::to_string(self.bus_received) +
       ",\"bus_lost\":" + std::to_string(self.bus_lost) + "},\"workers\":{";
  bool first = true;
  for (const auto& [name, w] : workers_) {
    append_key(s, first, name);
    const double age = w.have ? double(now_mono - w.last_mono_ns) / 1e9 : -1;
    s += "{\"up\":";
    s += (w.have && age < health_stale_s_) ? "true" : "false";
    s += ",\"pid\":" + std::to_string(w.have ? w.health.pid() : 0) + ",\"uptime_s\":";
    if (w.have)
      append_number(s, w.health.uptime_s() + age);
    else
      s += "null";
    s += ",\"last_health_age_s\":";
    if (w.have)
      append_number(s, age);
    else
      s += "null";
    std::map<std::string, uint64_t> cs(w.health.counters().begin(), w.health.counters().end());
    s += ",\"counters\":{";
    bool f2 = true;
    for (const auto& [k, v] : cs) {
      append_key(s, f2, k);
      s += std::to_string(v);
    }
    s += "},\"rates_per_s\":{";
    f2 = true;
    for (const auto& [k, v] : cs) {
      bool ok;
      const double r = rate_of(w, k, v, w.last_mono_ns, ok);
      if (!ok) continue;
      append_key(s, f2, k);
      append_number(s, r);
    }
    s += "},\"gauges\":{";
    f2 = true;
    std::map<std::string, double> gs(w.health.gauges().begin(), w.health.gauges().end());
    for (const auto& [k, v] : gs) {
      append_key(s, f2, k);
      append_number(s, v);
    }
    s += "},\"info\":{";
    f2 = true;
    std::map<std::string, std::string> is(w.health.info().begin(), w.health.info().end());
    for (const auto& [k, v] : is) {
      append_key(s, f2, k);
      append_string(s, v);
    }
    s += "}}";
  }
  s += "},\"meters\":{";
  first = true;
  const int64_t now_ms = now_wall / 1000000;
  for (const auto& [name, m] : meters_) {
    append_key(s, first, name);
    s += "{\"configured\":";
    s += m.configured ? "true" : "false";
    s += ",\"readings\":" + std::to_string(m.readings) +
         ",\"bus_lost\":" + std::to_string(m.bus_lost) + ",\"reading_rate_per_s\":";
    // full seconds of the last minute only (the current one is still filling); a meter seen
    // for less than a minute is averaged over the time it has been seen
    double window_s = 60;
    if (m.first_ns > 0)
      window_s = std::clamp(double(now_wall - 1000000000LL - m.first_ns) / 1e9, 1.0, 60.0);
    append_number(s,
                  double(m.reading_rate.count(now_ms - 1000, int64_t(window_s * 1000))) / window_s);
    s += ",\"last_reading_age_s\":";
    if (m.have && m.last.receive_time_ns() > 0)
      append_number(s, double(now_wall - m.last.receive_time_ns()) / 1e9);
    else
      s += "null";
    // the workers' own per-meter counters (frames_<meter>, errors_<meter>, requests_...)
    s += ",\"workers\":{";
    bool fw = true;
    for (const auto& [wname, w] : workers_) {
      std::string counters, rates;
      bool fc = true, fr = true;
      std::map<std::string, uint64_t> cs(w.health.counters().begin(), w.health.counters().end());
      for (const auto& [k, v] : cs) {
        std::string base, subject;
        if (!split_subject(k, {name}, base, subject)) continue;
        append_key(counters, fc, base);
        counters += std::to_string(v);
        bool ok;
        const double r = rate_of(w, k, v, w.last_mono_ns, ok);
        if (ok) {
          append_key(rates, fr, base);
          append_number(rates, r);
        }
      }
      if (counters.empty()) continue;
      append_key(s, fw, wname);
      s += "{\"counters\":{" + counters + "},\"rates_per_s\":{" + rates + "}}";
    }
    s += "}}";
  }
  s += "}}";
  return s;
}

std::string State::metrics_text(const ServeInfo& self, int64_t now_wall, int64_t now_mono) const {
  PromText p;
  const std::vector<std::string> meters = meter_names(), relays = relay_names();
  // fixed families first: a worker counter that maps to the same name loses
  for (const auto& [name, m] : meters_) {
    p.add("meterpipe_readings_total", "Readings of the meter seen by serve since it started.",
          MetricType::counter, {{"meter", name}}, double(m.readings));
    if (!m.have) continue;
    if (m.last.receive_time_ns() > 0)
      p.add("meterpipe_reading_time_seconds",
            "Wall-clock time the last reading of the meter was received (Unix seconds).",
            MetricType::gauge, {{"meter", name}}, double(m.last.receive_time_ns()) / 1e9);
    if (auto n = net_power(m.last); n && !find_value(m.last, "power_net_w"))
      p.add("meterpipe_power_net_watts", "Net power from the grid (import - export), W.",
            MetricType::gauge, {{"meter", name}}, *n);
    for (const auto& v : m.last.values()) {
      if (v.value_case() != meterpipe::Value::kNumber) continue;
      if (auto mn = value_metric(v.name())) {
        p.add(mn->name,
              "Reading value " + v.name() + (v.unit().empty() ? "" : " (" + v.unit() + ")") + ".",
              mn->type, {{"meter", name}}, v.number() * mn->scale);
      } else {
        p.add("meterpipe_other_value", "Reading values without a canonical name.",
              MetricType::gauge, {{"meter", name}, {"name", v.name()}, {"unit", v.unit()}},
              v.number());
      }
    }
  }
  for (const auto& [name, r] : relays_) {
    if (r.known)
      p.add("meterpipe_relay_on", "Relay state (1 = load on).", MetricType::gauge,
            {{"relay", name}}, r.on ? 1 : 0);
    p.add("meterpipe_relay_switches_total", "Relay switches seen by serve since it started.",
          MetricType::counter, {{"relay", name}}, double(r.switches));
    p.add("meterpipe_relay_switch_failures_total",
          "Failed relay switches seen by serve since it started.", MetricType::counter,
          {{"relay", name}}, double(r.failures));
  }
  for (const auto& [name, w] : workers_) {
    const double age = w.have ? double(now_mono - w.last_mono_ns) / 1e9 : -1;
    p.add("meterpipe_worker_up", "1 when the worker's heartbeat is fresh.", MetricType::gauge,
          {{"worker", name}}, (w.have && age < health_stale_s_) ? 1 : 0);
    if (!w.have) continue;
    p.add("meterpipe_worker_heartbeat_age_seconds", "Age of the worker's last heartbeat.",
          MetricType::gauge, {{"worker", name}}, age);
    p.add("meterpipe_worker_uptime_seconds", "Seconds since the worker started.", MetricType::gauge,
          {{"worker", name}}, w.health.uptime_s() + age);
  }
  p.add("meterpipe_serve_websocket_clients", "WebSocket clients connected.", MetricType::gauge, {},
        double(self.ws_clients));
  p.add("meterpipe_serve_websocket_dropped_total",
        "WebSocket clients disconnected because they did not keep up.", MetricType::counter, {},
        double(self.ws_dropped));
  p.add("meterpipe_serve_http_requests_total", "HTTP requests answered.", MetricType::counter, {},
        double(self.http_requests));
  // every worker's own health counters and gauges; keys that end in a meter or relay name
  // get it as a label: frames_home -> meterpipe_worker_frames_total{meter="home"}
  for (const auto& [name, w] : workers_) {
    if (!w.have) continue;
    std::map<std::string, uint64_t> cs(w.health.counters().begin(), w.health.counters().end());
    for (const auto& [k, v] : cs) {
      std::string base = k, subject;
      PromText::Labels labels{{"worker", name}};
      if (split_subject(k, meters, base, subject))
        labels.push_back({"meter", subject});
      else if (split_subject(k, relays, base, subject))
        labels.push_back({"relay", subject});
      const MetricName mn = worker_counter_metric(base);
      p.add(mn.name, "Health counter " + base + " of the worker.", mn.type, labels,
            double(v) * mn.scale);
    }
    std::map<std::string, double> gs(w.health.gauges().begin(), w.health.gauges().end());
    for (const auto& [k, v] : gs) {
      std::string base = k, subject;
      PromText::Labels labels{{"worker", name}};
      if (split_subject(k, meters, base, subject))
        labels.push_back({"meter", subject});
      else if (split_subject(k, relays, base, subject))
        labels.push_back({"relay", subject});
      const MetricName mn = worker_gauge_metric(base);
      p.add(mn.name, "Health gauge " + base + " of the worker.", mn.type, labels, v * mn.scale);
    }
  }
  (void)now_wall;
  return p.text();
}

}  // namespace mp::serve
