#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "supervisor/notify.h"
#include "tests/harness/temp_dir.h"

using mp::supervisor::notify::kReadyDeadlineNs;
using mp::supervisor::notify::ready_due;
using mp::supervisor::notify::status_line;
using mp::supervisor::notify::WorkerView;

TEST_CASE("notify: READY once every worker is up, or at the deadline") {
  std::vector<WorkerView> w = {{"acquire", true}, {"process", false}};
  CHECK_FALSE(ready_due(w, 0));
  CHECK_FALSE(ready_due(w, kReadyDeadlineNs - 1));
  CHECK(ready_due(w, kReadyDeadlineNs));
  w[1].up = true;
  CHECK(ready_due(w, 0));
}

TEST_CASE("notify: status lines") {
  std::vector<WorkerView> w = {{"acquire", true}, {"process", false}, {"upload", false}};
  CHECK(status_line(w, false) == "starting: 1 of 3 workers up; waiting for process, upload");
  w[1].up = true;
  w[2].restarting = true;
  w[2].restarts = 1;
  CHECK(status_line(w, false) == "starting: 2 of 3 workers up; upload restarting (1 restart)");
  w[2].restarts = 3;
  CHECK(status_line(w, true) == "running: 2 of 3 workers up; upload restarting (3 restarts)");
  w[2] = {"upload", true};
  CHECK(status_line(w, true) == "running: 3 workers up (acquire, process, upload)");
  CHECK(status_line({{"acquire", true}}, true) == "running: 1 worker up (acquire)");
}

namespace {

// A socket in the role of systemd's notification socket; returns its fd bound to `name`
// (a path, or "@..." for an abstract name).
int bind_notify_socket(const std::string& name) {
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, name.data(), name.size());
  if (name[0] == '@') addr.sun_path[0] = '\0';
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr),
                 socklen_t(offsetof(sockaddr_un, sun_path) + name.size())) == 0);
  timeval tv{10, 0};  // a generous deadline: the datagram is there at once or never
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

std::string receive(int fd) {
  char buf[4096];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

}  // namespace

TEST_CASE("notify: the datagrams reach a path or an abstract socket, as systemd reads them") {
  mp::test::TempDir d("mpnotify");
  const std::string path = d.path + "/notify";
  const int fd = bind_notify_socket(path);
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "4000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  CHECK(mp::supervisor::notify::watchdog_usec() == 4000000);
  {
    mp::supervisor::notify::Notifier n;
    const std::vector<WorkerView> up{{"acquire", true, false, 0}};
    n.tick(up, INT64_MAX / 2);
    const std::string got = receive(fd);
    CHECK(got.find("READY=1\n") != std::string::npos);
    CHECK(got.find("STATUS=running: 1 worker up (acquire)\n") != std::string::npos);
    CHECK(got.find("WATCHDOG=1\n") != std::string::npos);
    n.stopping();
    CHECK(receive(fd).rfind("STOPPING=1\n", 0) == 0);
  }
  ::close(fd);

  // a watchdog meant for another process (a child that inherited the variables) is not ours
  ::setenv("WATCHDOG_PID", "1", 1);
  CHECK(mp::supervisor::notify::watchdog_usec() == 0);

  const std::string abstract = "@meterpipe-test-notify-" + std::to_string(::getpid());
  const int afd = bind_notify_socket(abstract);
  CHECK(mp::supervisor::notify::send_datagram(abstract.c_str(), "READY=1\n") == 0);
  CHECK(receive(afd) == "READY=1\n");
  ::close(afd);
  CHECK(mp::supervisor::notify::send_datagram("relative/path", "READY=1\n") == -EINVAL);
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
}
