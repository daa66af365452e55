#include "serve/auth_gate.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>

#include "common/json.h"
#include "common/log.h"
#include "serve/auth_crypto.h"

namespace mp::serve {
namespace {

const char* kSessionCookie = "meterpipe_session";
const char* kLoginCookie = "meterpipe_login";
const char* kNoAccounts =
    "This meterpipe has no accounts, so the page is read-only. Create one with `meterpipe user "
    "add NAME --role operator --users-file /etc/meterpipe/users` and set users_file under "
    "[serve].";

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Response redirect(const std::string& to) {
  Response r;
  r.status = 303;
  r.content_type = "text/plain; charset=utf-8";
  r.body = "see " + to + "\n";
  r.headers.push_back({"Location", to});
  return r;
}

Response login_required() {
  Response r = json_error(401, "login required", {{"login", "/login"}});
  r.headers.push_back({"WWW-Authenticate", "Bearer realm=\"meterpipe\""});
  return r;
}

std::string form_field(const std::string& body, const std::string& name) {
  auto q = parse_query(body);
  if (!q) return "";
  auto it = q->find(name);
  return it == q->end() ? "" : it->second;
}

bool is_form(const HttpIn& in) {
  return lower(in.header("content-type")).rfind("application/x-www-form-urlencoded", 0) == 0;
}

}  // namespace

std::string HttpIn::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

std::string cookie_value(const std::string& header, const std::string& name) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string::npos) end = header.size();
    size_t b = pos;
    while (b < end && header[b] == ' ') ++b;
    const size_t eq = header.find('=', b);
    if (eq != std::string::npos && eq < end && header.compare(b, eq - b, name) == 0 &&
        eq - b == name.size()) {
      size_t e = end;
      while (e > eq + 1 && header[e - 1] == ' ') --e;
      return header.substr(eq + 1, e - eq - 1);
    }
    pos = end + 1;
  }
  return "";
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

AuthGate::AuthGate(Options o, const std::vector<Asset>* assets, Control control)
    : opt_(std::move(o)),
      assets_(assets),
      control_(std::move(control)),
      sessions_(opt_.sessions),
      limiter_(opt_.limiter) {
  auth::crypto_ready();
  refresh();
}

void AuthGate::refresh() {
  std::lock_guard<std::mutex> lk(mutex_);
  refresh_locked();
}

