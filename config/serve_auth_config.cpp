#include "config/serve_auth_config.h"

#include <sys/stat.h>

#include <cstdio>

#include "config/serve_auth_config_read.h"

namespace mp::config {

bool loopback_listen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  const std::string host = listen.substr(0, colon == std::string::npos ? listen.size() : colon);
  return host.rfind("127.", 0) == 0 || host == "[::1]" || host == "localhost";
}

void read_serve_auth(Checker::Scope& s, const std::string& listen, bool enabled, bool check_files,
                     ServeAuth& a) {
  s.refuse_secrets({"password", "token"});
  s.str("users_file", a.users_file);
  s.str("tls_cert_file", a.tls_cert_file);
  s.str("tls_key_file", a.tls_key_file);
  s.boolean("metrics_open", a.metrics_open);
  s.integer("session_idle_s", a.session_idle_s, 5, 7 * 86400);
  s.integer("session_max_s", a.session_max_s, 10, 30 * 86400);
  if (enabled && a.users_file.empty() && !loopback_listen(listen))
    s.error_key("listen",
                "\"" + listen +
                    "\" is reachable from other machines and there are no accounts: set "
                    "users_file = \"/etc/meterpipe/users\" under [serve] and create it with "
                    "`meterpipe user add NAME --role operator --users-file /etc/meterpipe/users`"
                    " (or listen on 127.0.0.1)");
  if (a.tls_cert_file.empty() != a.tls_key_file.empty())
    s.error_key(a.tls_cert_file.empty() ? "tls_cert_file" : "tls_key_file",
                "tls_cert_file and tls_key_file go together (HTTPS needs both)");
  if (!check_files) return;
  s.readable_file("tls_cert_file", a.tls_cert_file, "the server's certificate, PEM");
  s.readable_file("tls_key_file", a.tls_key_file, "the certificate's private key, PEM");
  struct stat st {};
  if (!a.tls_key_file.empty() && ::stat(a.tls_key_file.c_str(), &st) == 0 && (st.st_mode & 0037)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
    s.error_key("tls_key_file", a.tls_key_file + " may be read by others (mode " + mode +
                                    "): chmod 600 " + a.tls_key_file +
                                    " (or 640 with group meterpipe)");
  }
}

}  // namespace mp::config
