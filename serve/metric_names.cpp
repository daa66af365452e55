#include "serve/metric_names.h"

#include <cctype>

namespace mp::serve {
namespace {

std::vector<std::string> tokens_of(std::string_view raw) {
  std::vector<std::string> out;
  std::string cur;
  for (char c0 : raw) {
    const unsigned char c = static_cast<unsigned char>(c0);
    if (std::isalnum(c) && c < 0x80) {
      cur += char(std::tolower(c));
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

struct UnitWord {
  const char* abbrev;
  const char* word;
  double scale;
};

// Abbreviations promtool rejects (or that hide a unit) and what they become.
constexpr UnitWord kUnits[] = {
    {"w", "watts", 1},
    {"kw", "watts", 1e3},
    {"va", "voltamperes", 1},
    {"v", "volts", 1},
    {"a", "amperes", 1},
    {"hz", "hertz", 1},
    {"s", "seconds", 1},
    {"sec", "seconds", 1},
    {"secs", "seconds", 1},
    {"ms", "seconds", 1e-3},
    {"us", "seconds", 1e-6},
    {"ns", "seconds", 1e-9},
    {"m", "seconds", 60},
    {"min", "seconds", 60},
    {"mins", "seconds", 60},
    {"minutes", "seconds", 60},
    {"h", "seconds", 3600},
    {"hours", "seconds", 3600},
    {"d", "seconds", 86400},
    {"days", "seconds", 86400},
    {"b", "bytes", 1},
    {"kb", "bytes", 1024.0},
    {"mb", "bytes", 1048576.0},
    {"gb", "bytes", 1073741824.0},
    {"tb", "bytes", 1099511627776.0},
    {"pb", "bytes", 1125899906842624.0},
    {"milliseconds", "seconds", 1e-3},
    {"microseconds", "seconds", 1e-6},
    {"nanoseconds", "seconds", 1e-9},
    {"kilobytes", "bytes", 1024.0},
    {"megabytes", "bytes", 1048576.0},
    {"percent", "ratio", 0.01},
    {"pct", "ratio", 0.01},
};

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool has_reserved_suffix(std::string_view n) {
  return ends_with(n, "_total") || ends_with(n, "_count") || ends_with(n, "_sum") ||
         ends_with(n, "_bucket") || ends_with(n, "_created") || ends_with(n, "_info");
}

}  // namespace

MetricName prom_base(std::string_view raw) {
  MetricName out;
  std::string name;
  for (auto& t : tokens_of(raw)) {
    std::string word = t;
    for (const auto& u : kUnits) {
      if (t == u.abbrev) {
        word = u.word;
        out.scale *= u.scale;
        break;
      }
    }
    // promtool: a metric name should not include its type
    if (word == "counter" || word == "gauge" || word == "histogram" || word == "summary" ||
        word == "untyped")
      word += "s";
    if (!name.empty()) name += '_';
    name += word;
  }
  out.name = name;
  return out;
}

bool is_counter_unit(std::string_view t) {
  return t == "kwh" || t == "wh" || t == "mwh" || t == "kvarh" || t == "varh" || t == "m3" ||
         t == "gj" || t == "mj";
}

std::optional<MetricName> value_metric(std::string_view value_name) {
  if (value_name.empty()) return std::nullopt;
  // canonical names are lower-case snake_case words; protocol-native leftovers are
  // "<protocol>_<native id>" and carry the id's punctuation or the protocol's name
  for (char c : value_name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return std::nullopt;
  if (!(value_name[0] >= 'a' && value_name[0] <= 'z')) return std::nullopt;
  for (std::string_view p : {"dsmr_", "modbus_", "mbus_", "sunspec_", "dlms_", "raw_"})
    if (value_name.substr(0, p.size()) == p) return std::nullopt;
  const auto toks = tokens_of(value_name);
  if (toks.empty()) return std::nullopt;
  MetricName b = prom_base(value_name);
  if (b.name.empty()) return std::nullopt;
  // event counts a meter keeps (DSMR power failures, voltage sags and swells per phase)
  const bool event_count = toks[0] == "power" && toks.size() == 2 && toks[1] == "failures";
  const bool long_failures = value_name == "long_power_failures";
  const bool sag_swell =
      toks.size() >= 2 && toks[0] == "voltage" && (toks[1] == "sags" || toks[1] == "swells");
  if (is_counter_unit(toks.back()) || event_count || long_failures || sag_swell) {
    b.type = MetricType::counter;
    b.name = "meterpipe_" + b.name + "_total";
  } else {
    b.name = "meterpipe_" + b.name;
    if (has_reserved_suffix(b.name)) b.name += "_value";
  }
  // names of meterpipe's own families are not available to values
  if (b.name.rfind("meterpipe_worker_", 0) == 0 || b.name.rfind("meterpipe_relay_", 0) == 0 ||
      b.name.rfind("meterpipe_serve_", 0) == 0 || b.name.rfind("meterpipe_reading", 0) == 0 ||
      b.name.rfind("meterpipe_other_", 0) == 0)
    return std::nullopt;
  return b;
}

MetricName worker_counter_metric(std::string_view counter) {
  MetricName b = prom_base(counter);
  if (b.name.empty()) b.name = "unnamed";
  if (ends_with(b.name, "_total") || b.name == "total")
    b.name = "meterpipe_worker_" + b.name;
  else
    b.name = "meterpipe_worker_" + b.name + "_total";
  b.type = MetricType::counter;
  return b;
}

MetricName worker_gauge_metric(std::string_view gauge) {
  MetricName b = prom_base(gauge);
  if (b.name.empty()) b.name = "unnamed";
  b.name = "meterpipe_worker_" + b.name;
  if (has_reserved_suffix(b.name)) b.name += "_value";
  b.type = MetricType::gauge;
  return b;
}

bool split_subject(std::string_view key, const std::vector<std::string>& subjects,
                   std::string& base, std::string& subject) {
  const std::string* best = nullptr;
  for (const auto& s : subjects) {
    if (s.empty() || key.size() < s.size() + 2) continue;
    if (!ends_with(key, s) || key[key.size() - s.size() - 1] != '_') continue;
    if (!best || s.size() > best->size()) best = &s;
  }
  if (!best) return false;
  base = std::string(key.substr(0, key.size() - best->size() - 1));
  subject = *best;
  return true;
}

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

std::string lint_name(std::string_view n, MetricType type) {
  if (!valid_metric_name(n)) return "invalid metric name";
  for (size_t i = 0; i + 1 < n.size(); ++i)
    if (n[i] >= 'a' && n[i] <= 'z' && n[i + 1] >= 'A' && n[i + 1] <= 'Z')
      return "metric names should be written in 'snake_case' not 'camelCase'";
  if (n.find(':') != std::string_view::npos) return "metric names should not contain ':'";
  if (type == MetricType::counter && !ends_with(n, "_total"))
    return "counter metrics should have \"_total\" suffix";
  if (type != MetricType::counter && ends_with(n, "_total"))
    return "non-counter metrics should not have \"_total\" suffix";
  if (ends_with(n, "_count") || ends_with(n, "_sum") || ends_with(n, "_bucket"))
    return "non-histogram and non-summary metrics should not have \"_count\", \"_sum\" or "
           "\"_bucket\" suffixes";
  const std::string typ = type == MetricType::counter ? "counter" : "gauge";
  const std::string s(n);
  if (s.find("_" + typ + "_") != std::string::npos || ends_with(s, "_" + typ))
    return "metric name should not include type '" + typ + "'";
  for (const char* a :
       {"s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"}) {
    const std::string t = std::string("_") + a;
    if (s.find(t + "_") != std::string::npos || ends_with(s, t))
      return "metric names should not contain abbreviated units";
  }
  for (const char* u : {"minutes", "hours", "days", "weeks", "milliseconds", "microseconds",
                        "nanoseconds", "kilobytes", "megabytes", "percent", "bits"}) {
    const std::string t = std::string("_") + u;
    if (s.find(t + "_") != std::string::npos || ends_with(s, t))
      return std::string("use base unit instead of \"") + u + "\"";
  }
  return "";
}

}  // namespace mp::serve
