// The process-wide ZeroMQ context, for the code of bus/ only.
#pragma once

#include <zmq.hpp>

namespace mp::bus {
zmq::context_t& context();
}  // namespace mp::bus
