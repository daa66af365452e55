#include "bus/control.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <zmq.hpp>

#include "bus/bus.h"
#include "bus/zmq_context.h"

namespace mp::bus {

struct ControlServer::Impl {
  zmq::socket_t sock{context(), zmq::socket_type::rep};
  Handler handler;
};

ControlServer::ControlServer(const std::string& run_dir, const std::string& name, Handler handler)
    : impl_(std::make_unique<Impl>()) {
  impl_->handler = std::move(handler);
  impl_->sock.set(zmq::sockopt::linger, 0);
  const std::string ep = ctl_endpoint(run_dir, name);
  try {
    impl_->sock.bind(ep);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot bind " + ep + ": " + e.what());
  }
}

ControlServer::~ControlServer() = default;

void* ControlServer::native_socket() { return static_cast<void*>(impl_->sock); }

int ControlServer::serve_pending() {
  int served = 0;
  while (true) {
    zmq::message_t req;
    zmq::recv_result_t r;
    try {
      r = impl_->sock.recv(req, zmq::recv_flags::dontwait);
    } catch (const zmq::error_t&) {
      return served;
    }
    if (!r) return served;
    const std::string reply = impl_->handler(req.to_string());
    ++served;
    try {
      impl_->sock.send(zmq::buffer(reply), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  }
}

std::optional<std::string> control_request(const std::string& run_dir, const std::string& worker,
                                           const std::string& request, int timeout_ms) {
  const std::string endpoint = ctl_endpoint(run_dir, worker);
  // ZeroMQ hides a permission problem behind a timeout: say it plainly
  const std::string path = endpoint.substr(6);  // after "ipc://"
  if (access(path.c_str(), F_OK) == 0 && access(path.c_str(), W_OK) != 0)
    throw ControlAccessError(path + ": " + std::strerror(errno) +
                             " (run as root or as a member of group meterpipe)");
  zmq::socket_t s(context(), zmq::socket_type::req);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, timeout_ms);
  s.set(zmq::sockopt::sndtimeo, timeout_ms);
  s.connect(endpoint);
  if (!s.send(zmq::buffer(request))) return std::nullopt;
  zmq::message_t rep;
  if (!s.recv(rep)) return std::nullopt;
  return rep.to_string();
}

}  // namespace mp::bus
