// The cryptography of serve's accounts (docs/ARCHITECTURE.md, "Accounts"), all of it from
// libsodium: Argon2id password hashes (crypto_pwhash_str, m = 19 MiB, t = 2: the OWASP
// minimum, ~0.2 s on a Pi 3), random session ids, CSRF and API tokens, BLAKE2b hashes of
// tokens (they are 256 random bits: a fast hash is enough, a password hash is not needed),
// and comparisons in constant time.
#pragma once

#include <string>
#include <string_view>

namespace mp::serve::auth {

// Initialises libsodium once (thread-safe); false when it cannot (no entropy source).
bool crypto_ready();

// "$argon2id$v=19$m=19456,t=2,p=1$..."; empty when the hash cannot be made (out of memory).
std::string hash_password(std::string_view password);
// True when `password` matches `hash` (made by hash_password or any crypto_pwhash_str).
// One verification at a time per process: each needs 19 MiB, a burst must not add up.
bool verify_password(const std::string& hash, std::string_view password);
// True when `hash` looks like a password hash this build can verify.
bool is_password_hash(std::string_view hash);

// `bytes` random bytes as lower-case hex.
std::string random_hex(size_t bytes);
// A new API token: "mpt_" + 64 hex digits (256 random bits).
std::string new_token();
// The stored form of a token: BLAKE2b-256 of it, 64 hex digits.
std::string token_hash(std::string_view token);
// Equal contents, in time that depends only on the lengths.
bool equal_ct(std::string_view a, std::string_view b);

// Why `password` is too weak for `user` ("" when it is fine): shorter than 10 characters,
// the user name, one repeated character, a run like "1234567890" or a well-known password.
std::string weak_password(std::string_view user, std::string_view password);

}  // namespace mp::serve::auth
