#include "history/export.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>

#include "history/tariffs.h"

namespace mp::history {

namespace {

// Every column a table can have, in this order.
const std::vector<Column>& all_columns() {
  static const std::vector<Column> cols = [] {
    std::vector<Column> c = {{"power_net_w", 0},   {"power_net_min_w", 0}, {"power_net_max_w", 0},
                             {"power_l1_w", 0},    {"power_l2_w", 0},      {"power_l3_w", 0},
                             {"voltage_min_v", 1}, {"voltage_max_v", 1},   {"current_max_a", 2}};
    for (int k = 0; k < kCounters; ++k) c.push_back({std::string(counter_name(k)), 3});
    c.push_back({"demand_max_w", 0});
    c.push_back({"estimated", 0});
    c.push_back({"cost", 4});
    return c;
  }();
  return cols;
}

// Column ids, in the order of all_columns().
enum Col : int {
  kPower,
  kPowerMin,
  kPowerMax,
  kPhase1,
  kVoltageMin = kPhase1 + 3,
  kVoltageMax,
  kCurrentMax,
  kCounter0,
  kDemand = kCounter0 + kCounters,
  kEstimated,
  kCost,
  kColumnCount
};
using Values = std::array<std::optional<double>, kColumnCount>;

// Local times of minute starts for a table of many rows: localtime_r once per UTC quarter
// hour (every zone's offset is a whole number of quarter hours and changes at one), the rest
// by arithmetic. localtime_r, strftime and snprintf per row were a third of a month's export.
class LocalClock {
 public:
  // "YYYY-MM-DDTHH:MM+hh:mm" of `t` (a minute start) appended to `out`.
  void append_text(int64_t t, std::string& out) {
    const std::tm& q = quarter(t);  // sets quarter_: before the difference below
    const int minute = q.tm_min + int((t - quarter_) / 60);
    if (minute > 59) {  // (an offset that is not whole quarters: none since 1970)
      std::tm tm{};
      const time_t tt = time_t(t);
      localtime_r(&tt, &tm);
      append(tm, tm.tm_min, out);
      return;
    }
    append(tm_, minute, out);
  }
  // The start of the local hour that holds `t`.
  int64_t hour_start(int64_t t) {
    const int64_t local = t + quarter(t).tm_gmtoff;
    return t - (((local % 3600) + 3600) % 3600);
  }

 private:
  const std::tm& quarter(int64_t t) {
    const int64_t q = t - (((t % 900) + 900) % 900);
    if (q != quarter_) {
      const time_t tt = time_t(q);
      localtime_r(&tt, &tm_);
      quarter_ = q;
    }
    return tm_;
  }
  static void digits(char* p, int v, int n) {
    for (int i = n - 1; i >= 0; --i, v /= 10) p[i] = char('0' + v % 10);
  }
  static void append(const std::tm& tm, int minute, std::string& out) {
    char b[22];  // YYYY-MM-DDTHH:MM+hh:mm
    digits(b, tm.tm_year + 1900, 4);
    b[4] = '-';
    digits(b + 5, tm.tm_mon + 1, 2);
    b[7] = '-';
    digits(b + 8, tm.tm_mday, 2);
    b[10] = 'T';
    digits(b + 11, tm.tm_hour, 2);
    b[13] = ':';
    digits(b + 14, minute, 2);
    const long off = tm.tm_gmtoff / 60;
    b[16] = off < 0 ? '-' : '+';
    digits(b + 17, int(std::labs(off) / 60), 2);
    b[19] = ':';
    digits(b + 20, int(std::labs(off) % 60), 2);
    out.append(b, sizeof b);
  }

