#include "mqtt/worker_bridge.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "bus/poller.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "mqtt/command.h"

namespace mp::mqtt {
namespace {

constexpr int64_t kStatusPollNs = 30'000'000'000LL;
constexpr int kBusQueue = 1000;
constexpr int kBusBatch = 2000;

std::string default_client_id() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0 || !host[0]) return "meterpipe";
  return std::string("meterpipe-") + host;
}

ClientOptions client_options(const config::Config& cfg, const Topics& t,
                             const std::string& password, int notify_fd) {
  const auto& m = cfg.mqtt;
  ClientOptions o;
  o.notify_fd = notify_fd;
  o.host = m.host;
  o.port = int(m.port);
  o.tls = m.tls;
  o.client_id = m.client_id.empty() ? default_client_id() : m.client_id;
  o.username = m.username;
  o.password = password;
  o.ca_file = m.ca_file;
  o.cert_file = m.cert_file;
  o.key_file = m.key_file;
  o.tls_verify = m.tls_verify;
  o.qos = int(m.qos);
  o.will_topic = t.status();
  if (m.homeassistant) o.subscriptions.push_back(t.ha_status());
  if (!cfg.relays.empty()) o.subscriptions.push_back(t.relay_set_filter());
  return o;
}

// The Homie device's connection: the same broker and login, its own client id and Will.
ClientOptions homie_options(ClientOptions o, const HomieDevice& h, bool commands) {
  o.client_id += "-homie";
  o.qos = 1;  // what Homie recommends
  o.will_topic = h.state_topic();
  o.will_payload = "lost";
  o.online_payload = "init";
  o.goodbye_payload = "disconnected";
  o.subscriptions.clear();
  o.subscriptions.push_back(h.nodes_filter());  // nodes of removed meters/relays: cleared
  if (commands) o.subscriptions.push_back(h.set_filter());
  o.health_prefix = "homie_";
  o.thread_name = "mqtt homie network";
  return o;
}

std::string number_text(double v) {
  std::string s;
  json::append_number(s, v);
  return s;
}

std::string str_field(const google::protobuf::Struct& s, const std::string& k) {
  auto it = s.fields().find(k);
  if (it == s.fields().end() || it->second.kind_case() != google::protobuf::Value::kStringValue)
    return "";
  return it->second.string_value();
}

bool bool_field(const google::protobuf::Struct& s, const std::string& k) {
  auto it = s.fields().find(k);
  return it != s.fields().end() && it->second.kind_case() == google::protobuf::Value::kBoolValue &&
         it->second.bool_value();
}

double num_field(const google::protobuf::Struct& s, const std::string& k) {
  auto it = s.fields().find(k);
  if (it == s.fields().end() || it->second.kind_case() != google::protobuf::Value::kNumberValue)
    return 0;
  return it->second.number_value();
}

}  // namespace

Bridge::Bridge(Worker& w, const std::string& password)
    : w_(w),
      cfg_(w.cfg().mqtt),
      topics_{cfg_.base_topic, cfg_.discovery_prefix},
      store_(w.cfg().general.state_dir + "/mqtt.discovery") {
  const auto& cfg = w.cfg();
  for (const auto& m : cfg.meters) {
    auto& s = meters_[m.name];
    s.info.name = m.name;
    s.info.protocol = m.protocol;
    s.info.type = m.type;
  }
  for (const auto& r : cfg.relays) relays_[r.name].output_type = r.output.type;
  mkdir(cfg.general.state_dir.c_str(), 0750);
  store_.load();
  notify_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  const ClientOptions opt = client_options(cfg, topics_, password, notify_fd_);
  client_ = std::make_unique<Client>(opt, outbox_, w);
  outbox_.set_drain_fd(notify_fd_);
  if (cfg_.homie) {
    homie_out_ = std::make_unique<Outbox>();
    homie_ = std::make_unique<HomieDevice>(opt.client_id, "meterpipe " + opt.client_id,
                                           cfg_.commands, *homie_out_);
    for (const auto& m : cfg.meters) homie_->add_meter(m.name, model_of(meters_[m.name].info));
    for (const auto& r : cfg.relays) homie_->add_relay(r.name, r.output.type);
    homie_client_ = std::make_unique<Client>(
        homie_options(opt, *homie_, cfg_.commands && !cfg.relays.empty()), *homie_out_, w);
  }
  if (!cfg.relays.empty()) {
    control_ = std::make_unique<ControlQueue>(cfg.general.run_dir, "actuate");
    control_->set_notify_fd(notify_fd_);
  }
}