void AuthGate::refresh_locked() {
  if (opt_.users_file.empty()) {
    accounts_ = Accounts::none;
    return;
  }
  FileId id;
  struct stat st {};
  if (::stat(opt_.users_file.c_str(), &st) == 0) {
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    id.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    id.ctime_ns = int64_t(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    id.size = st.st_size;
  } else {
    id.err = errno;
  }
  if (loaded_once_ && id == file_id_) return;
  file_id_ = id;
  loaded_once_ = true;
  std::string err;
  auto u = load_users_file(opt_.users_file, err);
  if (u) {
    users_ = std::move(*u);
    accounts_ = Accounts::ok;
    broken_why_.clear();
    log::info("accounts: %zu user%s from %s", users_.users.size(),
              users_.users.size() == 1 ? "" : "s", opt_.users_file.c_str());
  } else {
    users_ = Users{};
    accounts_ = Accounts::broken;
    broken_why_ = err;
    log::error("accounts: %s; %s", err.c_str(),
               opt_.loopback ? "the page stays read-only until it is fixed"
                             : "every request but /static/ is refused until it is fixed");
  }
}

std::string AuthGate::accounts_state() {
  std::lock_guard<std::mutex> lk(mutex_);
  refresh_locked();
  switch (accounts_) {
    case Accounts::none:
      return "none";
    case Accounts::ok:
      return "ok";
    default:
      return "broken: " + broken_why_;
  }
}

AuthGate::Auth AuthGate::authenticate(const HttpIn& in, int64_t now_ns, Who& who, bool touch) {
  std::lock_guard<std::mutex> lk(mutex_);
  refresh_locked();
  if (accounts_ != Accounts::ok) return opt_.loopback ? Auth::anonymous : Auth::unavailable;
  const std::string authz = in.header("authorization");
  if (!authz.empty()) {
    if (lower(authz.substr(0, 7)) != "bearer ") return Auth::bad_token;
    const std::string h = auth::token_hash(authz.substr(7));
    const User* found = nullptr;
    for (const auto& u : users_.users)
      for (const auto& t : u.token_hashes)
        if (auth::equal_ct(t, h)) found = &u;
    if (!found) return Auth::bad_token;
    who.user = found->name;
    who.role = found->role;
    who.token = true;
    return Auth::user;
  }
  const std::string id = cookie_value(in.header("cookie"), kSessionCookie);
  if (id.empty()) return Auth::missing;
  const Session* s = sessions_.find(id, now_ns, touch);
  if (!s) return Auth::missing;
  const User* u = users_.find(s->user);
  if (!u || !auth::equal_ct(s->pw_tag, auth::token_hash(u->password_hash))) {
    sessions_.remove(id);  // user deleted or password changed: the session ends
    return Auth::missing;
  }
  who.user = u->name;
  who.role = u->role;
  who.csrf = s->csrf;
  who.session_id = id;
  who.expires_in_s = sessions_.expires_in_s(*s, now_ns);
  return Auth::user;
}

bool AuthGate::same_origin(const HttpIn& in) const {
  const std::string origin = in.header("origin");
  if (origin.empty()) return true;  // not a browser, or a same-origin GET
  const std::string host = in.header("host");
  return !host.empty() && lower(origin) == lower((in.https ? "https://" : "http://") + host);
}

bool AuthGate::csrf_ok(const HttpIn& in, const Who& who, const std::string& form_field) const {
  std::string t = in.header("x-csrf-token");
  if (t.empty()) t = form_field;
  return !who.csrf.empty() && !t.empty() && auth::equal_ct(t, who.csrf);
}

std::string AuthGate::cookie_flags(const HttpIn& in) const {
  return std::string("; HttpOnly; SameSite=Strict") + (in.https ? "; Secure" : "");
}

std::optional<Response> AuthGate::check(const HttpIn& in, int64_t now_ns) {
  const std::string& path = in.path;
  if (path == "/static/login.html") return json_error(404, "not found", {{"path", path}});
  if (path.rfind("/static/", 0) == 0) return std::nullopt;
  if (path == "/login") {
    if (in.method == "POST") return login(in, now_ns);
    if (in.method == "GET" || in.method == "HEAD") return login_page(in, 200, "");
    return json_error(405, "method not allowed", {{"method", in.method}});
  }
  if (path == "/logout") {
    if (in.method == "POST") return logout(in, now_ns);
    return json_error(405, "method not allowed (log out with POST)", {{"method", in.method}});
  }
  if (path == "/api/session") return session_info(in, now_ns);
  const std::string relays = "/api/relays/";
  if (path.rfind(relays, 0) == 0 && path.size() > relays.size() && in.method == "POST")
    return relay(in, now_ns, path.substr(relays.size()));
  Who who;
  const Auth a = authenticate(in, now_ns, who);
  if (path == "/metrics" && opt_.metrics_open) return std::nullopt;
  if (a == Auth::user && who.role != Role::operator_ && path.rfind("/api/export/", 0) == 0)
    return json_error(403, "user " + who.user + " is a viewer: data export needs the operator role",
                      {{"role", role_name(who.role)}});
  switch (a) {
    case Auth::anonymous:
    case Auth::user:
      return std::nullopt;
    case Auth::unavailable: {
      std::lock_guard<std::mutex> lk(mutex_);
      return json_error(503, "accounts unavailable: " + broken_why_);
    }
    case Auth::bad_token: {
      Response r = json_error(401, "invalid token");
      r.headers.push_back(
          {"WWW-Authenticate", "Bearer realm=\"meterpipe\", error=\"invalid_token\""});
      return r;
    }
    case Auth::missing:
      break;
  }
  if (path == "/" || path == "/index.html") return redirect("/login");
  return login_required();
}

bool AuthGate::websocket_allowed(const HttpIn& in, int64_t now_ns, HttpIn* cred) {
  Who who;
  const Auth a = authenticate(in, now_ns, who);
  if (!(a == Auth::anonymous || a == Auth::user) || !same_origin(in)) return false;
  if (cred) {
    *cred = HttpIn{};
    const std::string authz = in.header("authorization");
    if (!authz.empty()) cred->headers["authorization"] = authz;
    if (!who.session_id.empty())
      cred->headers["cookie"] = std::string(kSessionCookie) + "=" + who.session_id;
  }
  return true;
}

bool AuthGate::websocket_still_allowed(const HttpIn& cred, int64_t now_ns) {
  Who who;
  const Auth a = authenticate(cred, now_ns, who, false);
  return a == Auth::anonymous || a == Auth::user;
}

Response AuthGate::login_page(const HttpIn& in, int status, const std::string& message) {
  std::string html;
  if (assets_)
    for (const auto& a : *assets_)
      if (a.path == "/static/login.html") html = std::string(a.data);
  std::string msg = message;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    refresh_locked();
    if (msg.empty() && accounts_ == Accounts::none) msg = kNoAccounts;
    if (msg.empty() && accounts_ == Accounts::broken) msg = "Accounts unavailable: " + broken_why_;
  }
  const std::string token = auth::random_hex(32);
  auto put = [&](const std::string& key, const std::string& value) {
    for (size_t p; (p = html.find(key)) != std::string::npos;) html.replace(p, key.size(), value);
  };
  put("{{csrf}}", token);
  put("{{message}}", html_escape(msg));
  Response r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.body = std::move(html);
  r.headers.push_back({"Set-Cookie", std::string(kLoginCookie) + "=" + token +
                                         "; Path=/login; Max-Age=3600" + cookie_flags(in)});
  r.headers.push_back({"X-Frame-Options", "DENY"});
  r.headers.push_back({"Content-Security-Policy", "frame-ancestors 'none'"});
  return r;
}

