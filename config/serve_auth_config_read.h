// Reading the accounts and HTTPS keys of [serve] (serve_auth_config.h) inside read_serve.
#pragma once

#include "config/checker.h"

namespace mp::config {

// Reads users_file, tls_cert_file, tls_key_file, metrics_open, session_idle_s and
// session_max_s from the [serve] scope `s`. Refuses (when `enabled`) a non-loopback `listen`
// without a users_file and one of the TLS files without the other; with `check_files` also an
// unreadable certificate or key and a key file others may read.
void read_serve_auth(Checker::Scope& s, const std::string& listen, bool enabled, bool check_files,
                     ServeAuth& a);

}  // namespace mp::config
