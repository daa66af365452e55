#include "bus/control.h"

#include <zmq.hpp>

#include "bus/bus.h"

namespace mp::bus {

std::optional<std::string> control_request(const std::string& run_dir, const std::string& worker,
                                           const std::string& request, int timeout_ms) {
  try {
    zmq::socket_t s(context(), zmq::socket_type::req);
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::rcvtimeo, timeout_ms);
    s.set(zmq::sockopt::sndtimeo, timeout_ms);
    s.connect(ctl_endpoint(run_dir, worker));
    if (!s.send(zmq::buffer(request))) return std::nullopt;
    zmq::message_t rep;
    if (!s.recv(rep)) return std::nullopt;
    return rep.to_string();
  } catch (const zmq::error_t&) {
    return std::nullopt;
  }
}

}  // namespace mp::bus
