#include "mqtt/command.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cctype>
#include <cmath>

namespace mp::mqtt {
namespace {

constexpr size_t kMaxPayload = 256;
constexpr int64_t kMaxForS = 366LL * 86400;

std::string lower_trimmed(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  std::string out;
  for (size_t i = b; i < e; ++i) out += char(std::tolower(static_cast<unsigned char>(s[i])));
  return out;
}

bool parse_state(const std::string& word, std::string& state, std::string& error) {
  if (word == "on" || word == "off" || word == "auto") {
    state = word;
    return true;
  }
  error = "state must be ON, OFF or AUTO";
  return false;
}

// "3600", "90s", "30m", "2h" -> seconds
bool parse_duration(const std::string& text, int64_t& secs, std::string& error) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string unit = text.substr(digits);
  int64_t mult = 0;
  if (unit.empty() || unit == "s") mult = 1;
  if (unit == "m") mult = 60;
  if (unit == "h") mult = 3600;
  if (digits == 0 || digits > 9 || mult == 0) {
    error = "duration \"" + text + "\" is not seconds (3600) or 90s, 30m, 2h";
    return false;
  }
  secs = std::stoll(text.substr(0, digits)) * mult;
  return true;
}

bool check_for(const Command& c, std::string& error) {
  if (c.for_s < 0 || c.for_s > kMaxForS) {
    error = "duration must be 1 s .. 366 days";
    return false;
  }
  if (c.for_s > 0 && c.state == "auto") {
    error = "a duration goes with ON or OFF, not AUTO";
    return false;
  }
  return true;
}

std::optional<Command> parse_json(const std::string& payload, std::string& error) {
  google::protobuf::Struct obj;
  if (!google::protobuf::util::JsonStringToMessage(payload, &obj).ok()) {
    error = "not valid JSON";
    return std::nullopt;
  }
  Command c;
  for (const auto& [k, v] : obj.fields()) {
    if (k == "state" && v.kind_case() == google::protobuf::Value::kStringValue) {
      if (!parse_state(lower_trimmed(v.string_value()), c.state, error)) return std::nullopt;
    } else if (k == "for_s" && v.kind_case() == google::protobuf::Value::kNumberValue) {
      const double d = v.number_value();
      if (!std::isfinite(d) || d < 0 || d > double(kMaxForS)) {
        error = "for_s must be 0 .. 31622400 seconds";
        return std::nullopt;
      }
      c.for_s = int64_t(std::llround(d));
    } else {
      error = "unknown or mistyped field \"" + k + "\" (want {\"state\":\"ON\",\"for_s\":3600})";
      return std::nullopt;
    }
  }
  if (c.state.empty()) {
    error = "JSON command without \"state\"";
    return std::nullopt;
  }
  if (!check_for(c, error)) return std::nullopt;
  return c;
}

}  // namespace

std::optional<Command> parse_command(const std::string& payload, std::string& error) {
  if (payload.size() > kMaxPayload) {
    error = "payload longer than 256 bytes";
    return std::nullopt;
  }
  const std::string p = lower_trimmed(payload);
  if (p.empty()) {
    error = "empty payload";
    return std::nullopt;
  }
  if (p[0] == '{') return parse_json(payload, error);
  const auto sp = p.find_first_of(" \t");
  Command c;
  if (!parse_state(p.substr(0, sp), c.state, error)) return std::nullopt;
  if (sp != std::string::npos) {
    const std::string rest = lower_trimmed(p.substr(sp));
    if (rest.find_first_of(" \t") != std::string::npos) {
      error = "expected STATE [DURATION]";
      return std::nullopt;
    }
    if (!parse_duration(rest, c.for_s, error)) return std::nullopt;
    if (c.for_s == 0) {
      error = "duration must be 1 s .. 366 days";
      return std::nullopt;
    }
  }
  if (!check_for(c, error)) return std::nullopt;
  return c;
}

std::string control_request_text(const std::string& relay, const Command& c) {
  std::string req = "relay " + relay + " " + c.state;
  if (c.for_s > 0) req += " " + std::to_string(c.for_s);
  return req;
}

}  // namespace mp::mqtt
