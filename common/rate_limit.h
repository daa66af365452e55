// Keeps repeated error logs to one line per key and interval, saying how many were
// suppressed meanwhile ("crc mismatch ... (37 more since the last report)").
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace mp {

class LogLimiter {
 public:
  explicit LogLimiter(int64_t interval_ns = 60'000'000'000LL) : interval_(interval_ns) {}
  // True when a line for `key` should be written now; `suppressed` then holds how many
  // were held back since the previous one.
  bool allow(const std::string& key, int64_t now_ns, uint64_t& suppressed) {
    auto& e = entries_[key];
    if (e.last == 0 || now_ns - e.last >= interval_) {
      suppressed = e.held;
      e.held = 0;
      e.last = now_ns;
      return true;
    }
    ++e.held;
    return false;
  }

 private:
  struct Entry {
    int64_t last = 0;
    uint64_t held = 0;
  };
  int64_t interval_;
  std::map<std::string, Entry> entries_;
};

}  // namespace mp
