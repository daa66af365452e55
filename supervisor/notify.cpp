#include "supervisor/notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common/clock.h"
#include "common/log.h"

namespace mp::supervisor::notify {

namespace {

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace

int send_datagram(const char* socket_name, const std::string& text) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t n = std::strlen(socket_name);
  if (n < 2 || n >= sizeof addr.sun_path || (socket_name[0] != '/' && socket_name[0] != '@'))
    return -EINVAL;
  std::memcpy(addr.sun_path, socket_name, n);
  if (socket_name[0] == '@') addr.sun_path[0] = '\0';  // an abstract socket
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  const socklen_t len = socklen_t(offsetof(sockaddr_un, sun_path) + n);
  const ssize_t sent =
      ::sendto(fd, text.data(), text.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), len);
  const int err = sent < 0 ? errno : 0;
  ::close(fd);
  return -err;
}

int64_t watchdog_usec() {
  const char* usec = std::getenv("WATCHDOG_USEC");
  if (!usec || !*usec) return 0;
  const char* pid = std::getenv("WATCHDOG_PID");
  if (pid && *pid && std::strtoll(pid, nullptr, 10) != int64_t(::getpid())) return 0;
  char* end = nullptr;
  const long long v = std::strtoll(usec, &end, 10);
  return *end == '\0' && v > 0 ? v : 0;
}

std::string status_line(const std::vector<WorkerView>& workers, bool ready) {
  std::vector<std::string> up, down;
  std::string restarting;
  for (const auto& w : workers) {
    (w.up ? up : down).push_back(w.name);
    if (w.restarting) {
      restarting += (restarting.empty() ? "" : ", ") + w.name + " restarting (" +
                    std::to_string(w.restarts) + (w.restarts == 1 ? " restart)" : " restarts)");
    }
  }
  const std::string n = std::to_string(workers.size());
  std::string s = ready ? "running: " : "starting: ";
  if (down.empty())
    return s + n + (workers.size() == 1 ? " worker" : " workers") + " up (" + join(up) + ")";
  s += std::to_string(up.size()) + " of " + n + " workers up";
  if (!restarting.empty()) s += "; " + restarting;
  std::vector<std::string> waiting;
  for (const auto& w : workers)
    if (!w.up && !w.restarting) waiting.push_back(w.name);
  if (!waiting.empty()) s += "; waiting for " + join(waiting);
  return s;
}

bool ready_due(const std::vector<WorkerView>& workers, int64_t since_start_ns) {
  if (since_start_ns >= kReadyDeadlineNs) return true;
  for (const auto& w : workers)
    if (!w.up) return false;
  return true;
}

Notifier::Notifier() : start_ns_(clock::mono_ns()) {
  const char* sock = std::getenv("NOTIFY_SOCKET");
  enabled_ = sock && *sock;
  const int64_t usec = enabled_ ? watchdog_usec() : 0;
  if (usec > 0) watchdog_period_ns_ = usec * 1000 / 2;
}

void Notifier::send(const std::string& text) {
  const int r = send_datagram(std::getenv("NOTIFY_SOCKET"), text);
  if (r < 0) log::warn("systemd notification failed: %s", std::strerror(-r));
}

void Notifier::tick(const std::vector<WorkerView>& workers, int64_t now_mono_ns) {
  if (!enabled_) return;
  std::string msg;
  if (!ready_ && ready_due(workers, now_mono_ns - start_ns_)) {
    ready_ = true;
    msg = "READY=1\n";
  }
  const std::string status = status_line(workers, ready_);
  if (status != last_status_) {
    last_status_ = status;
    msg += "STATUS=" + status + "\n";
  }
  if (watchdog_period_ns_ > 0 && now_mono_ns - last_ping_ns_ >= watchdog_period_ns_) {
    last_ping_ns_ = now_mono_ns;
    msg += "WATCHDOG=1\n";
  }
  if (!msg.empty()) send(msg);
}

int64_t Notifier::next_due_mono() const {
  int64_t next = INT64_MAX;
  if (!enabled_) return next;
  if (!ready_) next = start_ns_ + kReadyDeadlineNs;
  if (watchdog_period_ns_ > 0) next = std::min(next, last_ping_ns_ + watchdog_period_ns_);
  return next;
}

void Notifier::stopping() {
  if (enabled_) send("STOPPING=1\nSTATUS=stopping the workers");
}

void forget_in_child() {
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
}

}  // namespace mp::supervisor::notify
