// The door of the serve worker (docs/ARCHITECTURE.md, "Accounts"): every HTTP request and
// WebSocket upgrade passes here before the router (serve/api.h). It answers the login form
// (GET/POST /login), POST /logout, GET /api/session and relay control (POST
// /api/relays/{name}) itself, and refuses what the caller may not do:
//   - no users_file: everyone is a viewer (read-only page, as before accounts existed;
//     config refuses this off loopback); relay control is refused (403).
//   - users_file: a session (cookie meterpipe_session, from the login form) or an API token
//     (Authorization: Bearer, from `meterpipe user token`) is needed for everything but
//     /login and /static/ (and /metrics with metrics_open); 401 without, 403 for a viewer
//     asking for relay control.
//   - a users file that cannot be read or parsed: on loopback the page stays read-only;
//     elsewhere everything but /static/ answers 503 naming the problem.
//   - state-changing requests with a session carry its CSRF token (X-CSRF-Token header or
//     the form field csrf) and, when the browser sends one, an Origin of this server.
//     The login form has its own CSRF token (double submit: cookie meterpipe_login).
//   - login attempts are limited per address (serve/login_limiter.h).
// Thread-safe: civetweb's threads call it at once. Password checks (slow on purpose) and
// relay control (a round trip to actuate) run outside its lock.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "serve/api.h"
#include "serve/login_limiter.h"
#include "serve/relay_control.h"
#include "serve/sessions.h"
#include "serve/users.h"

namespace mp::serve {

struct HttpIn {
  std::string method, path, query, body;
  std::string remote_addr;
  std::map<std::string, std::string> headers;  // names in lower case
  bool https = false;
  std::string header(const std::string& lower_name) const;
};

class AuthGate {
 public:
  struct Options {
    std::string users_file;  // empty: no accounts
    bool loopback = true;    // listening on a loopback address only
    bool metrics_open = false;
    SessionStore::Limits sessions;
    LoginLimiter::Params limiter;
  };
  // Switches a relay for `user`; returns the HTTP answer (serve/relay_control.h).
  using Control = std::function<Response(const RelayCommand& c, const std::string& user)>;

  AuthGate(Options o, const std::vector<Asset>* assets, Control control);

  // The answer when the gate answers or refuses the request itself; nullopt when it may go
  // on to the router.
  std::optional<Response> check(const HttpIn& in, int64_t now_ns);
  // May this WebSocket upgrade (to /ws) go ahead? When it may, `cred` (if given) gets what
  // it came with, for websocket_still_allowed.
  bool websocket_allowed(const HttpIn& in, int64_t now_ns, HttpIn* cred = nullptr);
  // May a WebSocket opened with `cred` stay open? No once its session ended (logout, idle or
  // absolute expiry, a new password, a deleted user), its token was deleted, or accounts
  // came up under an anonymous one. Re-reads a changed users file; not activity for the idle
  // expiry (docs/ARCHITECTURE.md, "Accounts").
  bool websocket_still_allowed(const HttpIn& cred, int64_t now_ns);
  // Called (outside the gate's lock) after a logout ended a session, so that WebSockets
  // opened with it are closed at once; set before requests come.
  void on_session_end(std::function<void()> f) { session_end_ = std::move(f); }
  // Re-reads the users file when it changed (stat on each call: cheap); logs a problem once.
  void refresh();

  // For tests and the log: "none", "ok" or "broken: <why>".
  std::string accounts_state();

 private:
  enum class Accounts { none, ok, broken };
  struct Who {
    std::string user;
    Role role = Role::viewer;
    bool token = false;      // came with a Bearer token (no CSRF needed)
    std::string csrf;        // the session's CSRF token
    std::string session_id;  // the cookie, when from a session
    int64_t expires_in_s = 0;
  };
  enum class Auth { anonymous, user, missing, bad_token, unavailable };

  void refresh_locked();
  Auth authenticate(const HttpIn& in, int64_t now_ns, Who& who, bool touch = true);
  bool same_origin(const HttpIn& in) const;
  bool csrf_ok(const HttpIn& in, const Who& who, const std::string& form_field) const;
  Response login_page(const HttpIn& in, int status, const std::string& message);
  Response login(const HttpIn& in, int64_t now_ns);
  Response logout(const HttpIn& in, int64_t now_ns);
  Response session_info(const HttpIn& in, int64_t now_ns);
  Response relay(const HttpIn& in, int64_t now_ns, const std::string& name);
  std::string cookie_flags(const HttpIn& in) const;

  Options opt_;
  const std::vector<Asset>* assets_;
  Control control_;
  std::function<void()> session_end_;
  std::mutex mutex_;  // everything below
  Accounts accounts_ = Accounts::none;
  std::string broken_why_;
  Users users_;
  struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    int64_t mtime_ns = 0, ctime_ns = 0;
    off_t size = -1;
    int err = 0;
    bool operator==(const FileId&) const = default;
  } file_id_;
  bool loaded_once_ = false;
  SessionStore sessions_;
  LoginLimiter limiter_;
  std::string dummy_hash_;  // verified for unknown users, so that they take as long
};

// "a=b; c=d" -> value of `name` ("" when absent).
std::string cookie_value(const std::string& cookie_header, const std::string& name);
// Minimal HTML escaping (& < > " ').
std::string html_escape(const std::string& s);

}  // namespace mp::serve