Bridge::~Bridge() {
  stop_clients();
  control_.reset();
  if (notify_fd_ >= 0) ::close(notify_fd_);
}

int Bridge::run() {
  const auto& cfg = w_.cfg();
  std::vector<std::string> publishers, prefixes;
  if (!cfg.meters.empty()) {
    publishers.push_back("process");
    prefixes.push_back("reading/");
  }
  if (!cfg.relays.empty()) {
    publishers.push_back("actuate");
    prefixes.push_back("relay/");
  }
  // live values only: a short receive queue (a burst beyond it is lost, counted as bus_lost)
  // keeps the worker small when the bus outruns the broker
  bus::Subscriber::Options so;
  so.rcvhwm = kBusQueue;
  bus::Subscriber sub(cfg.general.run_dir, publishers, prefixes, so);
  bus::Poller poller;
  poller.add(sub);
  poller.add_fd(notify_fd_);
  clear_stale_discovery();  // discovery itself goes out at each connect (republish_all)
  client_->start();
  if (homie_client_) homie_client_->start();
  log::info("publishing under %s/ to %s://%s:%lld (qos %lld, retain %s, interval %.3g s%s%s%s%s)",
            cfg_.base_topic.c_str(), cfg_.tls ? "mqtts" : "mqtt", cfg_.host.c_str(),
            (long long)cfg_.port, (long long)cfg_.qos, cfg_.retain ? "on" : "off", cfg_.interval_s,
            cfg_.per_value_topics ? ", per-value topics" : "",
            cfg_.homeassistant ? ", Home Assistant discovery" : "",
            homie_ ? (", Homie device homie/" + homie_->id()).c_str() : "",
            cfg_.commands ? ", relay commands on" : "");
  while (w_.running()) {
    // idle: one wake a heartbeat (and when a state held back by interval_s is due)
    poller.wait(std::min(w_.wait_ms(), next_due_ms(clock::mono_ns())));
    if (poller.readable(notify_fd_)) {
      uint64_t v;
      while (::read(notify_fd_, &v, sizeof v) > 0) {
      }
    }
    bus::Message m;
    // a bounded batch: a flood of readings cannot hold up the heartbeat
    for (int n = 0; n < kBusBatch && sub.receive(m, 0); ++n) on_bus(m);
    for (const auto& in : client_->take_incoming()) on_incoming(in);
    if (client_->connect_generation() != generation_) {
      generation_ = client_->connect_generation();
      republish_all();
    }
    if (homie_client_) {
      for (const auto& in : homie_client_->take_incoming()) on_homie_incoming(in);
      if (homie_client_->connect_generation() != homie_generation_) {
        homie_generation_ = homie_client_->connect_generation();
        homie_->announce();
      }
    }
    if (control_) {
      for (const auto& r : control_->take_results()) on_control_result(r);
      if (clock::mono_ns() >= next_status_poll_ns_) {
        control_->submit("status");
        next_status_poll_ns_ = clock::mono_ns() + kStatusPollNs;
      }
    }
    flush_due(clock::mono_ns());
    w_.set_counter("bus_lost", sub.lost());
    update_health();
    w_.tick();
  }
  stop_clients();
  return 0;
}

void Bridge::stop_clients() {
  // both say goodbye at once (each waits up to ~1.3 s for a slow broker)
  if (homie_client_) homie_client_->request_stop();
  client_->request_stop();
  if (homie_client_) homie_client_->stop();
  client_->stop();
}

void Bridge::on_bus(bus::Message& m) {
  if (m.env.has_relay()) on_relay_event(m.env.relay());
  if (m.env.has_reading()) on_reading(m.env);
}

