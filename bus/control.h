// The control channel of a worker: ipc://<run_dir>/<name>.ctl, one text request, one text
// reply (JSON). `meterpipe status` asks the supervisor, `meterpipe relay` and the mqtt
// worker ask actuate. See docs/ARCHITECTURE.md, "Control channel".
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace mp::bus {

class Poller;

// Answers requests on ipc://<run_dir>/<name>.ctl with a handler. Never blocks: the owner
// waits for requests with a Poller and calls serve_pending().
class ControlServer {
 public:
  using Handler = std::function<std::string(const std::string& request)>;
  // Binds the endpoint; throws std::runtime_error naming it when that fails.
  ControlServer(const std::string& run_dir, const std::string& name, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Answers every request that is waiting; returns how many.
  int serve_pending();

 private:
  friend class Poller;  // waits on the socket
  void* native_socket();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The control socket exists but this user may not write to it.
struct ControlAccessError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One request to a worker's control channel. nullopt when nothing answers within
// timeout_ms; throws ControlAccessError (the message says what to do) when the socket is
// there but not writable for this user.
std::optional<std::string> control_request(const std::string& run_dir, const std::string& worker,
                                           const std::string& request, int timeout_ms);

}  // namespace mp::bus
