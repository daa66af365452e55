// Control requests to actuate (bus/control.h), sent from a thread of their own so the bus
// loop never waits for actuate's answer. Bounded: at most kMaxQueued requests wait; a
// "status" request is not queued twice.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace mp::mqtt {

struct ControlResult {
  std::string request;
  std::optional<std::string> reply;  // nullopt: actuate did not answer in time
  std::string origin;                // what asked (for the log: "relay/boiler/set")
};

class ControlQueue {
 public:
  static constexpr size_t kMaxQueued = 16;

  ControlQueue(std::string run_dir, std::string worker, int timeout_ms = 3000);
  ~ControlQueue();
  ControlQueue(const ControlQueue&) = delete;
  ControlQueue& operator=(const ControlQueue&) = delete;

  // False when the queue is full (the request is dropped).
  bool submit(const std::string& request, const std::string& origin = "");
  std::vector<ControlResult> take_results();
  // An eventfd written when a result is ready (wakes the bus loop's poll); -1 = none.
  void set_notify_fd(int fd) { notify_fd_ = fd; }

 private:
  void run();

  std::string run_dir_, worker_;
  int timeout_ms_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<ControlResult> queue_;
  std::vector<ControlResult> results_;
  bool stop_ = false;
  int notify_fd_ = -1;
  std::thread thread_;
};

}  // namespace mp::mqtt