void Bridge::on_reading(meterpipe::Envelope& env) {
  const auto& r = env.reading();
  auto it = meters_.find(r.meter());
  if (it == meters_.end()) return;  // not a meter of this config
  ++readings_;
  MeterSlot& m = it->second;
  if (cfg_.homeassistant) announce_meter(m, r);
  if (cfg_.interval_s <= 0 && !outbox_.congested()) {
    send_reading(it->first, m, r, env.send_time_ns());
    return;
  }
  // held back (interval_s, or the broker not keeping up): only the latest reading of the
  // meter waits, its payloads built when it goes out
  if (m.has_pending) ++coalesced_;
  m.pending.Swap(env.mutable_reading());
  m.pending_send_ns = env.send_time_ns();
  m.has_pending = true;
  flush_due(clock::mono_ns());
}

int Bridge::next_due_ms(int64_t now_ns) const {
  const int64_t interval = int64_t(cfg_.interval_s * 1e9);
  int64_t due = INT64_MAX;
  for (const auto& [name, m] : meters_)
    if (m.has_pending) due = std::min(due, m.last_sent_ns + interval);
  if (due == INT64_MAX) return 1000;
  // held back while the Outbox is congested: its drain (or the reconnect) wakes the loop
  if (outbox_.congested()) return 1000;
  return int(std::clamp<int64_t>((due - now_ns + 999999) / 1000000, 0, 1000));
}

void Bridge::flush_due(int64_t now_ns) {
  const int64_t interval = int64_t(cfg_.interval_s * 1e9);
  for (auto& [name, m] : meters_) {
    if (!m.has_pending || now_ns - m.last_sent_ns < interval) continue;
    if (outbox_.congested()) return;
    send_reading(name, m, m.pending, m.pending_send_ns);
    m.has_pending = false;
    m.last_sent_ns = now_ns;
  }
}

void Bridge::send_reading(const std::string& name, MeterSlot& m, const meterpipe::Reading& r,
                          int64_t send_time_ns) {
  (void)m;
  const std::string topic = topics_.meter_state(name);
  std::string state = state_json(r, send_time_ns);
  if (cfg_.retain) last_retained_[topic] = state;
  publish(topic, std::move(state), cfg_.retain);
  ++states_;
  if (cfg_.per_value_topics) {
    for (const auto& v : r.values()) {
      if (v.name().empty() || v.value_case() == meterpipe::Value::VALUE_NOT_SET) continue;
      const std::string t = topics_.meter_value(name, v.name());
      std::string text =
          v.value_case() == meterpipe::Value::kNumber ? number_text(v.number()) : v.text();
      if (cfg_.retain) last_retained_[t] = text;
      publish(t, std::move(text), cfg_.retain);
    }
  }
  if (homie_) homie_->publish_values(r);
}

void Bridge::on_homie_incoming(const Incoming& in) {
  const std::string stale = homie_->clear_stale_node(in.topic, in.payload);
  if (!stale.empty()) {
    log::info("clearing the Homie node %s (its meter or relay is no longer configured)",
              stale.c_str());
    return;
  }
  const auto req = homie_->set_request(in.topic, in.payload);
  if (!req) return;
  if (!req->error.empty()) {
    ++commands_refused_;
    note("homie:" + req->relay, "ignored a command on " + in.topic + ": " + req->error +
                                    " (got \"" + in.payload.substr(0, 40) + "\")");
    return;
  }
  on_command(req->relay, req->command, in.topic);
}

void Bridge::announce_meter(MeterSlot& m, const meterpipe::Reading& r) {
  if (!r.device_id().empty() && r.device_id() != m.info.device_id) {
    m.info.device_id = r.device_id();  // identifiers change: every config again
    m.announced.clear();
  }
  for (const auto& v : r.values()) {
    if (v.value_case() != meterpipe::Value::kNumber || m.announced.count(v.name())) continue;
    if (m.announced.size() >= 200) break;
    m.announced.insert(v.name());
    m.units[v.name()] = v.unit();
    publish_discovery("meter", m.info.name, topics_.sensor_config(m.info.name, v.name()),
                      sensor_discovery_json(topics_, m.info, v.name(), v.unit()));
  }
}

