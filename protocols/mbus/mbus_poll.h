// M-Bus master over a byte source: SND_NKE, REQ_UD2 with the FCB toggling, RSP_UD frames
// collected while the meter says "more records follow". Used by the acquire worker and by
// `meterpipe scan --mbus`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "acquire/byte_source.h"
#include "protocols/mbus/mbus_link.h"

namespace mp::mbus_poll {

struct PollResult {
  std::vector<std::string> frames;  // raw long frames, in order
  std::string error;                // empty on success
  bool ok() const { return error.empty(); }
};

// Called at least every 250 ms while waiting for a slave (keeps the worker's watchdog fed
// during long replies at low baud rates).
using Progress = std::function<void()>;

// SND_NKE to `address`; true when the slave acknowledged with E5.
bool reset(acquire::ByteSource& src, uint8_t address, unsigned baud, std::string& error,
           const Progress& progress = {});

// One readout: REQ_UD2 (with `fcb`), repeated while the reply says more records follow
// (at most max_frames). `fcb` is toggled after every valid reply; a missing or garbled
// reply is asked for once more with the same FCB (EN 13757-2 repetition) before the poll
// fails.
PollResult read(acquire::ByteSource& src, uint8_t address, unsigned baud, mbus_link::FcbState& fcb,
                int max_frames = 8, const Progress& progress = {});

}  // namespace mp::mbus_poll
