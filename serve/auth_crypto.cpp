#include "serve/auth_crypto.h"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <mutex>

namespace mp::serve::auth {
namespace {

constexpr unsigned long long kOps = 2;
constexpr size_t kMem = 19u * 1024 * 1024;

std::mutex g_verify_mutex;

std::string hex_of(const unsigned char* p, size_t n) {
  std::string out(n * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), p, n);
  out.pop_back();
  return out;
}

bool is_run(std::string_view pw) {
  if (pw.size() < 2) return false;
  const int step = int(pw[1]) - int(pw[0]);
  if (step != 1 && step != -1) return false;
  for (size_t i = 1; i < pw.size(); ++i)
    if (int(pw[i]) - int(pw[i - 1]) != step) return false;
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

bool crypto_ready() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

std::string hash_password(std::string_view password) {
  if (!crypto_ready()) return "";
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), kOps, kMem,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    return "";
  return out;
}

bool verify_password(const std::string& hash, std::string_view password) {
  if (!crypto_ready() || !is_password_hash(hash)) return false;
  std::lock_guard<std::mutex> lk(g_verify_mutex);
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

bool is_password_hash(std::string_view hash) {
  return hash.size() < crypto_pwhash_STRBYTES &&
         (hash.rfind("$argon2id$", 0) == 0 || hash.rfind("$argon2i$", 0) == 0);
}

std::string random_hex(size_t bytes) {
  crypto_ready();
  std::string buf(bytes, '\0');
  randombytes_buf(buf.data(), bytes);
  std::string out = hex_of(reinterpret_cast<const unsigned char*>(buf.data()), bytes);
  sodium_memzero(buf.data(), buf.size());
  return out;
}

std::string new_token() { return "mpt_" + random_hex(32); }

std::string token_hash(std::string_view token) {
  crypto_ready();
  unsigned char h[32];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(token.data()),
                     token.size(), nullptr, 0);
  return hex_of(h, sizeof h);
}

bool equal_ct(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string weak_password(std::string_view user, std::string_view password) {
  static const char* const common[] = {"password",   "password1",     "password123", "passw0rd",
                                       "qwertyuiop", "1q2w3e4r5t",    "iloveyou",    "welcome1",
                                       "letmein123", "administrator", "meterpipe",   "raspberry",
                                       "changeme",   "trustno1",      "123456789",   "987654321",
                                       "qwerty123",  "sunshine1",     "football1"};
  if (password.size() < 10) return "shorter than 10 characters";
  if (password.size() > 1024) return "longer than 1024 characters";
  for (char c : password)
    if (c == '\n' || c == '\r' || c == '\0') return "contains a line break or NUL";
  const std::string lp = lower(password);
  if (!user.empty() && lp.find(lower(user)) != std::string::npos) return "contains the user name";
  if (std::all_of(password.begin(), password.end(), [&](char c) { return c == password[0]; }))
    return "one character repeated";
  if (is_run(password)) return "a run of consecutive characters";
  for (const char* c : common)
    if (lp.rfind(c, 0) == 0 && lp.size() <= std::string_view(c).size() + 3)
      return "a well-known password";
  return "";
}

}  // namespace mp::serve::auth
