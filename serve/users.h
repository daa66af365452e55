// The users file of serve's accounts ([serve] users_file; docs/ARCHITECTURE.md, "Accounts"):
// one line per user, written by `meterpipe user`, never by hand:
//   NAME:ROLE:PASSWORD_HASH:TOKEN_HASH,TOKEN_HASH,...
// ROLE is viewer or operator, PASSWORD_HASH an Argon2id string (serve/auth_crypto.h),
// TOKEN_HASH the BLAKE2b of an API token (may be empty). Lines starting with '#' and blank
// lines are comments. The file holds hashes only, and still must not be readable by others
// (mode 0600, or 0640 for a group such as meterpipe).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace mp::serve {

enum class Role { viewer, operator_ };

const char* role_name(Role r);
bool parse_role(const std::string& s, Role& out);

struct User {
  std::string name;
  Role role = Role::viewer;
  std::string password_hash;
  std::vector<std::string> token_hashes;
};

struct Users {
  std::vector<User> users;
  const User* find(const std::string& name) const;
  User* find(const std::string& name);
};

// Letters, digits, '.', '_', '-'; 1..64 characters, not starting with '-' or '.'.
bool valid_user_name(const std::string& name);

// Parses the text of a users file; on error nullopt and `error` = "FILE:LINE: message".
std::optional<Users> parse_users(const std::string& text, const std::string& file,
                                 std::string& error);
// The file's text (a comment line first), parse_users' inverse.
std::string format_users(const Users& u);

// Reads and parses `path`: it must be a regular file without permissions for others or
// group write (0600 / 0640). nullopt with `error` naming the file (and line).
std::optional<Users> load_users_file(const std::string& path, std::string& error);
// Writes `u` to `path` atomically (common/fs.h), keeping the mode of an existing file
// (0600 for a new one). False with `error`.
bool save_users_file(const std::string& path, const Users& u, std::string& error);

}  // namespace mp::serve