void Bridge::announce_relays() {
  if (!cfg_.homeassistant) return;
  for (const auto& [name, r] : relays_) {
    publish_discovery("relay", name, topics_.switch_config(name),
                      relay_switch_discovery_json(topics_, name, r.output_type, cfg_.commands));
    publish_discovery("relay", name, topics_.relay_mode_config(name),
                      relay_mode_discovery_json(topics_, name, r.output_type));
  }
}

void Bridge::republish_all() {
  // after a (re)connect or HA's birth message: what a fresh broker or HA must know again
  announce_relays();
  if (cfg_.homeassistant)
    for (auto& [name, m] : meters_)
      for (const auto& v : m.announced)
        publish_discovery("meter", name, topics_.sensor_config(name, v),
                          sensor_discovery_json(topics_, m.info, v, m.units[v]));
  for (auto& [name, r] : relays_)
    if (r.have) publish_relay(name, r, true);
  // the last state (and per-value topics) of each meter, unless a newer one is due anyway
  for (auto& [name, m] : meters_) {
    if (m.has_pending) continue;
    const std::string head = cfg_.base_topic + "/" + name + "/";
    for (auto it = last_retained_.lower_bound(head);
         it != last_retained_.end() && it->first.compare(0, head.size(), head) == 0; ++it)
      publish(it->first, it->second, cfg_.retain);
  }
}

void Bridge::clear_stale_discovery() {
  const std::string prefix = cfg_.discovery_prefix + "/";
  auto gone = store_.remove_unless([&](const DiscoveryEntry& e) {
    if (!cfg_.homeassistant || e.topic.rfind(prefix, 0) != 0) return false;
    return e.kind == "meter" ? meters_.count(e.name) != 0 : relays_.count(e.name) != 0;
  });
  for (const auto& e : gone) {
    log::info("clearing the Home Assistant config %s (%s %s is no longer configured)",
              e.topic.c_str(), e.kind.c_str(), e.name.c_str());
    publish(e.topic, "", true);
  }
}

void Bridge::publish_discovery(const std::string& kind, const std::string& name,
                               const std::string& topic, const std::string& payload) {
  publish(topic, payload, true);
  ++discovery_sent_;
  if (store_.add(DiscoveryEntry{kind, name, topic}) && !store_.error().empty())
    note("store", store_.error());
}

void Bridge::publish(const std::string& topic, std::string payload, bool retain) {
  outbox_.push(OutMessage{topic, std::move(payload), retain});
}

void Bridge::on_relay_event(const meterpipe::RelayEvent& ev) {
  auto it = relays_.find(ev.relay());
  if (it == relays_.end()) return;
  ++relay_events_;
  RelaySlot& r = it->second;
  r.have = true;
  r.view.known = r.view.known || ev.ok();
  r.view.on = ev.new_state();
  r.view.mode = ev.mode();
  r.view.reason = ev.reason();
  r.view.ok = ev.ok();
  r.view.error = ev.error();
  publish_relay(ev.relay(), r, true);
  if (homie_) homie_->publish_relay(ev.relay(), r.view);
  if (control_) control_->submit("status");  // the override and its expiry
}

void Bridge::publish_relay(const std::string& name, RelaySlot& r, bool force) {
  const std::string st_topic = topics_.relay_state(name);
  const std::string at_topic = topics_.relay_attributes(name);
  const std::string st = relay_state_payload(r.view);
  const std::string at = relay_attributes_json(r.view);
  if (r.view.known && (force || last_retained_[st_topic] != st)) {
    publish(st_topic, st, cfg_.retain);
    last_retained_[st_topic] = st;
  }
  if (force || last_retained_[at_topic] != at) {
    publish(at_topic, at, cfg_.retain);
    last_retained_[at_topic] = at;
  }
}

