#include "actuate/state_store.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>

#include "common/fs.h"

namespace mp::actuate {
namespace {

constexpr std::string_view kHeader = "meterpipe-actuate-state 1";

std::string encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
        c == '-' || c == '.') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool decode(std::string_view s, std::string& out) {
  out.clear();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return false;
    int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
    if (h < 0 || l < 0) return false;
    out += static_cast<char>(h * 16 + l);
    i += 2;
  }
  return !out.empty();
}

bool parse_i64(std::string_view s, int64_t& v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_opt(std::string_view s, std::optional<int64_t>& v) {
  if (s == "-") {
    v.reset();
    return true;
  }
  int64_t x;
  if (!parse_i64(s, x)) return false;
  v = x;
  return true;
}

std::string opt(const std::optional<int64_t>& v) { return v ? std::to_string(*v) : "-"; }

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t p = s.find(sep, start);
    if (p == std::string_view::npos) p = s.size();
    if (p > start) out.push_back(s.substr(start, p - start));
    start = p + 1;
  }
  return out;
}

}  // namespace

std::string serialize_state(const EngineState& s) {
  std::string out(kHeader);
  out += '\n';
  for (const auto& r : s.relays) {
    out += "relay " + encode(r.name) + " on=" + (r.on ? "1" : "0") +
           " last_switch=" + std::to_string(r.last_switch_ns) + " switches=";
    if (r.switches_ns.empty()) out += '-';
    for (size_t i = 0; i < r.switches_ns.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(r.switches_ns[i]);
    }
    out += std::string(" override=") + to_string(r.override_mode) +
           " override_expires=" + std::to_string(r.override_expires_ns) +
           " below_since=" + opt(r.below_since_ns) + " above_since=" + opt(r.above_since_ns) +
           " shed_quarter=" + opt(r.shed_quarter_ns) + "\n";
  }
  for (const auto& m : s.meters)
    out += "meter " + encode(m.name) + " last_data=" + std::to_string(m.last_data_ns) + "\n";
  if (s.saved_ns)
    out += "saved " + std::to_string(s.saved_ns) + " clean=" + (s.clean ? "1" : "0") + "\n";
  return out;
}

bool parse_state(std::string_view text, EngineState& out, std::string& error) {
  EngineState s;
  auto lines = split(text, '\n');
  if (lines.empty() || lines[0] != kHeader) {
    error = "not a meterpipe actuate state file (bad first line)";
    return false;
  }
  for (size_t ln = 1; ln < lines.size(); ++ln) {
    auto fail = [&](const std::string& why) {
      error = "line " + std::to_string(ln + 1) + ": " + why;
      return false;
    };
    auto tok = split(lines[ln], ' ');
    if (tok.empty()) continue;
    if (tok.size() < 2) return fail("missing name");
    if (tok[0] == "saved") {  // saved NS clean=0|1
      if (!parse_i64(tok[1], s.saved_ns)) return fail("bad time for saved: " + std::string(tok[1]));
      for (size_t i = 2; i < tok.size(); ++i)
        if (tok[i] == "clean=1")
          s.clean = true;
        else if (tok[i] != "clean=0")
          return fail("bad value for saved: " + std::string(tok[i]));
      continue;
    }
    std::string name;
    if (!decode(tok[1], name)) return fail("bad name");
    if (tok[0] != "relay" && tok[0] != "meter") continue;  // a newer kind of line
    RelayState r;
    r.name = name;
    MeterState m;
    m.name = name;
    for (size_t i = 2; i < tok.size(); ++i) {
      size_t eq = tok[i].find('=');
      if (eq == std::string_view::npos) return fail("expected key=value: " + std::string(tok[i]));
      std::string_view k = tok[i].substr(0, eq), v = tok[i].substr(eq + 1);
      bool ok = true;
      if (tok[0] == "meter") {
        if (k == "last_data") ok = parse_i64(v, m.last_data_ns);
      } else if (k == "on") {
        ok = v == "0" || v == "1";
        r.on = v == "1";
      } else if (k == "last_switch") {
        ok = parse_i64(v, r.last_switch_ns);
      } else if (k == "switches") {
        if (v != "-")
          for (auto part : split(v, ',')) {
            int64_t t;
            if (!(ok = parse_i64(part, t))) break;
            r.switches_ns.push_back(t);
          }
      } else if (k == "override") {
        ok = parse_override(v, r.override_mode);
      } else if (k == "override_expires") {
        ok = parse_i64(v, r.override_expires_ns);
      } else if (k == "below_since") {
        ok = parse_opt(v, r.below_since_ns);
      } else if (k == "above_since") {
        ok = parse_opt(v, r.above_since_ns);
      } else if (k == "shed_quarter") {
        ok = parse_opt(v, r.shed_quarter_ns);
      }
      if (!ok) return fail("bad value for " + std::string(k) + ": " + std::string(v));
    }
    if (tok[0] == "relay")
      s.relays.push_back(std::move(r));
    else
      s.meters.push_back(std::move(m));
  }
  out = std::move(s);
  return true;
}

bool save_state(const std::string& path, const EngineState& s, std::string& error) {
  return fs::atomic_replace(path, serialize_state(s), error);
}

LoadResult load_state(const std::string& path, EngineState& out, std::string& error) {
  std::string data;
  if (!fs::read_file(path, data, error)) {
    if (errno != ENOENT) return LoadResult::error;
    error.clear();
    return LoadResult::missing;
  }
  std::string why;
  if (!parse_state(data, out, why)) {
    error = path + ": " + why;
    return LoadResult::error;
  }
  return LoadResult::ok;
}

}  // namespace mp::actuate
