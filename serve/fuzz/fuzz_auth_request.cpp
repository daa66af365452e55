// libFuzzer target: serve's door (serve/auth_gate.h) on arbitrary requests: the Cookie,
// Authorization, X-CSRF-Token, Origin and Content-Type headers, login/logout forms and relay
// control bodies, plus cookie_value() on its own. The input is
//   FLAGS TIME METHOD SP TARGET LF (NAME: VALUE LF)* LF BODY
// FLAGS (low bits) puts what the fuzzer cannot guess into the request: 1 the live session's
// cookie, 2 its CSRF token (X-CSRF-Token), 4 the operator's API token (Authorization), 8 over
// HTTPS. TIME is the request time in seconds after start (sessions expire after 60 s idle).
// Asserted: without a credential nothing but /static/ gets past the gate and no WebSocket
// opens; relay control runs only with a session and its CSRF token, or a token; no answer
// carries a session id, a token, or a stored hash. (The harness's own searches for these
// secrets teach them to the fuzzer, which then writes them into requests: a secret that is
// in the input counts as given, and may be echoed.)
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "common/log.h"
#include "serve/auth_crypto.h"
#include "serve/auth_gate.h"

namespace {

using namespace mp::serve;

constexpr int64_t kS = 1000000000LL;
constexpr int64_t kBase = 1000 * kS;
const char* kPassword = "fuzz-operator-password";
const char* kInternal = "198.51.100.1";  // where the harness logs in from (not the fuzzer)

void require(bool ok) {
  if (!ok) std::abort();
}

// An Argon2id hash with the smallest cost libsodium allows: logins in the harness stay fast.
std::string cheap_hash(const std::string& pw) {
  char out[crypto_pwhash_STRBYTES];
  require(crypto_pwhash_str_alg(out, pw.data(), pw.size(), crypto_pwhash_OPSLIMIT_MIN,
                                crypto_pwhash_MEMLIMIT_MIN, crypto_pwhash_ALG_ARGON2ID13) == 0);
  return out;
}

const std::vector<Asset>& assets() {
  static const std::vector<Asset> a{
      {"/static/login.html", "text/html", "<input name=csrf value=\"{{csrf}}\">{{message}}"}};
  return a;
}

std::string set_cookie(const Response& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == "Set-Cookie" && v.rfind(name + "=", 0) == 0)
      return v.substr(name.size() + 1, v.find(';') - name.size() - 1);
  return "";
}

struct Harness {
  std::string dir, pw_hash, token, token_hash, sid, csrf;
  bool control_allowed = false;
  std::unique_ptr<AuthGate> gate;

  Harness() {
    mp::log::set_level(mp::log::Level::error);
    require(auth::crypto_ready());
    char t[] = "/tmp/mp_fuzz_auth_XXXXXX";
    require(mkdtemp(t));
    dir = t;
    pw_hash = cheap_hash(kPassword);
    token = auth::new_token();
    token_hash = auth::token_hash(token);
    const std::string file = dir + "/users";
    std::ofstream(file) << "olga:operator:" << pw_hash << ":" << token_hash
                        << "\nvic:viewer:" << cheap_hash("fuzz-viewer-password") << ":\n";
    chmod(file.c_str(), 0600);
    AuthGate::Options o;
    o.users_file = file;
    o.loopback = false;
    o.sessions = {60 * kS, 200 * kS, 16};
    gate =
        std::make_unique<AuthGate>(o, &assets(), [this](const RelayCommand& c, const std::string&) {
          require(control_allowed);
          return relay_control_response(c, std::string("{\"ok\":true}"), "{\"name\":\"boiler\"}");
        });
    require(gate->accounts_state() == "ok");
  }
  ~Harness() { std::system(("rm -rf " + dir).c_str()); }

  bool session_alive(int64_t now) {
    if (sid.empty()) return false;
    HttpIn cred;
    cred.headers["cookie"] = "meterpipe_session=" + sid;
    return gate->websocket_still_allowed(cred, now);
  }

