#include "upload/line_protocol.h"

#include <charconv>
#include <cmath>
#include <set>

#include "meterpipe.pb.h"

namespace mp::upload {
namespace {

constexpr int64_t kDayNs = int64_t(86400) * 1000000000;

// Escapes `text` with a backslash before each character of `special`. Refuses newlines, an
// empty text, and a backslash that the parser would take for an escape.
bool append_escaped(std::string& out, std::string_view text, std::string_view special) {
  if (text.empty()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n' || c == '\r') return false;
    if (c == '\\') {
      if (i + 1 == text.size()) return false;
      char next = text[i + 1];
      if (next == '\\' || special.find(next) != std::string_view::npos) return false;
    }
    if (special.find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return true;
}

std::string describe(std::string_view what, std::string_view text) {
  std::string s(what);
  s += " '";
  for (char c : text) {
    if (c == '\n')
      s += "\\n";
    else if (c == '\r')
      s += "\\r";
    else
      s += c;
  }
  s += "' cannot be written in line protocol (newline, empty, or a backslash before a "
       "character that needs escaping)";
  return s;
}

struct Group {
  std::string measurement;
  int64_t time_ns;
  std::string fields;
};

}  // namespace

bool parse_precision(std::string_view text, Precision& out) {
  if (text == "s")
    out = Precision::s;
  else if (text == "ms")
    out = Precision::ms;
  else if (text == "us" || text == "u")
    out = Precision::us;
  else if (text == "ns" || text == "n")
    out = Precision::ns;
  else
    return false;
  return true;
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::s:
      return "s";
    case Precision::ms:
      return "ms";
    case Precision::us:
      return "us";
    case Precision::ns:
      return "ns";
  }
  return "ns";
}

int64_t convert_time(int64_t t, Precision p) {
  int64_t div = 1;
  switch (p) {
    case Precision::s:
      div = 1000000000;
      break;
    case Precision::ms:
      div = 1000000;
      break;
    case Precision::us:
      div = 1000;
      break;
    case Precision::ns:
      div = 1;
      break;
  }
  int64_t q = t / div;
  if (t % div < 0) --q;
  return q;
}

bool is_integer_field(std::string_view name) {
  return name == "tariff" || name == "power_failures" || name == "long_power_failures" ||
         name.starts_with("voltage_sags_") || name.starts_with("voltage_swells_");
}

bool append_measurement(std::string& out, std::string_view name) {
  if (name.starts_with('#')) return false;
  return append_escaped(out, name, ", ");
}

bool append_key(std::string& out, std::string_view key) { return append_escaped(out, key, ",= "); }

bool append_string_field(std::string& out, std::string_view value) {
  out += '"';
  for (char c : value) {
    if (c == '\n' || c == '\r') return false;
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return true;
}

void append_float(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

std::string check_options(const LineProtocolOptions& options) {
  std::string scratch;
  if (!append_measurement(scratch, options.measurement))
    return describe("measurement", options.measurement);
  for (const auto& [name, m] : options.measurement_for) {
    if (!append_measurement(scratch, m)) return describe("measurement", m);
  }
  for (const auto& [k, v] : options.tags) {
    if (k == "meter") return "user tag 'meter' clashes with the meter name tag";
    if (!append_key(scratch, k)) return describe("tag key", k);
    if (!v.empty() && !append_key(scratch, v)) return describe("tag value", v);
  }
  return {};
}

int64_t choose_time_ns(const meterpipe::Reading& r) {
  int64_t meter = r.meter_time_ns();
  int64_t recv = r.receive_time_ns();
  if (meter != 0) {
    if (!r.clock_synced() || recv == 0) return meter;
    // A difference that overflows int64 is far more than a day (and 32-bit ARM has no
    // __int128 to compute it exactly).
    int64_t diff = 0;
    if (!__builtin_sub_overflow(meter, recv, &diff) && diff <= kDayNs && diff >= -kDayNs)
      return meter;
  }
  return recv;
}

EncodeResult encode(const meterpipe::Reading& reading, const LineProtocolOptions& options) {
  EncodeResult res;
  if (std::string e = check_options(options); !e.empty()) {
    res.error = std::move(e);
    return res;
  }
  const int64_t time_ns = choose_time_ns(reading);
  if (time_ns == 0) {
    res.error = "reading of meter '" + reading.meter() + "' has no timestamp";
    return res;
  }

  // Series key: measurement then sorted tags. The meter tag joins the user tags.
  std::map<std::string_view, std::string_view> tags;
  for (const auto& [k, v] : options.tags)
    if (!v.empty()) tags.emplace(k, v);
  if (!reading.meter().empty()) tags.emplace("meter", reading.meter());
  std::string tagset;
  for (const auto& [k, v] : tags) {
    tagset += ',';
    append_key(tagset, k);  // keys and user values were checked by check_options
    tagset += '=';
    if (!append_key(tagset, v)) {
      res.error = describe("meter name", v);
      return res;
    }
  }

  std::vector<Group> groups;
  std::set<std::string_view> seen;
  for (const auto& v : reading.values()) {
    const std::string& name = v.name();
    std::string field;
    if (!append_key(field, name)) {
      res.error = describe("field name", name);
      return res;
    }
    if (v.value_case() == meterpipe::Value::VALUE_NOT_SET) {
      res.skipped.push_back(name + ": no value");
      continue;
    }
    if (seen.count(name)) {
      res.skipped.push_back(name + ": duplicate name in one reading");
      continue;
    }
    field += '=';
    if (v.value_case() == meterpipe::Value::kText) {
      if (!append_string_field(field, v.text())) {
        res.error = "text value of '" + name + "' contains a newline";
        return res;
      }
    } else {
      double d = v.number();
      if (!std::isfinite(d)) {
        res.skipped.push_back(name + ": not a finite number");
        continue;
      }
      if (is_integer_field(name)) {
        // Whole numbers within the int64 range only; 2^63 itself is out of range.
        if (d != std::trunc(d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0) {
          res.skipped.push_back(name + ": integer field with a non-integer value");
          continue;
        }
        char buf[24];
        auto r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(d));
        field.append(buf, r.ptr);
        field += 'i';
      } else {
        append_float(field, d);
      }
    }
    seen.insert(name);

    auto over = options.measurement_for.find(name);
    const std::string& meas =
        over == options.measurement_for.end() ? options.measurement : over->second;
    int64_t t = time_ns;
    if (meas != options.measurement && v.time_ns() != 0) t = v.time_ns();
    Group* g = nullptr;
    for (auto& cand : groups)
      if (cand.measurement == meas && cand.time_ns == t) g = &cand;
    if (!g) {
      groups.push_back(Group{meas, t, {}});
      g = &groups.back();
    } else {
      g->fields += ',';
    }
    g->fields += field;
  }

  for (auto& g : groups) {
    std::string line;
    line.reserve(g.measurement.size() + tagset.size() + g.fields.size() + 24);
    append_measurement(line, g.measurement);
    line += tagset;
    line += ' ';
    line += g.fields;
    line += ' ';
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, convert_time(g.time_ns, options.precision));
    line.append(buf, r.ptr);
    res.points.push_back(EncodedPoint{std::move(line), g.time_ns});
  }
  return res;
}

}  // namespace mp::upload

namespace mp::upload {

std::string encode_relay(const meterpipe::Envelope& env, Precision p) {
  if (!env.has_relay()) return {};
  const auto& r = env.relay();
  std::string line;
  append_measurement(line, "relay");
  line += ",relay=";
  if (!append_key(line, r.relay())) return {};
  line += " state=";
  line += r.new_state() ? "1i" : "0i";
  line += ",ok=";
  line += r.ok() ? "true" : "false";
  line += ",mode=";
  if (!append_string_field(line, r.mode())) return {};
  line += ",reason=";
  if (!append_string_field(line, r.reason())) return {};
  line += ' ';
  line += std::to_string(convert_time(env.send_time_ns(), p));
  return line;
}

}  // namespace mp::upload
