// The accounts and HTTPS keys of [serve] (the serve worker's login, roles and TLS;
// docs/ARCHITECTURE.md, "Accounts"). Read by config/serve_auth_config.cpp, called from
// read_serve in config.cpp; documented in config/meterpipe.example.toml.
#pragma once

#include <cstdint>
#include <string>

namespace mp::config {

struct ServeAuth {
  std::string users_file;  // `meterpipe user add` writes it; empty: no accounts (loopback only)
  std::string tls_cert_file, tls_key_file;  // both or neither: HTTPS on serve.listen
  bool metrics_open = false;                // /metrics without login even with accounts
  int64_t session_idle_s = 1800;            // a session ends after this long unused
  int64_t session_max_s = 43200;            // and this long after login, whatever happens
};

// True when HOST of "HOST:PORT" is a loopback address (127.0.0.0/8, [::1], localhost).
bool loopback_listen(const std::string& listen);

}  // namespace mp::config