  int64_t quarter_ = INT64_MIN;
  std::tm tm_{};
};

// Energy etc. of a period: the last end counter in it minus the last one before it.
struct CounterRun {
  Counters prev;
  Counters last;
  void take(const MinuteRow& r) {
    for (int k = 0; k < kCounters; ++k)
      if (r.counters[k]) last[k] = r.counters[k];
  }
  void close(Values& v) {
    for (int k = 0; k < kCounters; ++k) {
      if (prev[k] && last[k] && *last[k] >= *prev[k])
        v[kCounter0 + k] = from_milli(*last[k] - *prev[k]);
      prev[k] = last[k];
    }
  }
};

// Power of a period: averages weighted by readings, extremes.
struct PowerRun {
  double sum = 0, min = 0, max = 0;
  int64_t n = 0;
  double ph_sum[3] = {0, 0, 0};
  int64_t ph_n[3] = {0, 0, 0};
  std::optional<double> v_min, v_max, i_max;
  void take(const MinuteRow& r) {
    if (r.p_n) {
      min = n ? std::min(min, r.p_min) : r.p_min;
      max = n ? std::max(max, r.p_max) : r.p_max;
      sum += r.p_sum;
      n += r.p_n;
    }
    for (int i = 0; i < 3; ++i) {
      ph_sum[i] += r.phase_sum[i];
      ph_n[i] += r.phase_n[i];
    }
    if (r.v_min) v_min = v_min ? std::min(*v_min, *r.v_min) : *r.v_min;
    if (r.v_max) v_max = v_max ? std::max(*v_max, *r.v_max) : *r.v_max;
    if (r.i_max) i_max = i_max ? std::max(*i_max, *r.i_max) : *r.i_max;
  }
  void close(Values& v) const {
    if (n) {
      v[kPower] = sum / double(n);
      v[kPowerMin] = min;
      v[kPowerMax] = max;
    }
    for (int i = 0; i < 3; ++i)
      if (ph_n[i]) v[kPhase1 + i] = ph_sum[i] / double(ph_n[i]);
    v[kVoltageMin] = v_min;
    v[kVoltageMax] = v_max;
    v[kCurrentMax] = i_max;
  }
};

// Rows go into the table as they are made, with a mark per column that had a value.
struct Rows {
  Table& table;
  std::array<bool, kColumnCount> used{};
  void add(std::string_view time, const Values& v) {
    double cells[kColumnCount];
    for (int c = 0; c < kColumnCount; ++c) {
      cells[c] = v[c] ? *v[c] : std::nan("");
      used[size_t(c)] = used[size_t(c)] || v[c];
    }
    table.add_row(time, cells);
  }
};

void minute_rows(Store& s, int64_t meter, int64_t t0, int64_t t1, bool hourly, Rows& out) {
  CounterRun counters;
  for (const Point& p : s.points_before(meter, t0, 1)) counters.last = p.c;  // before the first
  counters.prev = counters.last;
  PowerRun power;
  LocalClock clock;
  std::string text;
  int64_t key = INT64_MIN;
  auto close = [&]() {
    if (key == INT64_MIN) return;
    Values v;
    power.close(v);
    counters.close(v);
    text.clear();
    clock.append_text(key, text);
    out.add(text, v);
    power = PowerRun{};
  };
  s.for_each_minute(meter, t0, t1, [&](const MinuteRow& r) {
    const int64_t k = hourly ? clock.hour_start(r.t) : r.t;
    if (k != key) {
      close();
      key = k;
    }
    power.take(r);
    counters.take(r);
  });
  close();
}

Values day_values(const DayRow& d) {
  Values v;
  for (int k = 0; k < kCounters; ++k)
    if (d.delta[k]) v[kCounter0 + k] = from_milli(*d.delta[k]);
  if (d.peak) v[kDemand] = double(d.peak->w);
  v[kEstimated] = d.estimated ? 1 : 0;
  return v;
}

void day_rows(const std::vector<DayRow>& days, const std::vector<config::Tariff>& tariffs,
              Rows& out) {
  for (const auto& d : days) {
    Values v = day_values(d);
    v[kCost] = day_cost(tariffs, d);
    out.add(d.day.date, v);
  }
}

void month_rows(const std::vector<DayRow>& days, const std::vector<config::Tariff>& tariffs,
                Rows& out) {
  std::map<std::string, std::vector<const DayRow*>> by_month;
  for (const auto& d : days) by_month[month_of(d.day.date)].push_back(&d);
  for (const auto& [month, list] : by_month) {
    Values v;
    int64_t peak = -1;
    bool estimated = false, any_cost = false;
    double cost = 0;
    std::vector<std::string> dates;
    for (const DayRow* d : list) {
      for (int k = 0; k < kCounters; ++k)
        if (d->delta[k]) v[kCounter0 + k] = v[kCounter0 + k].value_or(0) + from_milli(*d->delta[k]);
      if (d->peak) peak = std::max(peak, d->peak->w);
      estimated = estimated || d->estimated;
      if (auto c = day_cost(tariffs, *d)) {
        cost += *c;
        any_cost = true;
        dates.push_back(d->day.date);
      }
    }
    if (peak >= 0) v[kDemand] = double(peak);
    v[kEstimated] = estimated ? 1 : 0;
    if (any_cost) v[kCost] = cost + (peak >= 0 ? capacity_cost(tariffs, dates, peak) : 0.0);
    out.add(month, v);
  }
}

// `sep` (',' or none), then a value with `decimals` digits (0..4; "-0.000" as "0.000"); null
// (JSON) or nothing (CSV) for none. Integer arithmetic into a small buffer, one append: printf's
// %f was half of an export's time, many small appends most of the rest.
void append_cell(std::string& o, char sep, const std::optional<double>& v, int decimals,
                 bool json) {
  char b[48];
  char* p = b;
  if (sep) *p++ = sep;
  if (!v || !std::isfinite(*v)) {
    if (json) {
      std::memcpy(p, "null", 4);
      p += 4;
    }
    o.append(b, size_t(p - b));
    return;
  }
  static constexpr double kPow[] = {1, 10, 100, 1000, 10000};
  decimals = std::clamp(decimals, 0, 4);
  const double scaled = std::round(*v * kPow[decimals]);
  if (!(std::fabs(scaled) < 9e15)) {
    o.append(b, size_t(p - b));
    char buf[400];
    const int n = std::snprintf(buf, sizeof buf, "%.*f", decimals, *v);
    if (n > 0) o.append(buf, size_t(std::min(n, int(sizeof buf) - 1)));
    return;
  }
  int64_t n = int64_t(scaled);
  if (n < 0) {
    *p++ = '-';
    n = -n;
  }
  char digits[24];
  const auto res = std::to_chars(digits, digits + sizeof digits, n);
  const int len = int(res.ptr - digits);
  if (decimals == 0) {
    std::memcpy(p, digits, size_t(len));
    p += len;
  } else if (len <= decimals) {
    *p++ = '0';
    *p++ = '.';
    std::memset(p, '0', size_t(decimals - len));
    p += decimals - len;
    std::memcpy(p, digits, size_t(len));
    p += len;
  } else {
    std::memcpy(p, digits, size_t(len - decimals));
    p += len - decimals;
    *p++ = '.';
    std::memcpy(p, digits + len - decimals, size_t(decimals));
    p += decimals;
  }
  o.append(b, size_t(p - b));
}

void append_json_string(std::string& o, std::string_view s) {
  o += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += char(c);
    } else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += char(c);
    }
  }
  o += '"';
}

