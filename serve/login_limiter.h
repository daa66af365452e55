// Per-address limit on login attempts (docs/ARCHITECTURE.md, "Accounts"). Pure: the caller
// passes the time. The first `free_failures` wrong passwords from an address cost nothing;
// after that each attempt must wait a backoff that doubles per failure (1 s, 2 s, 4 s ... up
// to max_delay); an attempt that comes before its time is refused and counts as a failure
// too; at `lock_after` failures the address is refused for `lock`, whatever it sends. A
// success clears the address; so does a quiet `forget` period. Other addresses are never
// affected; at most max_addresses are tracked (the stalest is forgotten first).
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace mp::serve {

class LoginLimiter {
 public:
  struct Params {
    int free_failures = 5;
    int64_t base_delay_ns = 1000000000;
    int64_t max_delay_ns = 60LL * 1000000000;
    int lock_after = 20;
    int64_t lock_ns = 15LL * 60 * 1000000000;
    int64_t forget_ns = 15LL * 60 * 1000000000;
    size_t max_addresses = 4096;
  };
  explicit LoginLimiter(Params p) : p_(p) {}

  // 0 when an attempt from `addr` may be checked now; else the nanoseconds to wait (the
  // attempt is refused and counted).
  int64_t admit(const std::string& addr, int64_t now_ns);
  // The attempt admitted just before had a wrong name or password.
  void failed(const std::string& addr, int64_t now_ns);
  void succeeded(const std::string& addr);
  bool locked(const std::string& addr, int64_t now_ns) const;
  int failures(const std::string& addr) const;

 private:
  struct Entry {
    int failures = 0;
    int64_t next_ns = 0, locked_until_ns = 0, last_ns = 0;
  };
  Entry& entry(const std::string& addr, int64_t now_ns);
  void count(Entry& e, int64_t now_ns, bool set_delay);

  Params p_;
  std::map<std::string, Entry> by_addr_;
};

}  // namespace mp::serve
