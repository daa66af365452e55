// civetweb wiring of the serve worker: HTTP requests go to the pure router (serve/api.h)
// under the state mutex; WebSocket clients at /ws get every message passed to broadcast().
//
// civetweb's mg_websocket_write blocks until the client takes the bytes, so each client
// has its own writer thread and a bounded queue. broadcast() never blocks: a client whose
// queue is full, or whose writer has been stuck in one write for too long, is dropped
// (its socket shut down, which also ends the blocked write), and the others carry on.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "serve/api.h"
#include "serve/auth_gate.h"
#include "serve/state.h"

struct mg_context;
struct mg_connection;

namespace mp::serve {

// What the HTTP threads and the bus loop share.
struct Shared {
  std::mutex mutex;  // guards state and info
  // Takes the heartbeats waiting on the bus into state (they are read lazily: the bus loop
  // does not wake for them). Called by a request before it takes `mutex`; empty: nothing.
  std::function<void()> take_heartbeats;
  State state;
  ServeInfo info;  // bus figures and the static part (pid, listen); the rest is filled live
  int64_t start_mono_ns = 0;
  explicit Shared(State s) : state(std::move(s)) {}
};

class HttpServer {
 public:
  struct Options {
    size_t max_queue = 128;             // messages waiting per WebSocket client
    int64_t max_stall_ns = 5000000000;  // one write blocked this long drops the client
    size_t max_clients = 5;             // WebSocket clients at once (each holds a thread)
    int send_buffer = 65536;            // SO_SNDBUF of WebSocket sockets
    // both set: HTTPS only (serve/worker_auth.h)
    std::string tls_cert_file, tls_key_file;
  };
  HttpServer(std::string listen, Shared& shared, Options opt);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Every request and WebSocket upgrade passes `gate` first (set before start()).
  void set_gate(AuthGate* gate);
  // Starts listening; false with a reason (port in use, bad address).
  bool start(std::string& error);
  void stop();
  // Queues `msg` for every WebSocket client; never blocks.
  void broadcast(std::string msg);
  // Closes every WebSocket client whose login ended (logout, expiry, a new password, a
  // deleted user or token): a close frame kLoginEnded, then the socket within
  // kCloseGraceNs. Called by the serve loop about every second and by the gate at logout.
  void end_lapsed_clients();
  static constexpr int kLoginEnded = 4001;  // the page asks to log in again
  static constexpr int64_t kCloseGraceNs = 3000000000;

  size_t clients() const;
  uint64_t dropped() const { return dropped_.load(); }
  uint64_t ws_messages() const { return ws_messages_.load(); }
  uint64_t requests() const { return requests_.load(); }
  uint64_t client_errors() const { return client_errors_.load(); }

 private:
  struct Client;
  static int on_request(mg_connection* conn, void* self);
  static int on_ws_connect(const mg_connection* conn, void* self);
  static void on_ws_ready(mg_connection* conn, void* self);
  static int on_ws_data(mg_connection* conn, int bits, char* data, size_t len, void* self);
  static void on_ws_close(const mg_connection* conn, void* self);
  static int on_log(const mg_connection* conn, const char* message);
  static int on_init_ssl(void* ssl_ctx, void* self);
  void writer(std::shared_ptr<Client> c);
  void send_close(Client& c, std::unique_lock<std::mutex>& lk);  // lk holds c.mutex
  void drop(Client& c);                                          // with c.mutex held
  ServeInfo info_locked() const;

  std::string listen_;
  Shared& shared_;
  Options opt_;
  AuthGate* gate_ = nullptr;
  mg_context* ctx_ = nullptr;
  mutable std::mutex clients_mutex_;
  std::map<const mg_connection*, std::shared_ptr<Client>> clients_;
  std::atomic<size_t> pending_connects_{0};
  std::atomic<uint64_t> dropped_{0}, ws_messages_{0}, requests_{0}, client_errors_{0};
};

}  // namespace mp::serve
