#include "config/relay_spec.h"

#include <cstdio>

namespace mp::config {

namespace {
int parse_minute(const std::string& hhmm) {
  int h = 0, m = 0;
  std::sscanf(hhmm.c_str(), "%d:%d", &h, &m);
  return h * 60 + m;
}
}  // namespace

actuate::RelaySpec to_relay_spec(const Relay& r) {
  actuate::RelaySpec s;
  s.name = r.name;
  s.meter = r.meter;
  s.output = r.name;
  s.priority = int(r.priority);
  s.load_w = r.load_w;
  s.on_below_w = r.on_below_w;
  s.off_above_w = r.off_above_w;
  s.on_delay_s = r.on_delay_s;
  s.off_delay_s = r.off_delay_s;
  s.min_on_s = r.min_on_s;
  s.min_off_s = r.min_off_s;
  s.max_switches_per_hour = int(r.max_switches_per_hour);
  s.stale_after_s = r.stale_after_s;
  actuate::parse_failsafe(r.failsafe, s.failsafe);
  // Several windows are one condition that holds in any of them (not one condition each:
  // "07:00-09:00" and "17:00-20:00" must not both have to hold).
  if (!r.windows.empty()) {
    std::vector<std::pair<int, int>> ws;
    for (const auto& w : r.windows) {
      const auto dash = w.find('-');
      ws.emplace_back(parse_minute(w.substr(0, dash)), parse_minute(w.substr(dash + 1)));
    }
    s.conditions.push_back(actuate::Condition::any_window(ws));
  }
  if (!r.weekdays.empty()) {
    static const char* names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
    unsigned mask = 0;
    for (const auto& d : r.weekdays)
      for (unsigned i = 0; i < 7; ++i)
        if (d == names[i]) mask |= 1u << i;
    s.conditions.push_back(actuate::Condition::weekdays(mask));
  }
  if (r.tariff) s.conditions.push_back(actuate::Condition::equals("tariff", double(*r.tariff)));
  for (const auto& c : r.conditions)
    s.conditions.push_back(actuate::Condition::value_range(c.name, c.min, c.max));
  return s;
}

actuate::SiteSpec to_site_spec(const Config& c) {
  actuate::SiteSpec s;
  s.demand_limit_w = c.actuate.demand_limit_w;
  s.margin_w = c.actuate.demand_margin_w;
  return s;
}

}  // namespace mp::config
