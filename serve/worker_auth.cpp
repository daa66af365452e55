#include "serve/worker_auth.h"

#include <civetweb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cctype>

#include "bus/control.h"
#include "common/log.h"
#include "serve/worker_http.h"

namespace mp::serve {
namespace {

constexpr long long kMaxBody = 8192;

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  if (!e) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
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

int init_tls(void* ssl_ctx, const TlsFiles& files) {
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  if (SSL_CTX_use_certificate_chain_file(ctx, files.cert.c_str()) != 1) {
    log::error("https: cannot load the certificate %s: %s", files.cert.c_str(),
               openssl_error().c_str());
    return -1;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, files.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    log::error("https: cannot use the key %s with %s: %s", files.key.c_str(), files.cert.c_str(),
               openssl_error().c_str());
    return -1;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
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
