// Clocks: wall and monotonic nanoseconds, and whether the wall clock is synchronised.
#pragma once

#include <cstdint>
#include <string>

namespace mp::clock {

int64_t wall_ns();
int64_t mono_ns();
// True when the kernel says the system clock is synchronised (NTP / RTC), as adjtimex
// reports it; a Pi without RTC reads false until NTP has set the time.
bool synced();
// "2016-11-13T19:57:57Z" (UTC, second precision; fraction added when non-zero).
std::string iso8601(int64_t unix_ns);

}  // namespace mp::clock