void Bridge::apply_actuate_status(const std::string& json) {
  google::protobuf::Struct root;
  if (!google::protobuf::util::JsonStringToMessage(json, &root).ok()) return;
  auto it = root.fields().find("relays");
  if (it == root.fields().end() || !it->second.has_list_value()) return;
  for (const auto& v : it->second.list_value().values()) {
    if (!v.has_struct_value()) continue;
    const auto& s = v.struct_value();
    auto rit = relays_.find(str_field(s, "name"));
    if (rit == relays_.end()) continue;
    RelaySlot& r = rit->second;
    r.have = true;
    r.view.known = bool_field(s, "known");
    r.view.on = bool_field(s, "on");
    r.view.mode = str_field(s, "mode");
    r.view.override_mode = str_field(s, "override");
    r.view.override_left_s = int64_t(std::llround(num_field(s, "override_left_s")));
    const std::string reason = str_field(s, "last_reason");
    if (!reason.empty()) r.view.reason = reason;
    publish_relay(rit->first, r, false);
    if (homie_) homie_->publish_relay(rit->first, r.view);
  }
}

void Bridge::on_incoming(const Incoming& in) {
  if (cfg_.homeassistant && in.topic == topics_.ha_status()) {
    if (in.payload == "online") {
      ++births_;
      log::info("Home Assistant is online: sending the discovery configs again");
      republish_all();
    }
    return;
  }
  const std::string relay = topics_.relay_of_set_topic(in.topic);
  if (!relay.empty()) on_command(relay, in.payload, in.topic);
}

void Bridge::on_command(const std::string& relay, const std::string& payload,
                        const std::string& topic) {
  if (!cfg_.commands) {
    ++commands_refused_;
    note("disabled",
         "ignored a command on " + topic + ": relay commands are off ([mqtt] commands = false)");
    return;
  }
  if (!relays_.count(relay)) {
    ++commands_refused_;
    note("unknown:" + relay,
         "ignored a command on " + topic + ": no [[relay]] is named \"" + relay + "\"");
    return;
  }
  std::string err;
  const auto cmd = parse_command(payload, err);
  if (!cmd) {
    ++commands_refused_;
    note("payload:" + relay,
         "ignored a command for relay " + relay + ": " + err +
             " (want ON, OFF, AUTO, \"ON 3600\" or {\"state\":\"ON\",\"for_s\":3600})");
    return;
  }
  const std::string req = control_request_text(relay, *cmd);
  if (!control_->submit(req, topic)) {
    ++commands_refused_;
    note("queue",
         "ignored a command for relay " + relay + ": too many commands waiting for actuate");
    return;
  }
  ++commands_;
}

void Bridge::on_control_result(const ControlResult& r) {
  if (r.request == "status") {
    if (r.reply) apply_actuate_status(*r.reply);
    return;
  }
  if (!r.reply) {
    note("noanswer", "command \"" + r.request + "\" from " + r.origin +
                         ": actuate did not answer (is it running?)");
    return;
  }
  if (r.reply->find("\"error\"") != std::string::npos) {
    note("refused",
         "command \"" + r.request + "\" from " + r.origin + " refused by actuate: " + *r.reply);
    return;
  }
  log::info("%s from %s", r.request.c_str(), r.origin.c_str());
  control_->submit("status");
}

void Bridge::note(const std::string& key, const std::string& text) {
  uint64_t suppressed = 0;
  if (!limiter_.allow(key, clock::mono_ns(), suppressed)) return;
  if (suppressed)
    log::warn("%s (%llu more since the last report)", text.c_str(), (unsigned long long)suppressed);
  else
    log::warn("%s", text.c_str());
}

void Bridge::update_health() {
  w_.set_counter("readings", readings_);
  w_.set_counter("states", states_);
  w_.set_counter("relay_events", relay_events_);
  w_.set_counter("commands", commands_);
  w_.set_counter("commands_refused", commands_refused_);
  w_.set_counter("discovery_sent", discovery_sent_);
  w_.set_counter("ha_births", births_);
  w_.set_counter("published", client_->published());
  w_.set_counter("dropped", outbox_.dropped() + coalesced_);
  w_.gauge("outbox", double(outbox_.size()));
}

}  // namespace mp::mqtt
