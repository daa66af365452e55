// The bus: the only code in meterpipe that touches ZeroMQ (docs/ARCHITECTURE.md, "The bus").
//
// A publisher binds ipc://<run_dir>/<name>.pub (PUB) and ipc://<run_dir>/<name>.replay (REP).
// Every message is two frames: topic, serialized meterpipe::Envelope. The publisher stamps
// publisher name, instance id (random per start), seq and send time, never blocks (ZeroMQ
// drops messages past a subscriber's high-water mark), and keeps a bounded ring of its
// recent messages to answer "everything on topic T after seq N of instance I".
//
// Sequence numbers count per topic within an instance (reading/home: 1, 2, 3, ...;
// health/process has its own), so a subscriber to a prefix sees a gap only when a message
// of a topic it follows is really missing.
//
// A subscriber connects to named publishers, subscribes to topic prefixes, notices gaps in
// seq and new instance ids per publisher and topic, and (with replay on) fetches the
// missing messages from the publisher's ring so the caller sees each topic's messages in
// seq order, once.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bus/zmq_context.h"
#include "meterpipe.pb.h"

namespace mp::bus {

std::string pub_endpoint(const std::string& run_dir, const std::string& name);
std::string replay_endpoint(const std::string& run_dir, const std::string& name);
std::string ctl_endpoint(const std::string& run_dir, const std::string& name);

class Publisher {
 public:
  struct Options {
    size_t ring_size = 10000;  // messages kept for replay
    int sndhwm = 10000;        // per-subscriber queue before drops
  };
  // Binds both endpoints; throws std::runtime_error naming the endpoint on failure.
  Publisher(std::string run_dir, std::string name, Options opt);
  Publisher(std::string run_dir, std::string name) : Publisher(run_dir, name, Options{}) {}
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // Stamps the envelope header, sends topic + envelope without blocking, keeps a copy in
  // the replay ring. Returns the seq given to the message (per topic).
  // Thread-safe (serialised internally), so several source threads may share it.
  uint64_t publish(const std::string& topic, meterpipe::Envelope& env);

  const std::string& name() const { return name_; }
  uint64_t instance_id() const { return instance_; }
  uint64_t published() const { return published_.load(); }
  uint64_t send_failures() const { return send_failures_; }
  uint64_t replay_requests() const { return replay_requests_.load(); }

 private:
  struct Stored {
    uint64_t seq;
    std::string topic;
    std::string payload;
  };
  void replay_loop();

  std::string run_dir_, name_;
  Options opt_;
  uint64_t instance_;
  std::atomic<uint64_t> published_{0};
  std::map<std::string, uint64_t> seq_;  // per topic
  uint64_t send_failures_ = 0;
  std::mutex pub_mutex_;
  zmq::socket_t pub_;
  zmq::socket_t rep_;  // used only by replay_thread_ once it runs
  std::mutex ring_mutex_;
  std::deque<Stored> ring_;
  std::atomic<bool> stop_{false};
  int stop_fd_ = -1;  // eventfd: wakes the replay thread to stop
  std::atomic<uint64_t> replay_requests_{0};
  std::thread replay_thread_;
};

struct Message {
  std::string topic;
  meterpipe::Envelope env;
  bool replayed = false;  // came from a publisher's replay ring, not live
};

// A received bus message (two frames: topic, serialized Envelope) as a Message; false when
// it is not one (wrong frame count, an Envelope that does not parse).
bool parse_message(const std::vector<zmq::message_t>& parts, Message& out);

class Poller;

class Subscriber {
 public:
  struct Options {
    bool replay = false;           // fill gaps from the publishers' replay rings
    int rcvhwm = 100000;           // queue before ZeroMQ drops (loss then shows as a gap)
    int replay_timeout_ms = 1000;  // how long to wait for a replay answer
    // Messages taken from the socket at once when none is pending: the rest waits in
    // ZeroMQ's queue (bounded by rcvhwm), so a burst neither piles up in memory here nor
    // keeps the caller from working between batches (a replay may add up to a ring's worth).
    size_t receive_batch = 256;
    // With replay on: at first contact with a topic (no position restored), also fetch
    // what the publisher sent before, when that is at most this many messages (the race
    // at start-up, when both sides start together). A subscriber that must not miss what
    // was published while it was down saves its position (save_positions) instead.
    uint64_t first_contact_max = 100;
  };
  // State of one topic of one publisher.
  struct TopicState {
    uint64_t instance = 0;
    uint64_t last_seq = 0;  // last seq handed to the caller (0 = none yet)
    uint64_t lost = 0;      // messages known to be missing and not replayed
    uint64_t gaps = 0;      // gaps detected
    uint64_t restarts = 0;  // new instance ids seen after a first one
  };

