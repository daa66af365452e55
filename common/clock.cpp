#include "common/clock.h"

#include <sys/timex.h>

#include <cstdio>
#include <ctime>

namespace mp::clock {

int64_t wall_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

bool synced() {
  timex tx{};
  int state = adjtimex(&tx);
  return state != TIME_ERROR && !(tx.status & STA_UNSYNC);
}

std::string iso8601(int64_t unix_ns) {
  time_t secs = static_cast<time_t>(unix_ns / 1000000000);
  int64_t frac = unix_ns % 1000000000;
  if (frac < 0) {
    frac += 1000000000;
    secs -= 1;
  }
  tm t;
  gmtime_r(&secs, &t);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  if (frac) n += std::snprintf(buf + n, sizeof buf - n, ".%03lld", (long long)(frac / 1000000));
  std::snprintf(buf + n, sizeof buf - n, "Z");
  return buf;
}

}  // namespace mp::clock
