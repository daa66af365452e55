// OpenSSL's AES-GCM for encrypted P1 (protocols/dsmr/dlms.*), loaded at the first encrypted
// telegram: only a box with a Smarty-style meter maps libcrypto (about 1.4 MB resident, 0.4 MB
// of it private per process) into acquire, process and actuate (docs/ARCHITECTURE.md,
// "Threading": a box's footprint).
#pragma once

#include <openssl/evp.h>

#include <string>

namespace mp::dlms {

struct Crypto {
  decltype(&EVP_CIPHER_CTX_new) ctx_new;
  decltype(&EVP_CIPHER_CTX_free) ctx_free;
  decltype(&EVP_CIPHER_CTX_ctrl) ctx_ctrl;
  decltype(&EVP_aes_128_gcm) aes_128_gcm;
  decltype(&EVP_DecryptInit_ex) decrypt_init;
  decltype(&EVP_DecryptUpdate) decrypt_update;
  decltype(&EVP_DecryptFinal_ex) decrypt_final;
  decltype(&EVP_EncryptInit_ex) encrypt_init;
  decltype(&EVP_EncryptUpdate) encrypt_update;
  decltype(&EVP_EncryptFinal_ex) encrypt_final;
};

// libcrypto's functions, loaded once (thread-safe); nullptr with `error` set when the library
// or one of its functions cannot be loaded.
const Crypto* crypto(std::string& error);

}  // namespace mp::dlms
