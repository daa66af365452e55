#include "mqtt/outbox.h"

#include <unistd.h>

#include <cstdint>

namespace mp::mqtt {

void Outbox::push(OutMessage m) {
  // the consumer drains the whole queue at each wake: only the first message wakes it
  if (push_locked(std::move(m)) && wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
  }
}

bool Outbox::push_locked(OutMessage m) {
  std::lock_guard<std::mutex> l(mutex_);
  const bool was_empty = queue_.empty();
  auto it = latest_.find(m.topic);
  const bool coalesce = !connected_ || queue_.size() >= cap_;
  if (coalesce && it != latest_.end()) {
    it->second->payload = std::move(m.payload);
    it->second->retain = m.retain;
    ++dropped_;
    return false;
  }
  if (queue_.size() >= cap_ + kTopicSlack) {
    ++dropped_;
    return false;
  }
  queue_.push_back(std::move(m));
  latest_[queue_.back().topic] = std::prev(queue_.end());
  if (queue_.size() >= cap_ / 2) was_congested_ = true;
  return was_empty;
}

void Outbox::pop_locked(OutMessage& out) {
  auto front = queue_.begin();
  auto it = latest_.find(front->topic);
  if (it != latest_.end() && it->second == front) latest_.erase(it);
  out = std::move(*front);
  queue_.erase(front);
}

void Outbox::after_pop_locked() {
  if (!was_congested_ || queue_.size() >= cap_ / 2) return;
  was_congested_ = false;
  if (drain_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(drain_fd_, &one, sizeof one);
  }
}

bool Outbox::pop(OutMessage& out) {
  std::lock_guard<std::mutex> l(mutex_);
  if (queue_.empty()) return false;
  pop_locked(out);
  after_pop_locked();
  return true;
}

size_t Outbox::pop_batch(std::vector<OutMessage>& out, size_t max) {
  std::lock_guard<std::mutex> l(mutex_);
  size_t n = 0;
  for (; n < max && !queue_.empty(); ++n) {
    out.emplace_back();
    pop_locked(out.back());
  }
  if (n) after_pop_locked();
  return n;
}

void Outbox::push_front(OutMessage m) {
  std::lock_guard<std::mutex> l(mutex_);
  if (latest_.count(m.topic)) {  // a newer payload waits already
    ++dropped_;
    return;
  }
  queue_.push_front(std::move(m));
  latest_[queue_.front().topic] = queue_.begin();
}

void Outbox::set_connected(bool c) {
  std::lock_guard<std::mutex> l(mutex_);
  connected_ = c;
  if (!c) coalesce_all();
}

void Outbox::coalesce_all() {
  for (auto it = queue_.begin(); it != queue_.end();) {
    auto latest = latest_.find(it->topic);
    if (latest != latest_.end() && latest->second != it) {
      it = queue_.erase(it);
      ++dropped_;
    } else {
      ++it;
    }
  }
}

bool Outbox::congested() const {
  std::lock_guard<std::mutex> l(mutex_);
  return !connected_ || queue_.size() >= cap_ / 2;
}

size_t Outbox::size() const {
  std::lock_guard<std::mutex> l(mutex_);
  return queue_.size();
}

uint64_t Outbox::dropped() const {
  std::lock_guard<std::mutex> l(mutex_);
  return dropped_;
}

}  // namespace mp::mqtt
