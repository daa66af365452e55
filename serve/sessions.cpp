#include "serve/sessions.h"

#include <algorithm>

#include "serve/auth_crypto.h"

namespace mp::serve {

bool SessionStore::expired(const Session& s, int64_t now_ns) const {
  return now_ns - s.last_seen_ns >= limits_.idle_ns || now_ns - s.created_ns >= limits_.absolute_ns;
}

void SessionStore::evict(int64_t now_ns) {
  for (auto it = sessions_.begin(); it != sessions_.end();)
    it = expired(it->second, now_ns) ? sessions_.erase(it) : std::next(it);
  while (sessions_.size() >= limits_.max_sessions) {
    auto oldest = std::min_element(sessions_.begin(), sessions_.end(), [](auto& a, auto& b) {
      return a.second.last_seen_ns < b.second.last_seen_ns;
    });
    sessions_.erase(oldest);
  }
}

std::string SessionStore::create(const std::string& user, const std::string& pw_tag,
                                 int64_t now_ns) {
  evict(now_ns);
  const std::string id = auth::random_hex(32);
  Session s;
  s.user = user;
  s.csrf = auth::random_hex(32);
  s.pw_tag = pw_tag;
  s.created_ns = s.last_seen_ns = now_ns;
  sessions_[auth::token_hash(id)] = std::move(s);
  return id;
}

const Session* SessionStore::find(const std::string& id, int64_t now_ns, bool touch) {
  if (id.size() != 64) return nullptr;
  auto it = sessions_.find(auth::token_hash(id));
  if (it == sessions_.end()) return nullptr;
  if (expired(it->second, now_ns)) {
    sessions_.erase(it);
    return nullptr;
  }
  if (touch) it->second.last_seen_ns = now_ns;
  return &it->second;
}

void SessionStore::remove(const std::string& id) { sessions_.erase(auth::token_hash(id)); }

int64_t SessionStore::expires_in_s(const Session& s, int64_t now_ns) const {
  const int64_t end =
      std::min(s.last_seen_ns + limits_.idle_ns, s.created_ns + limits_.absolute_ns);
  return std::max<int64_t>(0, (end - now_ns) / 1000000000);
}

}  // namespace mp::serve
