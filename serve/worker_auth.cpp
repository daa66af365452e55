#include "serve/worker_auth.h"

#include <civetweb.h>
#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <cctype>

#include "bus/control.h"
#include "common/log.h"
#include "serve/worker_http.h"

namespace mp::serve {
namespace {

constexpr long long kMaxBody = 8192;

// OpenSSL as civetweb loaded it (dlopen at mg_start, only when HTTPS is on): serve does not
// link it, so the worker without TLS maps none of it (RssAnon budget, test_e2e_serve_ws).
struct Ssl {
  decltype(&SSL_CTX_use_certificate_chain_file) chain = nullptr;
  decltype(&SSL_CTX_use_PrivateKey_file) key = nullptr;
  decltype(&SSL_CTX_check_private_key) check = nullptr;
  decltype(&SSL_CTX_ctrl) ctrl = nullptr;
  decltype(&ERR_get_error) err = nullptr;
  decltype(&ERR_error_string_n) err_text = nullptr;
};

void* loaded(const char* a, const char* b) {
  void* h = dlopen(a, RTLD_NOW | RTLD_NOLOAD);
  return h ? h : dlopen(b, RTLD_NOW | RTLD_NOLOAD);
}

bool find_ssl(Ssl& s) {
  void* ssl = loaded("libssl.so", "libssl.so.3");
  void* crypto = loaded("libcrypto.so", "libcrypto.so.3");
  if (!ssl || !crypto) return false;
  s.chain = reinterpret_cast<decltype(s.chain)>(dlsym(ssl, "SSL_CTX_use_certificate_chain_file"));
  s.key = reinterpret_cast<decltype(s.key)>(dlsym(ssl, "SSL_CTX_use_PrivateKey_file"));
  s.check = reinterpret_cast<decltype(s.check)>(dlsym(ssl, "SSL_CTX_check_private_key"));
  s.ctrl = reinterpret_cast<decltype(s.ctrl)>(dlsym(ssl, "SSL_CTX_ctrl"));
  s.err = reinterpret_cast<decltype(s.err)>(dlsym(crypto, "ERR_get_error"));
  s.err_text = reinterpret_cast<decltype(s.err_text)>(dlsym(crypto, "ERR_error_string_n"));
  return s.chain && s.key && s.check && s.ctrl && s.err && s.err_text;
}

std::string openssl_error(const Ssl& s) {
  const unsigned long e = s.err();
  if (!e) return "unknown error";
  char buf[256];
  s.err_text(e, buf, sizeof buf);
  return buf;
}

}  // namespace

bool read_http_in(mg_connection* conn, bool with_body, HttpIn& in, int& status) {
  const mg_request_info* ri = mg_get_request_info(conn);
  if (!ri || !ri->request_method || !ri->local_uri) {
    status = 400;
    return false;
  }
  in.method = ri->request_method;
  in.path = ri->local_uri;
  in.query = ri->query_string ? ri->query_string : "";
  in.remote_addr = ri->remote_addr;
  in.https = ri->is_ssl != 0;
  for (int i = 0; i < ri->num_headers; ++i) {
    std::string name = ri->http_headers[i].name ? ri->http_headers[i].name : "";
    for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    in.headers[name] = ri->http_headers[i].value ? ri->http_headers[i].value : "";
  }
  if (!with_body || in.method == "GET" || in.method == "HEAD") return true;
  if (ri->content_length > kMaxBody) {
    status = 413;
    return false;
  }
  char buf[1024];
  while (true) {
    const int n = mg_read(conn, buf, sizeof buf);
    if (n <= 0) break;
    in.body.append(buf, size_t(n));
    if (in.body.size() > size_t(kMaxBody)) {
      status = 413;
      return false;
    }
  }
  return true;
}

bool load_tls_shims() {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return false;
  std::string dir(exe, size_t(n));
  dir = dir.substr(0, dir.rfind('/') + 1);
  bool ok = true;
  for (const char* lib : {"libmeterpipe-crypto-shim.so", "libmeterpipe-ssl-shim.so"}) {
    if (dlopen((dir + lib).c_str(), RTLD_NOW | RTLD_GLOBAL)) continue;
    const char* why = dlerror();
    log::warn("https: cannot load %s%s: %s (civetweb looks for the system's libssl.so)",
              dir.c_str(), lib, why ? why : "?");
    ok = false;
  }
  return ok;
}

int init_tls(void* ssl_ctx, const TlsFiles& files) {
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  Ssl s;
  if (!find_ssl(s)) {
    log::error("https: the OpenSSL civetweb loaded is not found (libssl.so, libcrypto.so)");
    return -1;
  }
  if (s.chain(ctx, files.cert.c_str()) != 1) {
    log::error("https: cannot load the certificate %s: %s", files.cert.c_str(),
               openssl_error(s).c_str());
    return -1;
  }
  if (s.key(ctx, files.key.c_str(), SSL_FILETYPE_PEM) != 1 || s.check(ctx) != 1) {
    log::error("https: cannot use the key %s with %s: %s", files.key.c_str(), files.cert.c_str(),
               openssl_error(s).c_str());
    return -1;
  }
  s.ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, nullptr);  // TLS 1.2 or later
  return 1;
}

AuthGate::Control relay_control(std::string run_dir, HttpServer& http) {
  return [run_dir, &http](const RelayCommand& c, const std::string& user) {
    std::optional<std::string> reply, status;
    try {
      reply = bus::control_request(run_dir, "actuate", relay_control_text(c), 3000);
      if (reply && reply->find("\"ok\":true") != std::string::npos)
        status = bus::control_request(run_dir, "actuate", "status", 3000);
    } catch (const bus::ControlAccessError& e) {
      log::error("relay %s: %s", c.relay.c_str(), e.what());
      return json_error(503, e.what(), {{"relay", c.relay}});
    }
    const std::string entry = status ? relay_status_entry(*status, c.relay) : "";
    Response r = relay_control_response(c, reply, entry);
    if (r.status == 200)
      http.broadcast(relay_control_event(c, user, entry));
    else
      log::warn("relay %s: %s refused (%d): %s", c.relay.c_str(), c.mode.c_str(), r.status,
                r.body.c_str());
    return r;
  };
}

}  // namespace mp::serve
