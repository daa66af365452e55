#include "history/import_lp.h"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <vector>

#include "history/rollup.h"

namespace mp::history {

namespace {

// The next element up to an unescaped character of `stops`, backslash escapes removed.
std::string take(std::string_view& s, std::string_view stops) {
  std::string out;
  size_t i = 0;
  for (; i < s.size() && stops.find(s[i]) == std::string_view::npos; ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) ++i;
    out += s[i];
  }
  s.remove_prefix(i);
  return out;
}

bool parse_fields(std::string_view& s, std::map<std::string, double>& out) {
  while (!s.empty() && s[0] != ' ') {
    const std::string key = take(s, "=");
    if (s.empty() || s[0] != '=') return false;
    s.remove_prefix(1);
    if (!s.empty() && s[0] == '"') {  // a string field: skipped
      size_t i = 1;
      while (i < s.size() && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
      if (i >= s.size()) return false;
      s.remove_prefix(i + 1);
    } else {
      std::string v = take(s, ", ");
      if (!v.empty() && (v.back() == 'i' || v.back() == 'u')) v.pop_back();
      double d = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
      if (ec == std::errc() && p == v.data() + v.size()) out[key] = d;
    }
    if (!s.empty() && s[0] == ',') s.remove_prefix(1);
  }
  return true;
}

// Readings are taken from 2000 to 2100 only: a timestamp outside is a damaged line (and the
// days between two readings are all written, so one wild time would mean years of days).
constexpr int64_t kFirstSecond = 946'684'800LL;   // 2000-01-01T00:00Z
constexpr int64_t kLastSecond = 4'102'444'800LL;  // 2100-01-01T00:00Z

// The timestamp in ns, its precision taken from its size; nullopt outside 2000..2100 (checked
// before scaling: a wild value would overflow).
std::optional<int64_t> to_ns(int64_t t) {
  int64_t scale = 1;  // ns
  if (t < 100'000'000'000LL)
    scale = 1'000'000'000LL;  // seconds
  else if (t < 100'000'000'000'000LL)
    scale = 1'000'000LL;  // ms
  else if (t < 100'000'000'000'000'000LL)
    scale = 1'000LL;  // us
  const int64_t per_s = 1'000'000'000LL / scale;
  if (t < kFirstSecond * per_s || t >= kLastSecond * per_s) return std::nullopt;
  return t * scale;
}

struct Key {
  std::string meter;
  int64_t time_ns;
  bool operator<(const Key& o) const {
    return meter != o.meter ? meter < o.meter : time_ns < o.time_ns;
  }
};

bool read_file(const std::string& file, std::string& text, std::string& error) {
  gzFile f = gzopen(file.c_str(), "rb");  // reads plain files as they are
  if (!f) {
    error = file + ": cannot open";
    return false;
  }
  char buf[65536];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) text.append(buf, size_t(n));
  int zerr = 0;
  const char* msg = gzerror(f, &zerr);
  gzclose(f);
  if (n < 0 || (zerr != Z_OK && zerr != Z_BUF_ERROR)) {
    error = file + ": " + (msg ? msg : "read error");
    return false;
  }
  return true;
}

}  // namespace

bool parse_lp_line(std::string_view line, LpPoint& out) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  if (line.empty() || line[0] == '#') return false;
  out = LpPoint{};
  out.measurement = take(line, ", ");
  while (!line.empty() && line[0] == ',') {
    line.remove_prefix(1);
    std::string k = take(line, "=");
    if (line.empty()) return false;
    line.remove_prefix(1);
    out.tags[k] = take(line, ", ");
  }
  if (line.empty() || line[0] != ' ') return false;
  line.remove_prefix(1);
  if (!parse_fields(line, out.fields) || line.empty()) return false;
  line.remove_prefix(1);
  int64_t t = 0;
  auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), t);
  if (ec != std::errc() || p != line.data() + line.size()) return false;
  const auto ns = to_ns(t);
  if (!ns) return false;
  out.time_ns = *ns;
  return !out.measurement.empty();
}

bool import_lp_file(Store& s, const std::string& file, ImportStats& stats, std::string& error) {
  std::string text;
  if (!read_file(file, text, error)) return false;
  import_lp_text(s, text, stats);
  return true;
}

void import_lp_text(Store& s, std::string_view text, ImportStats& stats) {
  std::map<Key, Reading> readings;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    LpPoint p;
    if (line.empty() || line[0] == '#') continue;
    ++stats.lines;
    if (!parse_lp_line(line, p) || !p.tags.count("meter")) {
      ++stats.bad_lines;
      continue;
    }
    Reading& r = readings[Key{p.tags["meter"], p.time_ns}];
    r.meter = p.tags["meter"];
    r.meter_time_ns = p.time_ns;
    for (const auto& [k, v] : p.fields) {
      Value x;
      x.name = k;
      x.number = v;
      r.values.push_back(std::move(x));
    }
  }
  // readings in time order per meter -> minutes -> days, in one transaction per file
  s.begin();
  try {
    std::map<std::string, std::pair<int64_t, int64_t>> range;
    MinuteRow row;
    std::string meter;
    int64_t id = 0;
    auto flush = [&]() {
      if (!row.n) return;
      s.put_minute(id, row);
      ++stats.minutes;
      auto [it, fresh] = range.try_emplace(meter, row.t, row.t);
      it->second.first = std::min(it->second.first, row.t);
      it->second.second = std::max(it->second.second, row.t);
    };
    for (const auto& [key, r] : readings) {
      const int64_t minute = (key.time_ns / 1'000'000'000 / 60) * 60;
      if (key.meter != meter || minute != row.t) {
        flush();
        if (key.meter != meter) id = s.meter_id(key.meter);
        meter = key.meter;
        row = MinuteRow{};
        row.t = minute;
      }
      add_reading(row, r, key.time_ns);
      ++stats.readings;
    }
    flush();
    for (const auto& [m, rg] : range)
      stats.days += update_days(s, *s.find_meter(m), rg.first, rg.second);
    s.commit();
  } catch (...) {
    s.rollback();
    throw;
  }
}

}  // namespace mp::history