Response AuthGate::login(const HttpIn& in, int64_t now_ns) {
  {
    std::lock_guard<std::mutex> lk(mutex_);
    refresh_locked();
    if (accounts_ == Accounts::none) {
      Response r = json_error(403, kNoAccounts);
      return r;
    }
    if (accounts_ == Accounts::broken)
      return json_error(503, "accounts unavailable: " + broken_why_);
  }
  if (!same_origin(in)) return json_error(403, "cross-site login refused");
  const std::string addr = in.remote_addr;
  int64_t wait = 0;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    wait = limiter_.admit(addr, now_ns);
  }
  if (wait > 0) {
    const int64_t s = (wait + 999999999) / 1000000000;
    log::warn("login from %s refused: too many wrong passwords (retry in %lld s)", addr.c_str(),
              (long long)s);
    Response r =
        login_page(in, 429, "Too many failed attempts: try again in " + std::to_string(s) + " s.");
    r.headers.push_back({"Retry-After", std::to_string(s)});
    return r;
  }
  auto form = parse_query(in.body);
  if (!form) return login_page(in, 400, "The form could not be read.");
  const std::string field = (*form)["csrf"];
  const std::string cookie = cookie_value(in.header("cookie"), kLoginCookie);
  if (field.empty() || !auth::equal_ct(field, cookie))
    return login_page(in, 403, "The form expired or came from another site: try again.");
  const std::string name = (*form)["username"];
  std::string hash, tag;
  Role role = Role::viewer;
  bool known = false;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    if (const User* u = users_.find(name)) {
      known = true;
      hash = u->password_hash;
      role = u->role;
    } else {
      if (dummy_hash_.empty()) dummy_hash_ = auth::hash_password(auth::random_hex(16));
      hash = dummy_hash_;
    }
  }
  const bool ok = auth::verify_password(hash, (*form)["password"]) && known;
  if (!ok) {
    int failures = 0;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      limiter_.failed(addr, now_ns);
      failures = limiter_.failures(addr);
    }
    log::warn("login failed for %s from %s (%d failure%s)",
              known ? ("user " + name).c_str() : "an unknown user", addr.c_str(), failures,
              failures == 1 ? "" : "s");
    return login_page(in, 401, "Wrong user name or password.");
  }
  std::string id;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    limiter_.succeeded(addr);
    id = sessions_.create(name, auth::token_hash(hash), now_ns);
  }
  log::info("login: user %s (%s) from %s", name.c_str(), role_name(role), addr.c_str());
  Response r = redirect("/");
  r.headers.push_back(
      {"Set-Cookie", std::string(kSessionCookie) + "=" + id + "; Path=/; Max-Age=" +
                         std::to_string(sessions_.limits().absolute_ns / 1000000000) +
                         cookie_flags(in)});
  r.headers.push_back(
      {"Set-Cookie", std::string(kLoginCookie) + "=; Path=/login; Max-Age=0" + cookie_flags(in)});
  return r;
}

