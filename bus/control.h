// The request/reply control channel of a worker: ipc://<run_dir>/<worker>.ctl (REP, bound by
// the worker), one text request, one reply. Used by the `meterpipe` command line and by
// workers that act on another (mqtt -> actuate: "relay NAME on|off|auto [SECONDS]").
#pragma once

#include <optional>
#include <string>

namespace mp::bus {

// Sends `request` to `worker`'s control socket and waits at most timeout_ms for the reply;
// nullopt when nothing answered in time (worker not running, socket not writable).
std::optional<std::string> control_request(const std::string& run_dir, const std::string& worker,
                                           const std::string& request, int timeout_ms);

}  // namespace mp::bus
