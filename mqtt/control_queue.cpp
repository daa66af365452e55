#include "mqtt/control_queue.h"

#include <unistd.h>

#include <cstdint>

#include "bus/control.h"
#include "common/json.h"

namespace mp::mqtt {

ControlQueue::ControlQueue(std::string run_dir, std::string worker, int timeout_ms)
    : run_dir_(std::move(run_dir)), worker_(std::move(worker)), timeout_ms_(timeout_ms) {
  thread_ = std::thread(&ControlQueue::run, this);
}

ControlQueue::~ControlQueue() {
  {
    std::lock_guard<std::mutex> l(mutex_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

bool ControlQueue::submit(const std::string& request, const std::string& origin) {
  {
    std::lock_guard<std::mutex> l(mutex_);
    if (request == "status")
      for (const auto& q : queue_)
        if (q.request == "status") return true;
    if (queue_.size() >= kMaxQueued) return false;
    queue_.push_back(ControlResult{request, std::nullopt, origin});
  }
  cv_.notify_one();
  return true;
}

std::vector<ControlResult> ControlQueue::take_results() {
  std::lock_guard<std::mutex> l(mutex_);
  std::vector<ControlResult> out;
  out.swap(results_);
  return out;
}

void ControlQueue::run() {
  std::unique_lock<std::mutex> l(mutex_);
  while (true) {
    cv_.wait(l, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    ControlResult r = std::move(queue_.front());
    queue_.pop_front();
    l.unlock();
    try {
      r.reply = bus::control_request(run_dir_, worker_, r.request, timeout_ms_);
    } catch (const std::exception& e) {  // the control socket is not ours to use
      r.reply = "{\"error\":" + json::quote(e.what()) + "}";
    }
    l.lock();
    if (results_.size() < 4 * kMaxQueued) results_.push_back(std::move(r));
    if (notify_fd_ >= 0) {
      const uint64_t one = 1;
      (void)!::write(notify_fd_, &one, sizeof one);
    }
  }
}

}  // namespace mp::mqtt
