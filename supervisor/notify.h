// systemd notification (Type=notify) for the supervisor: READY=1 once every worker is up,
// STATUS= lines a person can read in `systemctl status meterpipe`, WATCHDOG=1 from the main
// loop when the unit sets WatchdogSec=, STOPPING=1 on the way out. Without NOTIFY_SOCKET
// (started from a shell) every call is a no-op. The protocol is sd_notify(3)'s, which systemd
// documents as stable for programs that do not link libsystemd: one datagram to the AF_UNIX
// socket $NOTIFY_SOCKET. Our own few lines instead of libsystemd save the supervisor
// ~0.8 MB of memory (PSS; libsystemd loads libgcrypt, libzstd, liblzma, liblz4, libcap).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mp::supervisor::notify {

// What the status line needs to know of one worker.
struct WorkerView {
  std::string name;
  bool up = false;          // running and has sent a heartbeat from its current pid
  bool restarting = false;  // exited, waiting for its restart
  int restarts = 0;
};

// READY=1 is sent when every worker is up, or at the latest this long after the start: a
// worker that cannot come up does not hold the others (and the meter) hostage; the status
// line then names it.
constexpr int64_t kReadyDeadlineNs = 60'000'000'000LL;

// The STATUS= text (pure): "starting: 2 of 5 workers up; waiting for upload, serve",
// "running: 5 workers up (acquire, process, ...)", "running: 4 of 5 workers up; upload
// restarting (3 restarts)".
std::string status_line(const std::vector<WorkerView>& workers, bool ready);

// Whether READY=1 is due (pure).
bool ready_due(const std::vector<WorkerView>& workers, int64_t since_start_ns);

class Notifier {
 public:
  Notifier();
  // From the main loop, every iteration: READY=1 when due, STATUS= when it changed,
  // WATCHDOG=1 every half watchdog period.
  void tick(const std::vector<WorkerView>& workers, int64_t now_mono_ns);
  // Before the workers are stopped.
  void stopping();
  // When tick() has something to send at the latest (a far future when nothing is planned):
  // the next WATCHDOG=1, the READY=1 deadline. A change of the workers comes with an event
  // that wakes the loop anyway.
  int64_t next_due_mono() const;

 private:
  void send(const std::string& text);
  bool enabled_ = false;
  bool ready_ = false;
  int64_t start_ns_ = 0;
  int64_t watchdog_period_ns_ = 0;  // 0: no watchdog
  int64_t last_ping_ns_ = 0;
  std::string last_status_;
};

// Sends `text` as one datagram to the socket named `socket_name` (a path, or "@name" for an
// abstract socket); 0 or -errno.
int send_datagram(const char* socket_name, const std::string& text);
// $WATCHDOG_USEC when it is meant for this process ($WATCHDOG_PID unset or ours), else 0.
int64_t watchdog_usec();

// In a forked worker before exec: the notification socket belongs to the supervisor.
void forget_in_child();

}  // namespace mp::supervisor::notify
