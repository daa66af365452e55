#include "serve/login_limiter.h"

#include <algorithm>

namespace mp::serve {

LoginLimiter::Entry& LoginLimiter::entry(const std::string& addr, int64_t now_ns) {
  auto it = by_addr_.find(addr);
  if (it != by_addr_.end()) {
    Entry& e = it->second;
    if (e.locked_until_ns <= now_ns && now_ns - e.last_ns >= p_.forget_ns) e = Entry{};
    return e;
  }
  if (by_addr_.size() >= p_.max_addresses) {
    auto stalest = std::min_element(by_addr_.begin(), by_addr_.end(), [](auto& a, auto& b) {
      return std::max(a.second.last_ns, a.second.locked_until_ns) <
             std::max(b.second.last_ns, b.second.locked_until_ns);
    });
    by_addr_.erase(stalest);
  }
  return by_addr_[addr];
}

void LoginLimiter::count(Entry& e, int64_t now_ns, bool set_delay) {
  ++e.failures;
  e.last_ns = now_ns;
  if (e.failures >= p_.lock_after) {
    e.locked_until_ns = now_ns + p_.lock_ns;
    return;
  }
  if (set_delay && e.failures >= p_.free_failures) {
    const int shift = std::min(e.failures - p_.free_failures, 30);
    e.next_ns = now_ns + std::min(p_.max_delay_ns, p_.base_delay_ns << shift);
  }
}

int64_t LoginLimiter::admit(const std::string& addr, int64_t now_ns) {
  Entry& e = entry(addr, now_ns);
  if (e.locked_until_ns > now_ns) return e.locked_until_ns - now_ns;
  if (e.locked_until_ns) e = Entry{};  // a lock that ran out starts the address afresh
  if (e.next_ns > now_ns) {
    const int64_t wait = e.next_ns - now_ns;
    count(e, now_ns, false);
    return e.locked_until_ns > now_ns ? e.locked_until_ns - now_ns : wait;
  }
  return 0;
}

void LoginLimiter::failed(const std::string& addr, int64_t now_ns) {
  count(entry(addr, now_ns), now_ns, true);
}

void LoginLimiter::succeeded(const std::string& addr) { by_addr_.erase(addr); }

bool LoginLimiter::locked(const std::string& addr, int64_t now_ns) const {
  auto it = by_addr_.find(addr);
  return it != by_addr_.end() && it->second.locked_until_ns > now_ns;
}

int LoginLimiter::failures(const std::string& addr) const {
  auto it = by_addr_.find(addr);
  return it == by_addr_.end() ? 0 : it->second.failures;
}

}  // namespace mp::serve