std::string json_string(const std::string& s) {
  std::string o;
  append_json_string(o, s);
  return o;
}

void append_csv_field(std::string& o, std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) {
    o += s;
    return;
  }
  o += '"';
  for (char c : s) o += c == '"' ? std::string_view("\"\"") : std::string_view(&c, 1);
  o += '"';
}

}  // namespace

bool parse_resolution(const std::string& text, Resolution& out) {
  for (Resolution r : {Resolution::minute, Resolution::hour, Resolution::day, Resolution::month})
    if (text == resolution_name(r)) {
      out = r;
      return true;
    }
  return false;
}

const char* resolution_name(Resolution r) {
  switch (r) {
    case Resolution::minute:
      return "minute";
    case Resolution::hour:
      return "hour";
    case Resolution::day:
      return "day";
    case Resolution::month:
      return "month";
  }
  return "day";
}

bool query(Store& s, const std::string& meter, const std::string& from, const std::string& to,
           Resolution res, const std::vector<config::Tariff>& tariffs, Table& out,
           std::string& error) {
  const auto d0 = local_day(from), d1 = local_day(to);
  if (!d0 || !d1) {
    error = "from and to must be dates like 2026-11-01 (not \"" + (d0 ? to : from) + "\")";
    return false;
  }
  if (d1->t0 < d0->t0) {
    error = "to (" + to + ") is before from (" + from + ")";
    return false;
  }
  const auto id = s.find_meter(meter);
  if (!id) {
    error = "no history for meter \"" + meter + "\"";
    return false;
  }
  out = Table{};
  out.meter = meter;
  out.resolution = res;
  out.from = from;
  out.to = to;
  Rows rows{out};
  if (res == Resolution::minute || res == Resolution::hour) {
    const int64_t step = res == Resolution::minute ? 60 : 3600;
    // room for the range's rows, up to ~23 days of minutes (5 MB): a wide range of few rows
    // (from=2000-01-01) must not reserve hundreds of MB (a 32-bit Pi's address space)
    out.start(kColumnCount, size_t(std::clamp<int64_t>((d1->t1 - d0->t0) / step, 0, 1 << 15)));
    minute_rows(s, *id, d0->t0, d1->t1, res == Resolution::hour, rows);
  } else {
    out.start(kColumnCount, 0);
    // a month starts at its first day, whatever `from` says
    const std::string first = res == Resolution::month ? month_of(from) + "-01" : from;
    const auto days = s.days(*id, first, local_day(d1->t1).date);
    if (res == Resolution::day)
      day_rows(days, tariffs, rows);
    else
      month_rows(days, tariffs, rows);
  }
  std::vector<size_t> used;
  for (size_t c = 0; c < kColumnCount; ++c)
    if (rows.used[c]) used.push_back(c);
  out.columns.push_back({"time", 0});
  for (size_t c : used) out.columns.push_back(all_columns()[c]);
  const bool with_cost = rows.used[kCost];
  out.pick(std::move(used));
  if (with_cost && !tariffs.empty()) out.currency = tariffs.back().currency;
  return true;
}

