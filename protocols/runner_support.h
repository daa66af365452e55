// Small helpers for the runners of protocols/*: a raw frame as the bus carries it, and a
// sleep that keeps the watchdog fed and ends when the worker stops.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocols/protocol.h"

namespace mp::protocols {

// A RawFrame of `source` with the receive stamps (wall clock and monotonic) and whether the
// system clock was synchronised.
meterpipe::RawFrame make_raw(const std::string& source, std::string_view protocol,
                             std::string&& bytes, int64_t wall_ns, int64_t mono_ns,
                             bool last_of_poll = true);
// Sleeps until the monotonic deadline in steps of at most 200 ms, reporting progress;
// false when the worker stopped meanwhile.
bool sleep_until(RunContext& ctx, int slot, int64_t mono_deadline);

}  // namespace mp::protocols