  // Logs olga in (from kInternal) when the session the fuzzer may use has ended.
  void ensure_session(int64_t now) {
    if (session_alive(now)) return;
    HttpIn page;
    page.method = "GET";
    page.path = "/login";
    page.remote_addr = kInternal;
    const std::string form = set_cookie(*gate->check(page, now), "meterpipe_login");
    HttpIn in = page;
    in.method = "POST";
    in.body = "username=olga&password=" + std::string(kPassword) + "&csrf=" + form;
    in.headers["cookie"] = "meterpipe_login=" + form;
    in.headers["content-type"] = "application/x-www-form-urlencoded";
    const Response r = *gate->check(in, now);
    require(r.status == 303);
    sid = set_cookie(r, "meterpipe_session");
    HttpIn info = page;
    info.path = "/api/session";
    info.headers["cookie"] = "meterpipe_session=" + sid;
    const std::string body = gate->check(info, now)->body;
    const auto p = body.find("\"csrf\":\"");
    require(p != std::string::npos);
    csrf = body.substr(p + 8, 64);
  }
};

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return s;
}

// METHOD SP TARGET LF headers LF body (see the top); false when there is no first line.
bool parse_request(const std::string& text, HttpIn& in) {
  size_t eol = text.find('\n');
  if (eol == std::string::npos) return false;
  const std::string first = text.substr(0, eol);
  const size_t sp = first.find(' ');
  in.method = first.substr(0, sp);
  const std::string target = sp == std::string::npos ? "" : first.substr(sp + 1);
  const size_t q = target.find('?');
  in.path = target.substr(0, q);
  if (q != std::string::npos) in.query = target.substr(q + 1);
  size_t pos = eol + 1;
  while (pos < text.size()) {
    eol = text.find('\n', pos);
    const std::string line =
        text.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
    pos = eol == std::string::npos ? text.size() : eol + 1;
    if (line.empty()) break;
    const size_t colon = line.find(':');
    std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.erase(0, 1);
    in.headers[lower(line.substr(0, colon))] = value;
  }
  in.body = text.substr(pos);
  return true;
}

bool carries(const Response& r, const std::string& secret) {
  if (secret.empty()) return false;
  if (r.body.find(secret) != std::string::npos) return true;
  for (const auto& [k, v] : r.headers)
    if (v.find(secret) != std::string::npos) return true;
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness h;
  if (size < 2) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 2, size - 2);
  (void)cookie_value(text, "meterpipe_session");
  const std::string v = cookie_value(text, text.substr(0, text.find('=')));
  require(v.size() <= text.size() && v.find(';') == std::string::npos);

  const unsigned flags = data[0] & 0x0f;
  const int64_t now = kBase + int64_t(data[1]) * kS;
  HttpIn in;
  if (!parse_request(text, in)) return 0;
  in.remote_addr = "192.0.2.7";
  in.https = flags & 8;
  bool session = false;
  if (flags & 1) {
    h.ensure_session(now);
    session = true;
    const std::string c = in.header("cookie");
    in.headers["cookie"] = (c.empty() ? "" : c + "; ") + "meterpipe_session=" + h.sid;
  }
  if (flags & 2 && !h.csrf.empty()) in.headers["x-csrf-token"] = h.csrf;
  if (flags & 4) in.headers["authorization"] = "Bearer " + h.token;
  auto given = [&](const std::string& secret) {
    return !secret.empty() && text.find(secret) != std::string::npos;
  };
  const bool token = (flags & 4) || given(h.token);
  session = session || given(h.sid);
  const bool credential = session || token;
  h.control_allowed = token || (session && ((flags & 2) || given(h.csrf)));

  const auto r = h.gate->check(in, now);
  if (!credential && in.path.rfind("/static/", 0) != 0) require(r.has_value());
  if (r) {
    require(r->status >= 200 && r->status <= 599);
    for (const std::string& s : {h.sid, h.token, h.token_hash, h.pw_hash})
      require(given(s) || !carries(*r, s));
  }
  HttpIn cred;
  const bool ws = h.gate->websocket_allowed(in, now, &cred);
  if (!credential) require(!ws);
  if (ws) (void)h.gate->websocket_still_allowed(cred, now + kS);
  h.control_allowed = false;
  return 0;
}
