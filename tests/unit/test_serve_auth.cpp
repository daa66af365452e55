// Unit tests of serve's accounts (docs/ARCHITECTURE.md, "Accounts"): password hashing and
// tokens (serve/auth_crypto.h), the users file (serve/users.h), sessions and their expiry
// (serve/sessions.h), the login limiter (serve/login_limiter.h), relay control bodies
// (serve/relay_control.h), the gate's decisions (serve/auth_gate.h) with the time given
// explicitly, and the [serve] keys of the config.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "common/fs.h"
#include "config/config.h"
#include "serve/auth_crypto.h"
#include "serve/auth_gate.h"
#include "serve/login_limiter.h"
#include "serve/relay_control.h"
#include "serve/sessions.h"
#include "serve/users.h"

using namespace mp::serve;

namespace {

constexpr int64_t kS = 1000000000LL;

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/mp_auth_XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { std::system(("rm -rf " + path).c_str()); }
  std::string write(const std::string& name, const std::string& text, mode_t mode) {
    const std::string p = path + "/" + name;
    std::ofstream(p) << text;
    chmod(p.c_str(), mode);
    return p;
  }
};

// One hash per test program: Argon2id is slow on purpose.
const std::string& op_hash() {
  static const std::string h = auth::hash_password("correct horse battery");
  return h;
}
const std::string& viewer_hash() {
  static const std::string h = auth::hash_password("viewer staple battery");
  return h;
}

std::string users_text(const std::string& token_hash = "") {
  return "# test\nolga:operator:" + op_hash() + ":" + token_hash + "\nvic:viewer:" + viewer_hash() +
         ":\n";
}

HttpIn request(const std::string& method, const std::string& path, const std::string& body = "") {
  HttpIn in;
  in.method = method;
  in.path = path;
  in.body = body;
  in.remote_addr = "192.0.2.7";
  in.headers["host"] = "pi.lan:8080";
  return in;
}

std::string header(const Response& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

std::string cookie_of(const Response& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == "Set-Cookie" && v.rfind(name + "=", 0) == 0)
      return v.substr(name.size() + 1, v.find(';') - name.size() - 1);
  return "";
}

// The login form's CSRF token and cookie, then a POST; returns the answer.
Response log_in(AuthGate& g, const std::string& user, const std::string& pw, int64_t now,
                const std::string& addr = "192.0.2.7") {
  Response page = *g.check(request("GET", "/login"), now);
  const std::string token = cookie_of(page, "meterpipe_login");
  HttpIn in = request("POST", "/login", "username=" + user + "&password=" + pw + "&csrf=" + token);
  in.headers["cookie"] = "meterpipe_login=" + token;
  in.headers["content-type"] = "application/x-www-form-urlencoded";
  in.remote_addr = addr;
  return *g.check(in, now);
}

std::string csrf_of(AuthGate& g, const std::string& session, int64_t now) {
  HttpIn in = request("GET", "/api/session");
  in.headers["cookie"] = "meterpipe_session=" + session;
  const Response r = *g.check(in, now);
  const auto p = r.body.find("\"csrf\":\"");
  return p == std::string::npos ? "" : r.body.substr(p + 8, 64);
}

const std::vector<Asset>& assets() {
  static const std::vector<Asset> a{
      {"/static/login.html", "text/html", "<form><input name=csrf value=\"{{csrf}}\">{{message}}"}};
  return a;
}

}  // namespace

TEST_CASE("passwords: Argon2id hashes verify, others do not; weak ones are named") {
  const std::string& h = op_hash();
  REQUIRE(h.rfind("$argon2id$", 0) == 0);
  CHECK(h.find("m=19456,t=2,p=1") != std::string::npos);
  CHECK(auth::verify_password(h, "correct horse battery"));
  CHECK_FALSE(auth::verify_password(h, "correct horse batterx"));
  CHECK_FALSE(auth::verify_password(h, ""));
  CHECK_FALSE(auth::verify_password("plain", "plain"));
  CHECK(auth::weak_password("olga", "short") == "shorter than 10 characters");
  CHECK(auth::weak_password("olga", "xxolgaxxxxxx") == "contains the user name");
  CHECK(auth::weak_password("olga", "aaaaaaaaaaaa") == "one character repeated");
  CHECK(auth::weak_password("olga", "abcdefghijkl") == "a run of consecutive characters");
  CHECK(auth::weak_password("olga", "1234567890") == "a well-known password");
  CHECK(auth::weak_password("olga", "Password123") == "a well-known password");
  CHECK(auth::weak_password("olga", "correct horse battery") == "");
}

