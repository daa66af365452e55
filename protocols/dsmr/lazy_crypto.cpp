#include "protocols/dsmr/lazy_crypto.h"

#include <dlfcn.h>
#include <openssl/opensslv.h>

namespace mp::dlms {

namespace {

#define MP_TEXT(x) #x
#define MP_VALUE_TEXT(x) MP_TEXT(x)
// the major version the headers were built with (its soname: libcrypto.so.3)
constexpr const char* kLibrary = "libcrypto.so." MP_VALUE_TEXT(OPENSSL_VERSION_MAJOR);

template <typename F>
bool resolve(void* lib, const char* name, F& f, std::string& error) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  if (!f) error = std::string(kLibrary) + " has no " + name;
  return f != nullptr;
}

struct Loaded {
  Crypto c{};
  std::string error;
  bool ok = false;
  Loaded() {
    void* lib = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = dlerror();
      error = "cannot load " + std::string(kLibrary) + " for AES-GCM: " + (e ? e : "unknown");
      return;
    }
    ok = resolve(lib, "EVP_CIPHER_CTX_new", c.ctx_new, error) &&
         resolve(lib, "EVP_CIPHER_CTX_free", c.ctx_free, error) &&
         resolve(lib, "EVP_CIPHER_CTX_ctrl", c.ctx_ctrl, error) &&
         resolve(lib, "EVP_aes_128_gcm", c.aes_128_gcm, error) &&
         resolve(lib, "EVP_DecryptInit_ex", c.decrypt_init, error) &&
         resolve(lib, "EVP_DecryptUpdate", c.decrypt_update, error) &&
         resolve(lib, "EVP_DecryptFinal_ex", c.decrypt_final, error) &&
         resolve(lib, "EVP_EncryptInit_ex", c.encrypt_init, error) &&
         resolve(lib, "EVP_EncryptUpdate", c.encrypt_update, error) &&
         resolve(lib, "EVP_EncryptFinal_ex", c.encrypt_final, error);
  }
};

}  // namespace

const Crypto* crypto(std::string& error) {
  static const Loaded loaded;  // the library stays loaded for the process's life
  if (!loaded.ok) error = loaded.error;
  return loaded.ok ? &loaded.c : nullptr;
}

}  // namespace mp::dlms
