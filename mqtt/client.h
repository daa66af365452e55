// The MQTT side of the mqtt worker: one thread that owns the libmosquitto client, polls its
// socket together with an eventfd (woken by the Outbox and by stop()), publishes what the
// bus loop left in the Outbox, and hands received messages back through take_incoming().
// The bus loop never calls libmosquitto and never waits for the broker.
//
// Connection: `will_topic` is the Last Will (`will_payload`, retained: "offline", or
// Homie's "lost"); `online_payload` (retained) is published right after each CONNACK, and
// `goodbye_payload` before a clean disconnect. A failed or lost connection (refused TCP, no
// answer within 10 s, CONNACK refusal such as a wrong password, TLS failure) is logged once
// per distinct reason (then once a minute) and shown in the worker's health (info broker /
// broker_error, counter connect_failures, gauge retry_s). Retries: every second while the
// broker's host refuses the TCP connection (a broker restarting: back within ~1 s of its
// return; a refused SYN costs nothing); every other failure (CONNACK refusal such as a
// wrong password, TLS, timeouts, DNS) waits 1, 2, 4, ... s, capped at 30 s, so it cannot
// storm. The delay starts again at 1 s after a good CONNACK.
// At most `max_inflight` messages are handed to libmosquitto and not yet written (QoS 0)
// or acknowledged (QoS 1); the rest waits in the Outbox, which keeps memory bounded when
// the broker stalls.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bus/worker.h"
#include "common/rate_limit.h"
#include "mqtt/outbox.h"

struct mosquitto;
struct mosquitto_message;

namespace mp::mqtt {

struct ClientOptions {
  std::string host;
  int port = 1883;
  bool tls = false;
  std::string client_id;
  std::string username, password;  // password: never logged
  std::string ca_file, cert_file, key_file;
  bool tls_verify = true;
  int qos = 0;
  std::string will_topic;  // <base>/status, homie/<device>/$state
  std::string will_payload = "offline";
  std::string online_payload = "online";
  std::string goodbye_payload = "offline";
  std::string health_prefix;  // before the health keys of this connection ("homie_")
  std::string thread_name = "mqtt network";
  std::vector<std::string> subscriptions;  // topic filters, subscribed after each CONNACK
  int keepalive_s = 30;
  size_t max_inflight = 200;
  double max_backoff_s = 30;
  double refused_retry_s = 1;  // while the TCP connection is refused
  int notify_fd = -1;          // eventfd written on a received message and on each CONNACK
};

struct Incoming {
  std::string topic;
  std::string payload;
};

class Client {
 public:
  Client(ClientOptions opt, Outbox& out, Worker& w);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void start();
  // Publishes "offline", disconnects cleanly (at most ~1 s) and joins the thread.
  // Tells the connection's thread to say goodbye and end, without waiting for it: a worker
  // with two connections lets both say goodbye at once.
  void request_stop();
  void stop();

  // +1 after every accepted connection (CONNACK success): the bus loop re-publishes the
  // retained topics when it changes.
  uint64_t connect_generation() const { return generation_.load(); }
  bool connected() const { return connected_.load(); }
  // Messages received on the subscriptions since the last call (at most 1000 kept).
  std::vector<Incoming> take_incoming();
  uint64_t published() const { return published_.load(); }
  uint64_t incoming_dropped() const { return incoming_dropped_.load(); }

 private:
  void run();
  bool open_session();  // a new client, connect started; false: failed already
  void session();       // until the connection ends or stop
  void end_session(const std::string& reason);
  void close_client();
  void drain_outbox();
  void wait_backoff();
  void goodbye();
  void await_acks(int64_t until);
  void flush_writes(int64_t until_mono_ns);
  void await_broker_close(int64_t until_mono_ns);
  void fail(const std::string& reason, bool refused_tcp = false);
  std::string key(const char* k) const { return opt_.health_prefix + k; }
  std::string rc_text(int rc, int err) const;

  static void on_connect(mosquitto*, void* obj, int rc);
  static void on_disconnect(mosquitto*, void* obj, int rc);
  static void on_publish(mosquitto*, void* obj, int mid);
  static void on_message(mosquitto*, void* obj, const mosquitto_message* msg);
  static void on_log(mosquitto*, void* obj, int level, const char* text);

  ClientOptions opt_;
  Outbox& out_;
  Worker& w_;
  std::string where_;  // mqtt[s]://host:port, for messages
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> published_{0};
  std::atomic<uint64_t> incoming_dropped_{0};
  std::mutex in_mutex_;
  std::vector<Incoming> incoming_;

  // network thread only
  mosquitto* m_ = nullptr;
  int slot_ = -1;
  bool refused_ = false;
  bool had_connack_ = false;  // this session was accepted
  std::string refusal_;
  std::string last_lib_error_;
  std::vector<OutMessage> batch_;  // drain_outbox's hand-off, kept for its capacity
  // handed to libmosquitto / written (QoS 0) or acknowledged (QoS 1) in this session: a
  // QoS 0 message may be written, and reported, inside mosquitto_publish() already
  uint64_t session_sent_ = 0, session_done_ = 0;
  double backoff_s_ = 1;
  bool quick_retry_ = false;  // the last failure was a refused TCP connection
  uint64_t failures_ = 0;
  std::string last_reason_;  // of the last failure (repeats are logged once a minute)
  bool failure_logged_ = false;
  LogLimiter limiter_;
};

}  // namespace mp::mqtt
