// civetweb glue of serve's accounts (serve/auth_gate.h) and HTTPS: the request as the gate
// sees it, the TLS set-up of civetweb's SSL context, and relay control through actuate's
// control channel (the same request `meterpipe relay` sends).
#pragma once

#include <string>

#include "serve/auth_gate.h"

struct mg_connection;

namespace mp::serve {

class HttpServer;

// Copies method, path, query, headers (names lower-cased), peer address and TLS flag; with
// `with_body` also the body (at most 8 KiB). False with `error` (413) for a larger body.
bool read_http_in(mg_connection* conn, bool with_body, HttpIn& in, int& status);

// Loads serve/tls_shim.c's libraries (beside this executable) so that civetweb's
// dlopen("libssl.so") / ("libcrypto.so") finds them; call before civetweb starts HTTPS.
// False (logged) when they are not there: civetweb then looks for the system's.
bool load_tls_shims();

// civetweb's init_ssl callback: loads the certificate chain and key named by the
// TlsFiles passed as user data; TLS 1.2 or later. 1 on success, -1 (logged) on failure.
struct TlsFiles {
  std::string cert, key;
};
int init_tls(void* ssl_ctx, const TlsFiles& files);

// Relay control for the gate: control request to actuate, its status afterwards, and the
// result pushed to every WebSocket client.
AuthGate::Control relay_control(std::string run_dir, HttpServer& http);

}  // namespace mp::serve
