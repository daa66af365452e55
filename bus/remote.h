// Remote taps: the bus over TCP, CurveZMQ only (docs/ARCHITECTURE.md, "Processes").
//
// RemoteForwarder (the `remote` worker) connects an XSUB to the ipc endpoints of the local
// publishers and binds an XPUB on tcp://<listen> as a CURVE server. Messages go down
// (publishers -> remote clients, two frames as on the bus), subscriptions go up (a remote
// `tap reading/` makes the publishers send it reading/ only). It never blocks: a client
// that cannot keep up loses messages at its high-water mark, as on the bus.
//
// Clients are authenticated by a ZAP handler (RFC 27) on inproc://zeromq.zap.01 of the
// forwarder's own ZeroMQ context: "200" for a public key listed in authorized_keys_file,
// "400" for any other. The handler socket is bound before the TCP endpoint, so no client
// ever gets in unchecked. The file is re-read when it changes; when a key disappears every
// remote connection is closed (listed clients reconnect and are checked again), so a
// revoked client is cut off at once.
//
// RemoteSubscriber is the client side (`meterpipe tap --remote`): a SUB socket with CURVE
// client keys; it reports a refused key or a failing handshake instead of waiting forever.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "bus/bus.h"

namespace mp::bus {

// A new CurveZMQ key pair as Z85 text (40 characters each). False when this libzmq has no
// CURVE support.
bool curve_keypair(std::string& public_key, std::string& secret_key);
// The public key of a secret key (both Z85). False when `secret_key` is not a key.
bool curve_public_key(const std::string& secret_key, std::string& public_key);

class RemoteForwarder {
 public:
  struct Options {
    std::string run_dir;
    std::vector<std::string> publishers;  // workers whose ipc://<run_dir>/<name>.pub is forwarded
    std::string listen;                   // IP:PORT (port "*": any free port, see endpoint())
    std::string secret_key;               // the server's, Z85; never logged
    std::string authorized_keys_file;
    int keys_check_ms = 2000;  // how often the file is checked for changes
    int sndhwm = 10000;        // messages queued per remote client before it loses some
  };
  struct Stats {
    uint64_t accepted = 0;       // authentication requests answered "200"
    uint64_t rejected = 0;       // ... answered "400"
    uint64_t forwarded = 0;      // messages handed to the TCP side
    uint64_t subscriptions = 0;  // distinct topic prefixes remote clients subscribe to now
    uint64_t keys = 0;           // authorized keys in use
    uint64_t key_reloads = 0;    // times authorized_keys_file was re-read after a change
    uint64_t disconnects = 0;    // times every connection was closed because a key went away
  };

  // Binds (ZAP handler first, then the TCP endpoint); throws std::runtime_error naming what
  // failed. Wipes its copy of the secret key once it is set on the socket.
  explicit RemoteForwarder(Options opt);
  ~RemoteForwarder();
  RemoteForwarder(const RemoteForwarder&) = delete;
  RemoteForwarder& operator=(const RemoteForwarder&) = delete;

  // Forwards what is ready both ways, answers authentication requests and re-reads the
  // authorized keys when their file changed; waits at most timeout_ms for work.
  void poll(int timeout_ms);

  Stats stats() const;  // thread-safe
  // The bound endpoint, "tcp://127.0.0.1:7558" (the real port when listen had "*").
  const std::string& endpoint() const { return endpoint_; }

 private:
  struct Signature {
    bool ok = false;
    uint64_t ino = 0, size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const Signature&) const = default;
  };
  Signature file_signature() const;
  void load_keys(bool initial);
  void handle_zap();
  bool bind_tcp();
  void close_connections();
  void log_accepted(const std::string& key, const std::string& name, const std::string& addr);
  void log_rejected(const std::string& key, const std::string& addr);

  Options opt_;
  zmq::context_t ctx_;  // its own: the ZAP endpoint is per context
  zmq::socket_t zap_, xsub_, xpub_;
  std::string endpoint_;  // what is (or was) bound
  bool bound_ = false;
  int64_t next_bind_try_ = 0;
  std::map<std::string, std::string> keys_;  // Z85 public key -> name
  Signature keys_sig_;
  int64_t next_keys_check_ = 0;
  std::map<std::string, int64_t> accept_logged_;  // key -> last info line (mono ns)
  struct Held {
    int64_t last = 0;
    uint64_t held = 0;
  };
  std::map<std::string, Held> reject_logged_;  // key -> last warning, rejections since
  int64_t reject_window_ = 0;                  // start of the minute of reject_lines_
  int reject_lines_ = 0;
  uint64_t reject_unlogged_ = 0;  // rejections over the per-minute cap, not logged
  std::atomic<uint64_t> accepted_{0}, rejected_{0}, forwarded_{0}, subscriptions_{0},
      keys_count_{0}, key_reloads_{0}, disconnects_{0};
};

class RemoteSubscriber {
 public:
  struct Options {
    std::string server;      // HOST:PORT
    std::string server_key;  // the server's public key, Z85
    std::string public_key;  // this client's key pair, Z85
    std::string secret_key;
    std::vector<std::string> prefixes;  // empty: everything
    int rcvhwm = 100000;
  };
  // Starts connecting (ZeroMQ keeps retrying); throws std::runtime_error for an endpoint
  // or a key ZeroMQ refuses.
  explicit RemoteSubscriber(Options opt);
  ~RemoteSubscriber();
  RemoteSubscriber(const RemoteSubscriber&) = delete;
  RemoteSubscriber& operator=(const RemoteSubscriber&) = delete;

  // Next message, waiting at most timeout_ms. False on timeout, or at once when failure()
  // has something to say.
  bool receive(Message& out, int timeout_ms);
  // Why the server does not talk to us ("" while nothing is known to be wrong): it refused
  // our key, or the handshake keeps failing (wrong server key, not a meterpipe endpoint).
  const std::string& failure() const { return failure_; }
  bool connected() const { return connected_; }
  uint64_t decode_errors() const { return decode_errors_; }

 private:
  void read_events();

  Options opt_;
  zmq::socket_t sub_, monitor_;
  std::string failure_;
  bool connected_ = false;
  int handshake_failures_ = 0;
  uint64_t decode_errors_ = 0;
};

}  // namespace mp::bus
