// Login sessions of the live page (docs/ARCHITECTURE.md, "Accounts"): a random id in the
// cookie meterpipe_session, a CSRF token per session, idle and absolute expiry. Kept in
// memory only (a restart of serve logs everyone out). Pure: the caller passes the time.
// Sessions are found by the BLAKE2b of their id, so no lookup compares a secret.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace mp::serve {

struct Session {
  std::string user;
  std::string csrf;    // the CSRF token of this session (64 hex digits)
  std::string pw_tag;  // token_hash of the user's password hash at login: a new password
                       // (or a deleted user) ends the session
  int64_t created_ns = 0, last_seen_ns = 0;
};

class SessionStore {
 public:
  struct Limits {
    int64_t idle_ns = 30LL * 60 * 1000000000;        // 30 min without a request
    int64_t absolute_ns = 12LL * 3600 * 1000000000;  // 12 h after login
    size_t max_sessions = 256;                       // the oldest go first
  };
  explicit SessionStore(Limits l) : limits_(l) {}

  // A new session; returns its id (the cookie value, 64 hex digits).
  std::string create(const std::string& user, const std::string& pw_tag, int64_t now_ns);
  // The live session of `id` (with `touch` its last_seen moved to now), or nullptr when
  // unknown or expired (an expired one is removed).
  const Session* find(const std::string& id, int64_t now_ns, bool touch = true);
  void remove(const std::string& id);
  // Seconds until the session of `id` expires (idle or absolute, whichever is first); 0 when
  // unknown.
  int64_t expires_in_s(const Session& s, int64_t now_ns) const;
  size_t size() const { return sessions_.size(); }
  const Limits& limits() const { return limits_; }

 private:
  bool expired(const Session& s, int64_t now_ns) const;
  void evict(int64_t now_ns);

  Limits limits_;
  std::map<std::string, Session> sessions_;  // by token_hash(id)
};

}  // namespace mp::serve
