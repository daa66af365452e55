#include "serve/relay_control.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>

#include "common/json.h"

namespace mp::serve {
namespace {

constexpr int64_t kMaxForS = 366LL * 86400;

bool set_mode(const std::string& m, RelayCommand& c, std::string& error) {
  if (m != "on" && m != "off" && m != "auto") {
    error = "mode must be on, off or auto";
    return false;
  }
  c.mode = m;
  return true;
}

bool set_for(const std::string& text, RelayCommand& c, std::string& error) {
  long v = 0;
  if (text.empty()) return true;
  if (!parse_int(text, 0, long(kMaxForS), v)) {
    error = "for_s must be a whole number of seconds, 0 .. 31622400";
    return false;
  }
  c.for_s = v;
  return true;
}

bool parse_json_body(const std::string& body, RelayCommand& c, std::string& error) {
  google::protobuf::Struct obj;
  if (!google::protobuf::util::JsonStringToMessage(body, &obj).ok()) {
    error = "the body is not a JSON object";
    return false;
  }
  for (const auto& [k, v] : obj.fields()) {
    if (k == "mode" && v.kind_case() == google::protobuf::Value::kStringValue) {
      if (!set_mode(v.string_value(), c, error)) return false;
    } else if (k == "for_s" && v.kind_case() == google::protobuf::Value::kNumberValue) {
      const double d = v.number_value();
      if (!std::isfinite(d) || d < 0 || d > double(kMaxForS) || d != std::floor(d)) {
        error = "for_s must be a whole number of seconds, 0 .. 31622400";
        return false;
      }
      c.for_s = int64_t(d);
    } else if (k == "for_s" && v.kind_case() == google::protobuf::Value::kNullValue) {
      c.for_s = 0;
    } else {
      error = "unknown or mistyped field \"" + k + "\" (want {\"mode\":\"on\",\"for_s\":3600})";
      return false;
    }
  }
  return true;
}

bool parse_form_body(const std::string& body, RelayCommand& c, std::string& csrf,
                     std::string& error) {
  auto q = parse_query(body);
  if (!q) {
    error = "malformed form body";
    return false;
  }
  for (const auto& [k, v] : *q) {
    if (k == "mode") {
      if (!set_mode(v, c, error)) return false;
    } else if (k == "for_s") {
      if (!set_for(v, c, error)) return false;
    } else if (k == "csrf") {
      csrf = v;
    } else {
      error = "unknown form field \"" + k + "\"";
      return false;
    }
  }
  return true;
}

}  // namespace

bool parse_relay_command(const std::string& body, bool form, RelayCommand& c,
                         std::string& csrf_field, std::string& error) {
  if (body.size() > 1024) {
    error = "body longer than 1024 bytes";
    return false;
  }
  const bool ok =
      form ? parse_form_body(body, c, csrf_field, error) : parse_json_body(body, c, error);
  if (!ok) return false;
  if (c.mode.empty()) {
    error = "mode is missing (on, off or auto)";
    return false;
  }
  if (c.for_s && c.mode == "auto") {
    error = "a duration goes with on or off, not auto";
    return false;
  }
  return true;
}

std::string relay_control_text(const RelayCommand& c) {
  std::string req = "relay " + c.relay + " " + c.mode;
  if (c.for_s > 0) req += " " + std::to_string(c.for_s);
  return req;
}

std::string relay_status_entry(const std::string& status_reply, const std::string& relay) {
  google::protobuf::Struct obj;
  if (!google::protobuf::util::JsonStringToMessage(status_reply, &obj).ok()) return "";
  auto it = obj.fields().find("relays");
  if (it == obj.fields().end() || !it->second.has_list_value()) return "";
  for (const auto& v : it->second.list_value().values()) {
    if (!v.has_struct_value()) continue;
    const auto& f = v.struct_value().fields();
    auto n = f.find("name");
    if (n == f.end() || n->second.string_value() != relay) continue;
    std::string out;
    if (!google::protobuf::util::MessageToJsonString(v.struct_value(), &out).ok()) return "";
    return out;
  }
  return "";
}

Response relay_control_response(const RelayCommand& c, const std::optional<std::string>& reply,
                                const std::string& status_entry) {
  if (!reply)
    return json_error(503, "actuate does not answer (is meterpipe running with this relay?)",
                      {{"relay", c.relay}});
  google::protobuf::Struct obj;
  std::string error = "actuate's answer is not JSON";
  bool ok = false;
  if (google::protobuf::util::JsonStringToMessage(*reply, &obj).ok()) {
    const auto& f = obj.fields();
    if (auto e = f.find("error"); e != f.end()) error = e->second.string_value();
    if (auto o = f.find("ok"); o != f.end()) ok = o->second.bool_value();
  }
  if (!ok) {
    const bool unknown = error.rfind("no relay named", 0) == 0;
    return json_error(unknown ? 404 : 409, error, {{"relay", c.relay}});
  }
  Response r;
  r.body = "{\"ok\":true,\"relay\":" + json::quote(c.relay) + ",\"mode\":" + json::quote(c.mode) +
           ",\"for_s\":" + std::to_string(c.for_s) +
           ",\"status\":" + (status_entry.empty() ? "null" : status_entry) + "}";
  return r;
}

std::string relay_control_event(const RelayCommand& c, const std::string& user,
                                const std::string& status_entry) {
  return "{\"type\":\"relay_control\",\"relay\":" + json::quote(c.relay) +
         ",\"by\":" + json::quote(user) + ",\"mode\":" + json::quote(c.mode) +
         ",\"for_s\":" + std::to_string(c.for_s) +
         ",\"status\":" + (status_entry.empty() ? "null" : status_entry) + "}";
}

}  // namespace mp::serve
