#include "bus/poller.h"

#include <poll.h>

#include <chrono>
#include <zmq.hpp>

#include "bus/bus.h"
#include "bus/control.h"
#include "common/wake.h"

namespace mp::bus {

void Poller::add(Subscriber& sub) { subs_.push_back(&sub); }
void Poller::add(ControlServer& ctl) { ctls_.push_back(&ctl); }
void Poller::add_fd(int fd) {
  fds_.push_back(fd);
  fd_events_.push_back(0);
}
void Poller::clear_fds() {
  fds_.clear();
  fd_events_.clear();
}

bool Poller::wait(int timeout_ms) {
  for (auto* s : subs_)
    if (s->has_pending()) timeout_ms = 0;
  std::vector<zmq::pollitem_t> items;
  items.reserve(subs_.size() + ctls_.size() + fds_.size());
  for (auto* s : subs_) items.push_back({s->native_socket(), 0, ZMQ_POLLIN, 0});
  for (auto* c : ctls_) items.push_back({c->native_socket(), 0, ZMQ_POLLIN, 0});
  for (int fd : fds_) items.push_back({nullptr, fd, ZMQ_POLLIN, 0});
  // a stop request (common/wake.h) ends the wait whichever thread got the signal
  if (wake::stop_fd() >= 0) items.push_back({nullptr, wake::stop_fd(), ZMQ_POLLIN, 0});
  int n = 0;
  try {
    n = zmq::poll(items.data(), items.size(), std::chrono::milliseconds(timeout_ms));
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
    n = 1;
  }
  const size_t first_fd = subs_.size() + ctls_.size();
  for (size_t i = 0; i < fds_.size(); ++i) fd_events_[i] = items[first_fd + i].revents;
  for (auto* s : subs_)
    if (s->has_pending()) n = n > 0 ? n : 1;
  return n > 0;
}

bool Poller::readable(int fd) const {
  for (size_t i = 0; i < fds_.size(); ++i)
    if (fds_[i] == fd) return fd_events_[i] & (ZMQ_POLLIN | ZMQ_POLLERR);
  return false;
}

}  // namespace mp::bus
