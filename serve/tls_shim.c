/* The OpenSSL that Debian's civetweb 1.15 asks for (docs/ARCHITECTURE.md, "Accounts").
 *
 * civetweb loads OpenSSL itself, with dlopen("libssl.so") and dlopen("libcrypto.so"), and
 * looks its functions up by name. Two problems on Debian 12: those unversioned names exist
 * only with libssl-dev installed, and OpenSSL 3 has no function SSL_get_peer_certificate
 * any more (a macro for SSL_get1_peer_certificate), so civetweb's pointer to it stays NULL
 * and the first HTTPS connection crashes serve. meterpipe-serve therefore loads this
 * library (built twice: SONAME libssl.so and libcrypto.so, linked to libssl.so.3 /
 * libcrypto.so.3) before civetweb starts: glibc's dlopen matches a loaded library's SONAME,
 * so civetweb gets these, and dlsym on them finds the real functions in their dependencies
 * and the one that is missing here. */
#include <openssl/ssl.h>

#ifdef MP_SHIM_SSL
#undef SSL_get_peer_certificate /* OpenSSL 3: a macro for SSL_get1_peer_certificate */
X509* SSL_get_peer_certificate(const SSL* s);
X509* SSL_get_peer_certificate(const SSL* s) { return SSL_get1_peer_certificate(s); }
#endif