Response AuthGate::logout(const HttpIn& in, int64_t now_ns) {
  Who who;
  const Auth a = authenticate(in, now_ns, who);
  Response r = redirect("/login");
  if (a == Auth::user && !who.session_id.empty()) {
    if (!same_origin(in) || !csrf_ok(in, who, is_form(in) ? form_field(in.body, "csrf") : ""))
      return json_error(403, "CSRF token missing or wrong");
    {
      std::lock_guard<std::mutex> lk(mutex_);
      sessions_.remove(who.session_id);
    }
    log::info("logout: user %s from %s", who.user.c_str(), in.remote_addr.c_str());
    if (session_end_) session_end_();
  }
  r.headers.push_back(
      {"Set-Cookie", std::string(kSessionCookie) + "=; Path=/; Max-Age=0" + cookie_flags(in)});
  return r;
}

Response AuthGate::session_info(const HttpIn& in, int64_t now_ns) {
  Who who;
  const Auth a = authenticate(in, now_ns, who);
  Response r;
  switch (a) {
    case Auth::anonymous:
      r.body = "{\"accounts\":false,\"user\":null,\"role\":\"viewer\",\"can_control\":false}";
      return r;
    case Auth::user:
      r.body = "{\"accounts\":true,\"user\":" + json::quote(who.user) + ",\"role\":\"" +
               role_name(who.role) +
               "\",\"can_control\":" + (who.role == Role::operator_ ? "true" : "false") +
               ",\"csrf\":" + (who.csrf.empty() ? "null" : "\"" + who.csrf + "\"") +
               ",\"expires_in_s\":" + std::to_string(who.expires_in_s) + "}";
      return r;
    case Auth::unavailable: {
      std::lock_guard<std::mutex> lk(mutex_);
      return json_error(503, "accounts unavailable: " + broken_why_);
    }
    case Auth::bad_token:
      return json_error(401, "invalid token");
    default:
      return login_required();
  }
}

Response AuthGate::relay(const HttpIn& in, int64_t now_ns, const std::string& name) {
  Who who;
  const Auth a = authenticate(in, now_ns, who);
  if (a == Auth::anonymous)
    return json_error(403,
                      "relay control needs accounts: set users_file under [serve] and create an "
                      "operator with `meterpipe user add NAME --role operator`");
  if (a == Auth::unavailable) {
    std::lock_guard<std::mutex> lk(mutex_);
    return json_error(503, "accounts unavailable: " + broken_why_);
  }
  if (a == Auth::bad_token) return json_error(401, "invalid token");
  if (a != Auth::user) return login_required();
  const bool form = is_form(in);
  RelayCommand c;
  std::string csrf_field, error;
  const bool parsed = parse_relay_command(in.body, form, c, csrf_field, error);
  if (!who.token && (!same_origin(in) || !csrf_ok(in, who, csrf_field)))
    return json_error(403, "CSRF token missing or wrong");
  if (who.role != Role::operator_)
    return json_error(403,
                      "user " + who.user + " is a viewer: relay control needs the operator role",
                      {{"role", role_name(who.role)}});
  if (!parsed) return json_error(400, error);
  c.relay = name;
  log::info("relay %s: %s%s asked by user %s from %s", c.relay.c_str(), c.mode.c_str(),
            c.for_s ? (" for " + std::to_string(c.for_s) + " s").c_str() : "", who.user.c_str(),
            in.remote_addr.c_str());
  Response r = control_(c, who.user);
  if (form && r.status == 200) return redirect("/");
  return r;
}

}  // namespace mp::serve
