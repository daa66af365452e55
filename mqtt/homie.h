// Homie 4 (https://homieiot.github.io, convention v4.0.0) for openHAB and other Homie
// controllers, with [mqtt] homie = true. One Homie device per meterpipe installation (its id
// from the client_id, like "meterpipe-pi"), on a connection of its own (the Last Will of a
// connection is one topic: homie/<device>/$state = "lost"):
//
//   homie/<device>/$homie = 4.0.0, $name, $state (init, ready, disconnected, lost),
//                 $nodes, $extensions (""), $implementation (meterpipe)
//   homie/<device>/<meter>/            a node per [[meter]]: $name, $type, $properties;
//                 <value>              a property per value of its readings (float with
//                                      $unit, or string), its $name and $datatype
//   homie/<device>/relay-<name>/       a node per [[relay]]: properties
//                 state                boolean; settable with [mqtt] commands = true
//                                      (true = ON, false = OFF: a manual override)
//                 override             enum auto,on,off; settable with commands = true
//                 mode, reason         string
//
// Ids follow Homie's ID format: lowercase a-z, 0-9 and '-' (homie_id()). All retained.
// Nodes an earlier run left on the broker for meters or relays no longer configured are
// cleared at each connect (clear_stale_node()).
// A value seen for the first time announces itself ($state init, the property, the node's
// $properties, $state ready). docs/ARCHITECTURE.md describes the worker.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "meterpipe.pb.h"
#include "mqtt/outbox.h"
#include "mqtt/payloads.h"

namespace mp::mqtt {

// Homie's ID format: lowercase letters, digits and '-', not starting or ending with '-'
// ("Home_Meter 2" -> "home-meter-2", "dsmr_1-0:99.1.0" -> "dsmr-1-0-99-1-0"); "x" if
// nothing is left.
std::string homie_id(std::string_view s);

class HomieDevice {
 public:
  static constexpr const char* kBase = "homie";
  static constexpr size_t kMaxProperties = 200;  // per meter node

  HomieDevice(std::string device_id, std::string name, bool commands, Outbox& out);

  const std::string& id() const { return id_; }
  std::string state_topic() const { return root_ + "/$state"; }
  // The filter of the settable properties' /set topics.
  std::string set_filter() const { return root_ + "/+/+/set"; }
  // The filter that shows the nodes the broker holds for this device (an earlier run's
  // included): their retained $properties.
  std::string nodes_filter() const { return root_ + "/+/$properties"; }

  void add_meter(const std::string& meter, const std::string& type);
  void add_relay(const std::string& relay, const std::string& output_type);

  // After each CONNACK: every attribute, the last value of every property, $state ready.
  void announce();
  // Every value of a reading (new ones announced first).
  void publish_values(const meterpipe::Reading& r);
  void publish_relay(const std::string& relay, const RelayView& v);

  // A message on a /set topic: the relay and the command text for parse_command() ("ON",
  // "OFF", "AUTO"), or `error` saying what is wrong; nullopt when the topic is not a
  // settable property of this device.
  struct SetRequest {
    std::string relay, command, error;
  };
  std::optional<SetRequest> set_request(const std::string& topic, const std::string& payload) const;

  // A message on nodes_filter(): when it names a node this device no longer has (a meter
  // or relay removed from the config), clears each topic of that node and of the
  // properties its $properties lists (empty retained payloads, Homie 4's way to delete)
  // and returns the node's topic; "" for anything else.
  std::string clear_stale_node(const std::string& topic, const std::string& payload);

 private:
  struct Property {
    std::string id, name, datatype, unit, format;
    bool settable = false;
  };
  struct Node {
    std::string id, name, type;
    std::vector<Property> props;
    std::map<std::string, size_t> by_value;  // value name -> index in props
  };

  Node* meter_node(const std::string& meter);
  size_t property_of(Node& n, const meterpipe::Value& v);  // adds it; SIZE_MAX past the cap
  void announce_node(const Node& n);
  void announce_property(const Node& n, const Property& p);
  void announce_new_properties(const Node& n, size_t first);  // props[first..]: init .. ready
  void value(const Node& n, const Property& p, const std::string& text);
  void send(const std::string& topic, const std::string& payload);
  std::string nodes_list() const;

  std::string id_, name_, root_;
  bool commands_;
  Outbox& out_;
  std::vector<Node> nodes_;                    // meters, then relays (config order)
  std::map<std::string, size_t> meter_nodes_;  // meter name -> index
  std::map<std::string, size_t> relay_nodes_;  // relay name -> index
  std::map<std::string, std::string> last_;    // property topic -> value (for announce())
  std::vector<size_t> props_of_reading_;       // publish_values: property of each value
};

}  // namespace mp::mqtt
