#include "serve/users.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>

#include "common/fs.h"
#include "serve/auth_crypto.h"

namespace mp::serve {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    const size_t e = s.find(sep, pos);
    out.push_back(s.substr(pos, e == std::string::npos ? std::string::npos : e - pos));
    if (e == std::string::npos) break;
    pos = e + 1;
  }
  return out;
}

bool is_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string mode_text(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0%03o", unsigned(m & 0777));
  return buf;
}

// One line "NAME:ROLE:HASH:TOKENS" -> user; "" or the problem.
std::string parse_line(const std::string& line, User& u) {
  const auto f = split(line, ':');
  if (f.size() != 4)
    return "expected NAME:ROLE:PASSWORD_HASH:TOKENS (4 fields, " + std::to_string(f.size()) +
           " found)";
  if (!valid_user_name(f[0])) return "bad user name (letters, digits, . _ -; up to 64)";
  u.name = f[0];
  if (!parse_role(f[1], u.role)) return "user " + u.name + ": role must be viewer or operator";
  if (!auth::is_password_hash(f[2]))
    return "user " + u.name + ": the password hash is not an Argon2 hash";
  u.password_hash = f[2];
  if (!f[3].empty()) {
    for (const auto& t : split(f[3], ',')) {
      if (!is_hex64(t)) return "user " + u.name + ": a token hash is not 64 hex digits";
      u.token_hashes.push_back(t);
    }
  }
  return "";
}

}  // namespace

const char* role_name(Role r) { return r == Role::operator_ ? "operator" : "viewer"; }

bool parse_role(const std::string& s, Role& out) {
  if (s == "viewer") {
    out = Role::viewer;
    return true;
  }
  if (s == "operator") {
    out = Role::operator_;
    return true;
  }
  return false;
}

const User* Users::find(const std::string& name) const {
  for (const auto& u : users)
    if (u.name == name) return &u;
  return nullptr;
}

User* Users::find(const std::string& name) {
  for (auto& u : users)
    if (u.name == name) return &u;
  return nullptr;
}

bool valid_user_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '-' || name[0] == '.') return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return false;
  return true;
}

std::optional<Users> parse_users(const std::string& text, const std::string& file,
                                 std::string& error) {
  Users out;
  std::set<std::string> names;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    User u;
    std::string why = parse_line(line, u);
    if (why.empty() && !names.insert(u.name).second) why = "user " + u.name + " listed twice";
    if (!why.empty()) {
      error = file + ":" + std::to_string(n) + ": " + why;
      return std::nullopt;
    }
    out.users.push_back(std::move(u));
  }
  return out;
}

std::string format_users(const Users& u) {
  std::string out =
      "# meterpipe users (NAME:ROLE:PASSWORD_HASH:TOKEN_HASHES): edit with `meterpipe user`\n";
  for (const auto& x : u.users) {
    out += x.name + ":" + role_name(x.role) + ":" + x.password_hash + ":";
    for (size_t i = 0; i < x.token_hashes.size(); ++i) out += (i ? "," : "") + x.token_hashes[i];
    out += "\n";
  }
  return out;
}

std::optional<Users> load_users_file(const std::string& path, std::string& error) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    error = path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    error = path + ": not a regular file";
    return std::nullopt;
  }
  if (st.st_mode & 0037) {
    error = path + ": mode " + mode_text(st.st_mode) +
            " lets others read or change it: chmod 600 " + path + " (or 640 with group meterpipe)";
    return std::nullopt;
  }
  std::string text;
  if (!fs::read_file(path, text, error)) return std::nullopt;
  return parse_users(text, path, error);
}

bool save_users_file(const std::string& path, const Users& u, std::string& error) {
  unsigned mode = 0600;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) mode = unsigned(st.st_mode & 0640);
  if (!fs::atomic_replace(path, format_users(u), error, true, mode)) return false;
  // keep the group of the file it replaces (root:meterpipe 0640 stays readable by serve)
  if (st.st_gid && ::chown(path.c_str(), st.st_uid, st.st_gid) != 0) {
    error = path + ": cannot keep its owner: " + std::strerror(errno);
    return false;
  }
  return true;
}

}  // namespace mp::serve
