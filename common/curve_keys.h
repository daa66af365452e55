// CurveZMQ key files, as `meterpipe keygen` writes them and [remote] names them (pure: text
// in, keys or problems out; no ZeroMQ, so config validation can use it too).
//
// A key is 32 bytes written as 40 Z85 characters (ZeroMQ RFC 32).
//   NAME.key  the secret key: one Z85 line (mode 0600; never logged, never echoed)
//   NAME.pub  the public key: one Z85 line
//   authorized_keys  one client public key per line, optionally followed by a name
//                    ("KEY laptop"); blank lines and lines starting with '#' are ignored
// Problems name the line but never repeat the line's text: a secret key pasted into the
// wrong file must not end up in a log.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mp::keys {

constexpr size_t kZ85KeyChars = 40;

// Z85 text (length a multiple of 5) -> bytes; false when it is not valid Z85.
bool z85_decode(std::string_view text, std::string& out);
// True for 40 Z85 characters that decode to 32 bytes.
bool valid_z85_key(std::string_view text);

struct Problem {
  int line = 0;  // 1-based; 0 = the file as a whole
  std::string message;
  std::string str() const;  // "line N: message" (or just the message)
};

struct AuthorizedKey {
  std::string key;   // Z85
  std::string name;  // "" when the line has none
  int line = 0;
};

// Every valid key of an authorized_keys text; each bad line (not a key, a key twice) is a
// problem and is left out.
std::vector<AuthorizedKey> parse_authorized_keys(std::string_view text,
                                                 std::vector<Problem>& problems);

// The key of a NAME.key / NAME.pub text: its one non-comment line. False with `problem`
// set when there is no key, the line is not a key, or there is more than one.
bool parse_key_text(std::string_view text, std::string& key, Problem& problem);

// The first characters of a public key, to name it in logs ("Ab3x+9Qz...").
std::string key_hint(std::string_view key);

}  // namespace mp::keys
