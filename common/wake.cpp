#include "common/wake.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <ctime>

#include "common/clock.h"

namespace mp::wake {

namespace {
std::atomic<int64_t> g_progress_period_ns{1000000000LL};
}  // namespace

int stop_fd() {
  static const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return fd;
}

void request_stop() {
  const uint64_t one = 1;
  const int saved = errno;
  (void)!::write(stop_fd(), &one, sizeof one);
  errno = saved;
}

bool stop_requested() {
  pollfd p{stop_fd(), POLLIN, 0};
  return p.fd >= 0 && ::poll(&p, 1, 0) > 0;
}

bool sleep_until(int64_t mono_ns) {
  while (true) {
    const int64_t left = mono_ns - clock::mono_ns();
    if (left <= 0) return true;
    timespec ts{time_t(left / 1000000000LL), long(left % 1000000000LL)};
    pollfd p{stop_fd(), POLLIN, 0};
    const int r = ::ppoll(&p, p.fd >= 0 ? 1 : 0, &ts, nullptr);
    if (r > 0) return false;
    if (r < 0 && errno != EINTR) return true;
  }
}

int64_t progress_period_ns() { return g_progress_period_ns.load(); }
void set_progress_period_ns(int64_t ns) { g_progress_period_ns = ns; }

}  // namespace mp::wake
