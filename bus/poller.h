// One wait for everything a worker's loop listens to: bus subscribers, control servers and
// plain file descriptors (a signal pipe, an eventfd, a child's output, a library's socket).
#pragma once

#include <vector>

namespace mp::bus {

class Subscriber;
class ControlServer;

class Poller {
 public:
  void add(Subscriber& sub);
  void add(ControlServer& ctl);
  void add_fd(int fd);
  // Forgets the plain descriptors (the bus sockets stay): for loops whose set of
  // descriptors changes (the supervisor's children come and go).
  void clear_fds();

  // Waits until something is readable or timeout_ms have passed (-1: no limit). A
  // subscriber that already holds a message counts as readable. Returns false on timeout.
  // Interrupted by a signal: returns true (the caller looks at everything anyway).
  bool wait(int timeout_ms);
  // After wait(): whether this descriptor was readable (or hung up).
  bool readable(int fd) const;

 private:
  std::vector<Subscriber*> subs_;
  std::vector<ControlServer*> ctls_;
  std::vector<int> fds_;
  std::vector<short> fd_events_;
};

}  // namespace mp::bus
