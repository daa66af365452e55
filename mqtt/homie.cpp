#include "mqtt/homie.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>

#include "mqtt/value_classes.h"

namespace mp::mqtt {
namespace {

std::string number_text(double v) {
  if (!std::isfinite(v)) return "";
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string homie_id(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    const char l = char(std::tolower(c));
    if ((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9'))
      out += l;
    else if (!out.empty() && out.back() != '-')
      out += '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "x" : out;
}

HomieDevice::HomieDevice(std::string device_id, std::string name, bool commands, Outbox& out)
    : id_(homie_id(device_id)),
      name_(std::move(name)),
      root_(std::string(kBase) + "/" + id_),
      commands_(commands),
      out_(out) {}

void HomieDevice::add_meter(const std::string& meter, const std::string& type) {
  Node n;
  n.id = homie_id(meter);
  n.name = meter;
  n.type = type;
  meter_nodes_[meter] = nodes_.size();
  nodes_.push_back(std::move(n));
}

void HomieDevice::add_relay(const std::string& relay, const std::string& output_type) {
  Node n;
  n.id = "relay-" + homie_id(relay);
  n.name = "Relay " + relay;
  n.type = "relay (" + output_type + " output)";
  n.props.push_back({"state", "On", "boolean", "", "", commands_});
  n.props.push_back({"override", "Manual override", "enum", "", "auto,on,off", commands_});
  n.props.push_back({"mode", "Mode", "string", "", "", false});
  n.props.push_back({"reason", "Reason of the last switch", "string", "", "", false});
  relay_nodes_[relay] = nodes_.size();
  nodes_.push_back(std::move(n));
}

std::string HomieDevice::nodes_list() const {
  std::string s;
  for (const auto& n : nodes_) s += (s.empty() ? "" : ",") + n.id;
  return s;
}

void HomieDevice::send(const std::string& topic, const std::string& payload) {
  out_.push(OutMessage{topic, payload, true});
}

void HomieDevice::announce() {
  send(root_ + "/$state", "init");
  send(root_ + "/$homie", "4.0.0");
  send(root_ + "/$name", name_);
  send(root_ + "/$extensions", "");
  send(root_ + "/$implementation", "meterpipe");
  send(root_ + "/$nodes", nodes_list());
  for (const auto& n : nodes_) {
    announce_node(n);
    for (const auto& p : n.props) announce_property(n, p);
  }
  for (const auto& [topic, v] : last_) send(topic, v);
  send(root_ + "/$state", "ready");
}

void HomieDevice::announce_node(const Node& n) {
  const std::string t = root_ + "/" + n.id;
  send(t + "/$name", n.name);
  send(t + "/$type", n.type);
  std::string props;
  for (const auto& p : n.props) props += (props.empty() ? "" : ",") + p.id;
  send(t + "/$properties", props);
}

void HomieDevice::announce_property(const Node& n, const Property& p) {
  const std::string t = root_ + "/" + n.id + "/" + p.id;
  send(t + "/$name", p.name);
  send(t + "/$datatype", p.datatype);
  if (!p.unit.empty()) send(t + "/$unit", p.unit);
  if (!p.format.empty()) send(t + "/$format", p.format);
  send(t + "/$settable", p.settable ? "true" : "false");
  send(t + "/$retained", "true");
}

void HomieDevice::value(const Node& n, const Property& p, const std::string& text) {
  const std::string t = root_ + "/" + n.id + "/" + p.id;
  auto it = last_.find(t);
  if (it == last_.end())
    last_.emplace(t, text);
  else
    it->second = text;
  send(t, text);
}

HomieDevice::Node* HomieDevice::meter_node(const std::string& meter) {
  auto it = meter_nodes_.find(meter);
  return it == meter_nodes_.end() ? nullptr : &nodes_[it->second];
}

size_t HomieDevice::property_of(Node& n, const meterpipe::Value& v) {
  auto it = n.by_value.find(v.name());
  if (it != n.by_value.end()) return it->second;
  if (n.props.size() >= kMaxProperties) return SIZE_MAX;
  Property p;
  p.id = homie_id(v.name());
  for (int k = 2;; ++k) {  // two names, one id ("a_b", "a-b"): the second gets "-2"
    bool taken = false;
    for (const auto& q : n.props) taken = taken || q.id == p.id;
    if (!taken) break;
    p.id = homie_id(v.name()) + "-" + std::to_string(k);
  }
  p.name = display_name(v.name());
  if (v.value_case() == meterpipe::Value::kNumber) {
    p.datatype = "float";
    const ValueClass vc = classify(v.name());
    p.unit = vc.unit.empty() ? display_unit(v.unit()) : vc.unit;
  } else {
    p.datatype = "string";
  }
  n.by_value[v.name()] = n.props.size();
  n.props.push_back(std::move(p));
  return n.props.size() - 1;
}

void HomieDevice::announce_new_properties(const Node& n, size_t first) {
  if (first >= n.props.size()) return;
  // the node's structure changes while the device says init: once for all of a reading's
  // new properties (a meter's first reading brings dozens; one init/ready each made
  // controllers re-read the device dozens of times)
  send(root_ + "/$state", "init");
  for (size_t i = first; i < n.props.size(); ++i) announce_property(n, n.props[i]);
  announce_node(n);
  send(root_ + "/$state", "ready");
}

void HomieDevice::publish_values(const meterpipe::Reading& r) {
  Node* n = meter_node(r.meter());
  if (!n) return;
  const size_t known = n->props.size();
  props_of_reading_.clear();
  for (const auto& v : r.values()) {
    const bool usable = !v.name().empty() && v.value_case() != meterpipe::Value::VALUE_NOT_SET;
    props_of_reading_.push_back(usable ? property_of(*n, v) : SIZE_MAX);
  }
  announce_new_properties(*n, known);
  for (int k = 0; k < r.values_size(); ++k) {
    const size_t i = props_of_reading_[size_t(k)];
    if (i == SIZE_MAX) continue;
    const auto& v = r.values(k);
    const std::string text =
        v.value_case() == meterpipe::Value::kNumber ? number_text(v.number()) : v.text();
    value(*n, n->props[i], text);
  }
}

void HomieDevice::publish_relay(const std::string& relay, const RelayView& v) {
  auto it = relay_nodes_.find(relay);
  if (it == relay_nodes_.end()) return;
  const Node& n = nodes_[it->second];
  if (v.known) value(n, n.props[0], v.on ? "true" : "false");
  value(n, n.props[1], v.override_mode.empty() ? "auto" : v.override_mode);
  value(n, n.props[2], v.mode);
  value(n, n.props[3], v.reason);
}

std::optional<HomieDevice::SetRequest> HomieDevice::set_request(const std::string& topic,
                                                                const std::string& payload) const {
  const std::string head = root_ + "/relay-";
  const std::string tail = "/set";
  if (topic.rfind(head, 0) != 0 || topic.size() <= head.size() + tail.size() ||
      topic.compare(topic.size() - tail.size(), tail.size(), tail) != 0)
    return std::nullopt;
  for (const auto& [relay, idx] : relay_nodes_) {
    const std::string t = root_ + "/" + nodes_[idx].id + "/";
    if (topic.rfind(t, 0) != 0) continue;
    const std::string prop = topic.substr(t.size(), topic.size() - t.size() - tail.size());
    SetRequest req;
    req.relay = relay;
    const std::string p = lower(payload);
    if (prop == "state") {
      if (p == "true")
        req.command = "ON";
      else if (p == "false")
        req.command = "OFF";
      else
        req.error = "state wants true or false";
    } else if (prop == "override") {
      if (p == "auto" || p == "on" || p == "off")
        req.command = p;
      else
        req.error = "override wants auto, on or off";
    } else {
      return std::nullopt;
    }
    return req;
  }
  return std::nullopt;
}

std::string HomieDevice::clear_stale_node(const std::string& topic, const std::string& payload) {
  const std::string head = root_ + "/";
  const std::string tail = "/$properties";
  if (payload.empty() || topic.size() <= head.size() + tail.size() ||
      topic.compare(0, head.size(), head) != 0 ||
      topic.compare(topic.size() - tail.size(), tail.size(), tail) != 0)
    return "";
  const std::string node = topic.substr(head.size(), topic.size() - head.size() - tail.size());
  if (node != homie_id(node)) return "";  // not one level in Homie's ID format
  for (const auto& n : nodes_)
    if (n.id == node) return "";
  const std::string t = head + node;
  size_t props = 0;
  for (size_t start = 0; start <= payload.size() && props < kMaxProperties; ++props) {
    size_t end = payload.find(',', start);
    if (end == std::string::npos) end = payload.size();
    const std::string p = payload.substr(start, end - start);
    start = end + 1;
    if (p.empty() || p != homie_id(p)) continue;
    send(t + "/" + p, "");
    for (const char* a : {"$name", "$datatype", "$unit", "$format", "$settable", "$retained"})
      send(t + "/" + p + "/" + a, "");
  }
  for (const char* a : {"$name", "$type", "$properties"}) send(t + "/" + a, "");
  return t;
}

}  // namespace mp::mqtt
