// The hand-off from the bus loop to the MQTT network thread: a queue of messages to publish
// that never blocks the producer and never grows without bound.
//
// While the broker is connected and keeping up, messages queue in order (up to `cap`).
// While it is away, or once the queue holds `cap` messages, only the latest payload of each
// topic is kept: a new message replaces the one still waiting for the same topic (counted
// as dropped) in its place. The number of topics is bounded by the config (meters, relays,
// their discovery configs); past cap + kTopicSlack distinct topics new ones are dropped too.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace mp::mqtt {

struct OutMessage {
  std::string topic;
  std::string payload;
  bool retain = false;
};

class Outbox {
 public:
  static constexpr size_t kTopicSlack = 4096;

  explicit Outbox(size_t cap = 1000) : cap_(cap) {}

  // Thread-safe; never waits for the consumer.
  void push(OutMessage m);
  // Oldest waiting message; false when none.
  bool pop(OutMessage& out);
  // Up to `max` oldest messages appended to `out` under one lock; how many.
  size_t pop_batch(std::vector<OutMessage>& out, size_t max);
  // Puts a message taken with pop() back at the front (it could not be sent), unless a
  // newer one of its topic is waiting.
  void push_front(OutMessage m);
  // An eventfd (or -1) written when a push finds the queue empty: wakes the consumer's
  // poll(). The consumer must pop until pop() fails (or until it waits on something that
  // wakes it anyway, like acknowledgements) before it sleeps again.
  void set_wake_fd(int fd) { wake_fd_ = fd; }
  // An eventfd (or -1) written when a pop brings a congested queue below half: wakes the
  // producer to send what it held back.
  void set_drain_fd(int fd) { drain_fd_ = fd; }
  // Connected: keep every message (up to cap); not connected: latest per topic only.
  void set_connected(bool c);

  size_t size() const;
  // At least half full: the broker is not keeping up (or is away), so the producer holds
  // back what it can coalesce itself, before building payloads.
  bool congested() const;
  uint64_t dropped() const;

 private:
  using List = std::list<OutMessage>;
  bool push_locked(OutMessage m);  // true when the queue was empty
  void pop_locked(OutMessage& out);
  void after_pop_locked();  // the drain notification
  void coalesce_all();      // with mutex_ held

  size_t cap_;
  mutable std::mutex mutex_;
  List queue_;
  std::unordered_map<std::string, List::iterator> latest_;  // topic -> its newest entry
  bool connected_ = false;
  uint64_t dropped_ = 0;
  int wake_fd_ = -1;
  int drain_fd_ = -1;
  bool was_congested_ = false;
};

}  // namespace mp::mqtt