std::string to_csv(const Table& t) {
  std::string o;
  o.reserve(t.size() * (24 + 10 * t.columns.size()) + 256);
  for (size_t i = 0; i < t.columns.size(); ++i) {
    if (i) o += ',';
    append_csv_field(o, t.columns[i].name);
  }
  o += "\r\n";
  for (size_t r = 0; r < t.size(); ++r) {
    append_csv_field(o, t.time(r));
    for (size_t i = 0; i + 1 < t.columns.size(); ++i)
      append_cell(o, ',', t.value(r, i), t.columns[i + 1].decimals, false);
    o += "\r\n";
  }
  return o;
}

std::string to_json(const Table& t) {
  std::string o = "{\"meter\":" + json_string(t.meter) + ",\"resolution\":\"" +
                  resolution_name(t.resolution) + "\",\"from\":" + json_string(t.from) +
                  ",\"to\":" + json_string(t.to) + ",\"currency\":" + json_string(t.currency) +
                  ",\"columns\":[";
  for (size_t i = 0; i < t.columns.size(); ++i)
    o += (i ? "," : "") + json_string(t.columns[i].name);
  o.reserve(o.size() + t.size() * (32 + 10 * t.columns.size()) + 16);
  o += "],\"rows\":[";
  for (size_t r = 0; r < t.size(); ++r) {
    o += r ? ",[" : "[";
    append_json_string(o, t.time(r));
    for (size_t i = 0; i + 1 < t.columns.size(); ++i)
      append_cell(o, ',', t.value(r, i), t.columns[i + 1].decimals, true);
    o += ']';
  }
  o += "]}";
  return o;
}

void Table::start(size_t width, size_t rows_hint) {
  width_ = width;
  times_.reserve(rows_hint * 22);
  time_end_.reserve(rows_hint);
  cells_.reserve(rows_hint * width);
}

void Table::add_row(std::string_view time, const double* cells) {
  times_.append(time);
  time_end_.push_back(times_.size());
  cells_.insert(cells_.end(), cells, cells + width_);
}

}  // namespace mp::history
