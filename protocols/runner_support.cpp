#include "protocols/runner_support.h"

#include <algorithm>

#include "common/clock.h"
#include "common/wake.h"

namespace mp::protocols {

meterpipe::RawFrame make_raw(const std::string& source, std::string_view protocol,
                             std::string&& bytes, int64_t wall_ns, int64_t mono_ns,
                             bool last_of_poll) {
  meterpipe::RawFrame raw;
  raw.set_source(source);
  raw.set_protocol(std::string(protocol));
  raw.set_data(std::move(bytes));
  raw.set_receive_time_ns(wall_ns);
  raw.set_receive_mono_ns(mono_ns);
  raw.set_clock_synced(clock::synced());
  raw.set_last_of_poll(last_of_poll);
  return raw;
}

bool sleep_until(RunContext& ctx, int slot, int64_t mono_deadline) {
  while (ctx.running()) {
    const int64_t left = mono_deadline - clock::mono_ns();
    if (left <= 0) return true;
    // asleep until the deadline; at least once per progress period awake for the watchdog,
    // at once on stop (common/wake.h)
    wake::sleep_until(clock::mono_ns() + std::min(left, wake::progress_period_ns()));
    ctx.progress(slot);
  }
  return false;
}

}  // namespace mp::protocols