TEST_CASE("tokens: random, stored as BLAKE2b, compared in constant time") {
  const std::string a = auth::new_token(), b = auth::new_token();
  CHECK(a.size() == 68);
  CHECK(a.rfind("mpt_", 0) == 0);
  CHECK(a != b);
  CHECK(auth::token_hash(a).size() == 64);
  CHECK(auth::token_hash(a) == auth::token_hash(a));
  CHECK(auth::token_hash(a) != auth::token_hash(b));
  CHECK(auth::equal_ct("abc", "abc"));
  CHECK_FALSE(auth::equal_ct("abc", "abd"));
  CHECK_FALSE(auth::equal_ct("abc", "abcd"));
}

TEST_CASE("users file: round trip, FILE:LINE errors, mode, atomic save keeps the mode") {
  TempDir d;
  std::string err;
  auto u = parse_users(users_text(std::string(64, 'a')), "u", err);
  REQUIRE(u);
  CHECK(u->users.size() == 2);
  CHECK(u->find("olga")->role == Role::operator_);
  CHECK(u->find("olga")->token_hashes.size() == 1);
  auto again = parse_users(format_users(*u), "u", err);
  REQUIRE(again);
  CHECK(format_users(*again) == format_users(*u));

  struct Bad {
    std::string text, want;
  } bad[] = {
      {"\nolga:operator\n", "f:2: expected NAME:ROLE:PASSWORD_HASH:TOKENS"},
      {"olga:admin:" + op_hash() + ":\n", "f:1: user olga: role must be viewer or operator"},
      {"olga:viewer:5f4dcc3b5aa765d61d8327deb882cf99:\n", "f:1: user olga: the password hash is"},
      {"olga:viewer:" + op_hash() + ":xyz\n", "f:1: user olga: a token hash is not 64 hex"},
      {"#\nolga:viewer:" + op_hash() + ":\nolga:viewer:" + op_hash() + ":\n",
       "f:3: user olga listed twice"},
      {"bad name:viewer:" + op_hash() + ":\n", "f:1: bad user name"},
  };
  for (const auto& b : bad) {
    CAPTURE(b.text);
    CHECK_FALSE(parse_users(b.text, "f", err));
    CHECK(err.rfind(b.want, 0) == 0);
  }

  const std::string open = d.write("open", users_text(), 0644);
  CHECK_FALSE(load_users_file(open, err));
  CHECK(err.find("mode 0644") != std::string::npos);
  CHECK(err.find("chmod 600") != std::string::npos);
  CHECK_FALSE(load_users_file(d.path + "/absent", err));
  CHECK(err.find("No such file") != std::string::npos);
  const std::string damaged = d.write("damaged", users_text() + "eve:viewer\n", 0600);
  CHECK_FALSE(load_users_file(damaged, err));
  CHECK(err == damaged + ":4: expected NAME:ROLE:PASSWORD_HASH:TOKENS (4 fields, 2 found)");

  const std::string ok = d.write("ok", users_text(), 0640);
  REQUIRE(load_users_file(ok, err));
  u->users.pop_back();
  REQUIRE(save_users_file(ok, *u, err));
  struct stat st {};
  REQUIRE(stat(ok.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  auto back = load_users_file(ok, err);
  REQUIRE(back);
  CHECK(back->users.size() == 1);
  const std::string fresh = d.path + "/fresh";
  REQUIRE(save_users_file(fresh, *u, err));
  REQUIRE(stat(fresh.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("sessions: idle and absolute expiry, eviction of the oldest") {
  SessionStore s({10 * kS, 60 * kS, 3});
  const std::string id = s.create("olga", "tag", 0);
  CHECK(id.size() == 64);
  const Session* x = s.find(id, 9 * kS);
  REQUIRE(x);
  CHECK(x->user == "olga");
  CHECK(x->csrf.size() == 64);
  CHECK(s.expires_in_s(*x, 9 * kS) == 10);
  CHECK(s.find(id, 18 * kS));  // each request moves the idle limit
  CHECK(s.find(id, 27 * kS));
  CHECK_FALSE(s.find(id, 37 * kS));  // idle for 10 s
  CHECK_FALSE(s.find(id, 38 * kS));  // and gone
  const std::string id2 = s.create("olga", "tag", 100 * kS);
  for (int64_t t = 105; t < 160; t += 5) CHECK(s.find(id2, t * kS));
  CHECK_FALSE(s.find(id2, 160 * kS));  // 60 s after login, however busy
  const std::string a = s.create("a", "", 200 * kS), b = s.create("b", "", 201 * kS),
                    c = s.create("c", "", 202 * kS), d = s.create("d", "", 203 * kS);
  CHECK(s.size() == 3);
  CHECK_FALSE(s.find(a, 204 * kS));
  CHECK(s.find(d, 204 * kS));
  CHECK_FALSE(s.find("nonsense", 204 * kS));
  s.remove(d);
  CHECK_FALSE(s.find(d, 204 * kS));
}

TEST_CASE("login limiter: free attempts, doubling backoff, lock, other addresses unaffected") {
  LoginLimiter l({});
  const std::string a = "192.0.2.1", b = "192.0.2.2";
  int64_t t = 0;
  for (int i = 0; i < 5; ++i) {
    CHECK(l.admit(a, t) == 0);
    l.failed(a, t);
  }
  CHECK(l.admit(a, t) == 1 * kS);  // refused, and counted
  CHECK(l.failures(a) == 6);
  CHECK(l.admit(b, t) == 0);  // another address
  t += 1 * kS;
  CHECK(l.admit(a, t) == 0);
  l.failed(a, t);  // 7 failures: 2^(7-5) = 4 s
  CHECK(l.admit(a, t + 3 * kS) == 1 * kS);
  for (int i = 0; i < 12; ++i) l.admit(a, t + 3 * kS);
  CHECK(l.failures(a) == 20);
  CHECK(l.locked(a, t + 3 * kS));
  CHECK(l.admit(a, t + 10 * 60 * kS) > 0);  // still locked after 10 min
  CHECK(l.admit(b, t + 10 * 60 * kS) == 0);
  CHECK(l.admit(a, t + 20 * 60 * kS) == 0);  // 15 min lock over: afresh
  CHECK(l.failures(a) == 0);
  l.failed(b, 0);
  l.succeeded(b);
  CHECK(l.failures(b) == 0);
  LoginLimiter small({.max_addresses = 2});
  small.failed("x", 1);
  small.failed("y", 2);
  small.failed("z", 3);
  CHECK(small.failures("x") == 0);  // the stalest went
  CHECK(small.failures("z") == 1);
}

TEST_CASE("relay control bodies, the control text and actuate's answers") {
  RelayCommand c;
  std::string csrf, err;
  REQUIRE(parse_relay_command("{\"mode\":\"on\",\"for_s\":3600}", false, c, csrf, err));
  CHECK(c.mode == "on");
  CHECK(c.for_s == 3600);
  c.relay = "boiler";
  CHECK(relay_control_text(c) == "relay boiler on 3600");
  RelayCommand f;
  REQUIRE(parse_relay_command("mode=off&for_s=600&csrf=abc", true, f, csrf, err));
  CHECK(f.mode == "off");
  CHECK(csrf == "abc");
  for (const char* body : {"{\"mode\":\"maybe\"}", "{\"mode\":\"auto\",\"for_s\":60}", "{}",
                           "{\"mode\":\"on\",\"for_s\":-1}", "{\"mode\":\"on\",\"for_s\":1.5}",
                           "{\"mode\":\"on\",\"x\":1}", "[1", "{\"mode\":\"on\",\"for_s\":1e12}"}) {
    RelayCommand x;
    CAPTURE(body);
    CHECK_FALSE(parse_relay_command(body, false, x, csrf, err));
    CHECK_FALSE(err.empty());
  }
  const std::string status =
      "{\"relays\":[{\"name\":\"pump\",\"on\":false},{\"name\":\"boiler\",\"on\":true,"
      "\"override\":\"on\",\"override_left_s\":3600}]}";
  const std::string entry = relay_status_entry(status, "boiler");
  CHECK(entry.find("\"override_left_s\":3600") != std::string::npos);
  CHECK(relay_status_entry(status, "nope") == "");
  CHECK(relay_status_entry("junk", "boiler") == "");
  Response ok = relay_control_response(c, std::string("{\"ok\":true}"), entry);
  CHECK(ok.status == 200);
  CHECK(ok.body.find("\"status\":{") != std::string::npos);
  CHECK(
      relay_control_response(c, std::string("{\"error\":\"no relay named boiler\"}"), "").status ==
      404);
  Response refused = relay_control_response(c, std::string("{\"error\":\"failsafe\"}"), "");
  CHECK(refused.status == 409);
  CHECK(refused.body.find("failsafe") != std::string::npos);
  CHECK(relay_control_response(c, std::nullopt, "").status == 503);
  CHECK(relay_control_event(c, "olga", entry).find("\"type\":\"relay_control\"") == 1);
}

TEST_CASE("cookies and HTML escaping") {
  CHECK(cookie_value("a=1; meterpipe_session=abc; b=2", "meterpipe_session") == "abc");
  CHECK(cookie_value("xmeterpipe_session=abc", "meterpipe_session") == "");
  CHECK(cookie_value("", "a") == "");
  CHECK(html_escape("<a href=\"x\">&'") == "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
}

TEST_CASE("gate: login, roles, CSRF, tokens, logout, expiry") {
  TempDir d;
  const std::string token = auth::new_token();
  const std::string file = d.write("users", users_text(auth::token_hash(token)), 0600);
  std::vector<std::string> switched;
  AuthGate::Options o;
  o.users_file = file;
  o.loopback = false;
  o.sessions = {600 * kS, 3600 * kS, 16};
  AuthGate g(o, &assets(), [&](const RelayCommand& c, const std::string& user) {
    switched.push_back(user + " " + relay_control_text(c));
    return relay_control_response(c, std::string("{\"ok\":true}"), "{\"name\":\"boiler\"}");
  });
  CHECK(g.accounts_state() == "ok");
  int64_t t = 1000 * kS;

  // without credentials: the page sends to /login, the API says 401, static files are open
  CHECK(g.check(request("GET", "/"), t)->status == 303);
  CHECK(g.check(request("GET", "/api/last"), t)->status == 401);
  CHECK(g.check(request("GET", "/metrics"), t)->status == 401);
  CHECK_FALSE(g.check(request("GET", "/static/app.js"), t));
  CHECK(g.check(request("GET", "/static/login.html"), t)->status == 404);
  CHECK_FALSE(g.websocket_allowed(request("GET", "/ws"), t));

  // the login form: its CSRF token is in the page and in a cookie
  Response page = *g.check(request("GET", "/login"), t);
  CHECK(page.status == 200);
  const std::string form_token = cookie_of(page, "meterpipe_login");
  CHECK(page.body.find(form_token) != std::string::npos);
  CHECK(header(page, "Set-Cookie").find("HttpOnly; SameSite=Strict") != std::string::npos);
  HttpIn no_csrf = request("POST", "/login", "username=olga&password=correct+horse+battery");
  CHECK(g.check(no_csrf, t)->status == 403);

  CHECK(log_in(g, "olga", "wrong+password", t).status == 401);
  CHECK(log_in(g, "nobody", "wrong+password", t).status == 401);
  Response in = log_in(g, "olga", "correct+horse+battery", t);
  REQUIRE(in.status == 303);
  const std::string sid = cookie_of(in, "meterpipe_session");
  CHECK(sid.size() == 64);
  const std::string set = header(in, "Set-Cookie");
  CHECK(set.find("HttpOnly") != std::string::npos);
  CHECK(set.find("SameSite=Strict") != std::string::npos);
  CHECK(set.find("Secure") == std::string::npos);  // plain HTTP here

  HttpIn get = request("GET", "/api/last");
  get.headers["cookie"] = "meterpipe_session=" + sid;
  CHECK_FALSE(g.check(get, t));
  CHECK(g.websocket_allowed(get, t));
  // a WebSocket keeps what it came with, to be closed when that login ends
  int ended = 0;
  g.on_session_end([&] { ++ended; });
  HttpIn ws_cred;
  REQUIRE(g.websocket_allowed(get, t, &ws_cred));
  CHECK(ws_cred.header("cookie") == "meterpipe_session=" + sid);
  CHECK(g.websocket_still_allowed(ws_cred, t + kS));
  const std::string csrf = csrf_of(g, sid, t);
  CHECK(csrf.size() == 64);

  // relay control: CSRF token needed, wrong or cross-site refused
  HttpIn post = request("POST", "/api/relays/boiler", "{\"mode\":\"on\",\"for_s\":600}");
  post.headers["cookie"] = "meterpipe_session=" + sid;
  CHECK(g.check(post, t)->status == 403);
  post.headers["x-csrf-token"] = std::string(64, '0');
  CHECK(g.check(post, t)->status == 403);
  post.headers["x-csrf-token"] = csrf;
  post.headers["origin"] = "http://evil.example";
  CHECK(g.check(post, t)->status == 403);
  CHECK(switched.empty());
  post.headers["origin"] = "http://pi.lan:8080";
  Response done = *g.check(post, t);
  CHECK(done.status == 200);
  REQUIRE(switched.size() == 1);
  CHECK(switched[0] == "olga relay boiler on 600");

  // a viewer may look, not switch
  Response vin = log_in(g, "vic", "viewer+staple+battery", t);
  REQUIRE(vin.status == 303);
  const std::string vsid = cookie_of(vin, "meterpipe_session");
  HttpIn vpost = request("POST", "/api/relays/boiler", "{\"mode\":\"off\"}");
  vpost.headers["cookie"] = "meterpipe_session=" + vsid;
  vpost.headers["x-csrf-token"] = csrf_of(g, vsid, t);
  CHECK(g.check(vpost, t)->status == 403);
  CHECK(switched.size() == 1);

  // tokens: no CSRF needed (not sent by browsers on their own); a wrong one is 401
  HttpIn tpost = request("POST", "/api/relays/boiler", "{\"mode\":\"auto\"}");
  tpost.headers["authorization"] = "Bearer " + token;
  CHECK(g.check(tpost, t)->status == 200);
  CHECK(switched.back() == "olga relay boiler auto");
  HttpIn tws = request("GET", "/ws"), tws_cred;
  tws.headers["authorization"] = "Bearer " + token;
  CHECK(g.websocket_allowed(tws, t, &tws_cred));
  CHECK(g.websocket_still_allowed(tws_cred, t + 7200 * kS));  // tokens do not expire
  tpost.headers["authorization"] = "Bearer " + auth::new_token();
  CHECK(g.check(tpost, t)->status == 401);
  HttpIn bad_ws = tpost;
  bad_ws.headers["authorization"] = "Bearer " + auth::new_token();
  CHECK_FALSE(g.websocket_allowed(bad_ws, t, &tws_cred));

  // logout: CSRF needed; then the session is gone
  HttpIn out = request("POST", "/logout", "csrf=" + csrf);
  out.headers["cookie"] = "meterpipe_session=" + sid;
  out.headers["content-type"] = "application/x-www-form-urlencoded";
  HttpIn out_bad = out;
  out_bad.body = "csrf=nope";
  CHECK(g.check(out_bad, t)->status == 403);
  Response bye = *g.check(out, t);
  CHECK(bye.status == 303);
  CHECK(header(bye, "Set-Cookie").find("Max-Age=0") != std::string::npos);
  CHECK(g.check(get, t)->status == 401);
  CHECK(ended == 1);  // the server closes the session's WebSockets at once
  CHECK_FALSE(g.websocket_still_allowed(ws_cred, t));

  // idle expiry of the viewer's session
  HttpIn vget = request("GET", "/api/last");
  vget.headers["cookie"] = "meterpipe_session=" + vsid;
  HttpIn vws_cred;
  REQUIRE(g.websocket_allowed(vget, t, &vws_cred));
  CHECK_FALSE(g.check(vget, t + 599 * kS));
  // an open WebSocket is no activity: asking about it does not keep the session alive
  CHECK(g.websocket_still_allowed(vws_cred, t + 1000 * kS));
  CHECK(g.check(vget, t + 1199 * kS)->status == 401);
  CHECK_FALSE(g.websocket_still_allowed(vws_cred, t + 1199 * kS));

  // over HTTPS the cookie is Secure
  HttpIn hs = request("GET", "/login");
  hs.https = true;
  CHECK(header(*g.check(hs, t), "Set-Cookie").find("; Secure") != std::string::npos);
}

TEST_CASE("gate: a changed password or a deleted user ends sessions; the file is re-read") {
  TempDir d;
  const std::string file = d.write("users", users_text(), 0600);
  AuthGate::Options o;
  o.users_file = file;
  AuthGate g(o, &assets(), nullptr);
  const int64_t t = 10 * kS;
  Response in = log_in(g, "vic", "viewer+staple+battery", t);
  REQUIRE(in.status == 303);
  HttpIn get = request("GET", "/api/status");
  get.headers["cookie"] = "meterpipe_session=" + cookie_of(in, "meterpipe_session");
  CHECK_FALSE(g.check(get, t));
  HttpIn cred;
  REQUIRE(g.websocket_allowed(get, t, &cred));
  std::string err;
  auto u = load_users_file(file, err);
  REQUIRE(u);
  u->find("vic")->password_hash = op_hash();
  REQUIRE(save_users_file(file, *u, err));
  CHECK_FALSE(g.websocket_still_allowed(cred, t));  // found without a request
  CHECK(g.check(get, t)->status == 401);
}

TEST_CASE("gate: no accounts or a broken users file") {
  TempDir d;
  AuthGate::Options none;
  AuthGate open(none, &assets(), nullptr);
  CHECK(open.accounts_state() == "none");
  CHECK_FALSE(open.check(request("GET", "/api/last"), 0));
  CHECK_FALSE(open.check(request("GET", "/"), 0));
  HttpIn anon;
  CHECK(open.websocket_allowed(request("GET", "/ws"), 0, &anon));
  CHECK(open.websocket_still_allowed(anon, 1000 * kS));
  Response r = *open.check(request("POST", "/api/relays/boiler", "{\"mode\":\"on\"}"), 0);
  CHECK(r.status == 403);
  CHECK(r.body.find("meterpipe user add") != std::string::npos);
  CHECK(open.check(request("GET", "/api/session"), 0)->body.find("\"accounts\":false") !=
        std::string::npos);

  const std::string file = d.write("users", users_text() + "broken line\n", 0600);
  AuthGate::Options lo;
  lo.users_file = file;
  lo.loopback = true;
  AuthGate local(lo, &assets(), nullptr);
  CHECK(local.accounts_state() ==
        "broken: " + file + ":4: expected NAME:ROLE:PASSWORD_HASH:TOKENS (4 fields, 1 found)");
  CHECK_FALSE(local.check(request("GET", "/api/last"), 0));  // read-only, as without accounts
  CHECK(local.check(request("POST", "/api/relays/boiler", "{\"mode\":\"on\"}"), 0)->status == 403);

  AuthGate::Options lan = lo;
  lan.loopback = false;
  AuthGate far(lan, &assets(), nullptr);
  Response refused = *far.check(request("GET", "/api/last"), 0);
  CHECK(refused.status == 503);
  CHECK(refused.body.find(":4:") != std::string::npos);
  CHECK_FALSE(far.websocket_allowed(request("GET", "/ws"), 0));
  // fixed: accounts work without a restart
  d.write("users", users_text(), 0600);
  CHECK(far.accounts_state() == "ok");
  chmod(file.c_str(), 0644);
  CHECK(far.accounts_state().find("mode 0644") != std::string::npos);
}

TEST_CASE("config: [serve] accounts and HTTPS keys") {
  using mp::config::load_string;
  TempDir d;
  auto has = [](const mp::config::Result& r, const std::string& key, const std::string& text) {
    for (const auto& e : r.errors)
      if (e.key == key && e.message.find(text) != std::string::npos) return true;
    return false;
  };
  auto lan = load_string("[serve]\nenabled = true\nlisten = \"0.0.0.0:8080\"\n", "c.toml");
  CHECK(has(lan, "serve.listen", "meterpipe user add"));
  CHECK(lan.errors.at(0).line == 3);
  auto lan_ok = load_string(
      "[serve]\nenabled = true\nlisten = \"0.0.0.0:8080\"\nusers_file = \"/etc/meterpipe/users\"\n"
      "session_idle_s = 600\nmetrics_open = true\n",
      "c.toml");
  REQUIRE(lan_ok.config);
  CHECK(lan_ok.config->serve.auth.users_file == "/etc/meterpipe/users");
  CHECK(lan_ok.config->serve.auth.session_idle_s == 600);
  CHECK(lan_ok.config->serve.auth.metrics_open);
  CHECK(load_string("[serve]\nenabled = true\nlisten = \"127.0.0.1:8080\"\n", "c.toml").config);
  CHECK(has(load_string("[serve]\npassword = \"x\"\n", "c.toml"), "serve.password",
            "secrets are not kept"));
  const std::string cert = d.write("c.pem", "x", 0644), key = d.write("k.pem", "x", 0644);
  auto tls = load_string(
      "[serve]\nenabled = true\ntls_cert_file = \"" + cert + "\"\ntls_key_file = \"" + key + "\"\n",
      "c.toml");
  CHECK(has(tls, "serve.tls_key_file", "mode 0644"));
  chmod(key.c_str(), 0600);
  CHECK(load_string("[serve]\nenabled = true\ntls_cert_file = \"" + cert + "\"\ntls_key_file = \"" +
                        key + "\"\n",
                    "c.toml")
            .config);
  CHECK(has(load_string("[serve]\ntls_cert_file = \"" + cert + "\"\n", "c.toml"),
            "serve.tls_key_file", "go together"));
  CHECK(mp::config::loopback_listen("127.0.0.1:1"));
  CHECK(mp::config::loopback_listen("[::1]:1"));
  CHECK_FALSE(mp::config::loopback_listen("192.168.1.2:1"));
  CHECK_FALSE(mp::config::loopback_listen("[::]:1"));
}

TEST_CASE("garbage in: the parsers of untrusted input refuse it without crashing") {
  std::mt19937 rng(20);
  const std::string alphabet = "{}[]\":,=&%+;$ \n\r\t\\abcdefmnoprstuvwxyz0123456789-_.\x01\xff";
  const std::string seeds[] = {"{\"mode\":\"on\",\"for_s\":3600}", "mode=off&for_s=60&csrf=ab",
                               users_text(), "a=1; meterpipe_session=x; b=%zz"};
  size_t accepted = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string s = seeds[i % 4];
    const int edits = 1 + int(rng() % 8);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const size_t pos = rng() % s.size();
      switch (rng() % 3) {
        case 0:
          s[pos] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          s.insert(pos, 1, alphabet[rng() % alphabet.size()]);
          break;
        default:
          s.erase(pos, 1 + rng() % 4);
      }
    }
    RelayCommand c;
    std::string csrf, err;
    accepted += parse_relay_command(s, i % 2, c, csrf, err);
    if (c.mode.size()) CHECK((c.mode == "on" || c.mode == "off" || c.mode == "auto"));
    CHECK(c.for_s >= 0);
    CHECK(c.for_s <= 366 * 86400);
    accepted += parse_users(s, "f", err).has_value();
    (void)cookie_value(s, "meterpipe_session");
    (void)html_escape(s);
  }
  CHECK(accepted > 0);  // some mutations stay valid: the loop reached the deep paths
}
