// Waiting without waking up for nothing (docs/ARCHITECTURE.md, "Threading"): a thread sleeps
// until its next real deadline or until the process is asked to stop, never in short slices
// only to look at a flag.
//
// The stop notice is an eventfd that becomes readable once a stop was requested and stays
// readable, so any number of threads (and poll sets: bus::Poller::add_fd) can wait on it.
// request_stop() is async-signal-safe once stop_fd() was called (mp::install_stop_signals
// does that before installing its handlers).
#pragma once

#include <cstdint>

namespace mp::wake {

// The eventfd of the stop notice (made at the first call; -1 when none could be made, and
// the waits below then only sleep).
int stop_fd();
// Makes stop_fd() readable for good. Async-signal-safe after a first stop_fd().
void request_stop();
bool stop_requested();

// Sleeps until the CLOCK_MONOTONIC time `mono_ns` (common/clock.h) or a stop request,
// whichever comes first. Returns false when woken by the stop request.
bool sleep_until(int64_t mono_ns);

// How often a thread watched by its worker's watchdog must show progress at the least
// (Worker::progress): general.watchdog_s / 4, set by the worker at start.
int64_t progress_period_ns();
void set_progress_period_ns(int64_t ns);

}  // namespace mp::wake
