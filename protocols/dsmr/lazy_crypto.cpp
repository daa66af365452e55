#include "protocols/dsmr/lazy_crypto.h"

#include <openssl/opensslv.h>

#include "common/dynamic_library.h"

namespace mp::dlms {

namespace {

#define MP_TEXT(x) #x
#define MP_VALUE_TEXT(x) MP_TEXT(x)
// the major version the headers were built with (its soname: libcrypto.so.3)
constexpr const char* kLibrary = "libcrypto.so." MP_VALUE_TEXT(OPENSSL_VERSION_MAJOR);

struct Loaded {
  Crypto c{};
  std::string error;
  bool ok = false;
  Loaded() {
    DynamicLibrary lib;
    if (!lib.open(kLibrary, "AES-GCM", error)) return;
    ok = lib.resolve("EVP_CIPHER_CTX_new", c.ctx_new, error) &&
         lib.resolve("EVP_CIPHER_CTX_free", c.ctx_free, error) &&
         lib.resolve("EVP_CIPHER_CTX_ctrl", c.ctx_ctrl, error) &&
         lib.resolve("EVP_aes_128_gcm", c.aes_128_gcm, error) &&
         lib.resolve("EVP_DecryptInit_ex", c.decrypt_init, error) &&
         lib.resolve("EVP_DecryptUpdate", c.decrypt_update, error) &&
         lib.resolve("EVP_DecryptFinal_ex", c.decrypt_final, error) &&
         lib.resolve("EVP_EncryptInit_ex", c.encrypt_init, error) &&
         lib.resolve("EVP_EncryptUpdate", c.encrypt_update, error) &&
         lib.resolve("EVP_EncryptFinal_ex", c.encrypt_final, error);
  }
};

}  // namespace

const Crypto* crypto(std::string& error) {
  static const Loaded loaded;  // the library stays loaded for the process's life
  if (!loaded.ok) error = loaded.error;
  return loaded.ok ? &loaded.c : nullptr;
}

}  // namespace mp::dlms