  Subscriber(std::string run_dir, std::vector<std::string> publishers,
             std::vector<std::string> prefixes, Options opt);
  Subscriber(std::string run_dir, std::vector<std::string> publishers,
             std::vector<std::string> prefixes)
      : Subscriber(std::move(run_dir), std::move(publishers), std::move(prefixes), Options{}) {}
  ~Subscriber();

  // Next message in order, waiting at most timeout_ms (-1 = forever). False on timeout.
  bool receive(Message& out, int timeout_ms);
  // True when a message is ready without touching the socket.
  bool has_pending() const { return !pending_.empty(); }
  // Messages taken from the socket and not handed out yet.
  size_t pending() const { return pending_.size(); }

  // Position per (publisher, topic), to persist across restarts of the subscriber (upload)
  // and to restore with set_position() so a restarted subscriber fetches what it missed.
  using Key = std::pair<std::string, std::string>;  // publisher, topic
  const std::map<Key, TopicState>& positions() const { return state_; }
  void set_position(const std::string& publisher, const std::string& topic, uint64_t instance,
                    uint64_t last_seq);
  // Positions as text ("<publisher> <topic> <instance> <seq>" per line), written atomically:
  // `durable`, a temp file fsynced and renamed; not durable (run_dir, whose content dies
  // with the publishers' rings), overwritten in place (fs::overwrite_in_place: after a kill
  // of the writer the file holds the old or the new text, space-padded). load_positions
  // returns how many were restored.
  bool save_positions(const std::string& path, bool durable = true) const;
  // The same for positions taken earlier with positions().
  static bool save_positions(const std::string& path, const std::map<Key, TopicState>& state,
                             bool durable);
  size_t load_positions(const std::string& path);
  // With replay on: fetch now what each restored position's publisher sent after it (same
  // instance only), instead of at the next live message of that topic, so a subscriber
  // restarted just before a stop still gets what it missed. A publisher that does not answer
  // (not running: 2 s) is not asked for its other topics, so a worker starting while its
  // publisher is down is not held past its first heartbeat. Returns the messages fetched.
  size_t catch_up();

  uint64_t received() const { return received_; }
  uint64_t duplicates() const { return duplicates_; }
  uint64_t lost() const;
  uint64_t replayed() const { return replayed_; }
  uint64_t decode_errors() const { return decode_errors_; }

 private:
  friend class Poller;  // waits on sub_ (bus/poller.h)
  void* native_socket() { return static_cast<void*>(sub_); }
  // Up to opt_.receive_batch messages from the socket through handle(); true when the
  // batch was full (the socket may hold more).
  bool take_batch();
  void handle(Message&& m);
  enum class Fetch { answered, other_instance, no_answer };
  Fetch fetch_once(const std::string& publisher, const std::string& topic, uint64_t instance,
                   uint64_t after, uint64_t before, std::vector<Message>& out);
  // fetch_once, asked again once when the publisher did not answer in time (a loaded
  // machine): answered when the ring answered for this instance
  Fetch fetch_replay(const std::string& publisher, const std::string& topic, uint64_t instance,
                     uint64_t after, uint64_t before, std::vector<Message>& out);
  // the fetched messages newer than st's position, in order, counting the seqs the ring no
  // longer held as lost; stops before `before` (0: no bound)
  void deliver_replayed(std::vector<Message>& got, uint64_t before, TopicState& st);
  void deliver(Message&& m, TopicState& st);

  std::string run_dir_;
  std::vector<std::string> publishers_, prefixes_;
  Options opt_;
  zmq::socket_t sub_;
  std::deque<Message> pending_;
  std::map<Key, TopicState> state_;
  uint64_t received_ = 0, duplicates_ = 0, replayed_ = 0, decode_errors_ = 0;
};

// Topic helpers.
inline std::string topic_raw(const std::string& s) { return "raw/" + s; }
inline std::string topic_reading(const std::string& m) { return "reading/" + m; }
inline std::string topic_relay(const std::string& r) { return "relay/" + r; }
inline std::string topic_health(const std::string& w) { return "health/" + w; }

}  // namespace mp::bus
