// libFuzzer target: the users file parser of serve's accounts (serve/users.h) on arbitrary
// text. A parsed file must survive format_users -> parse_users unchanged; a refused one must
// name the file and a line that exists.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "serve/users.h"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

bool same(const mp::serve::Users& a, const mp::serve::Users& b) {
  if (a.users.size() != b.users.size()) return false;
  for (size_t i = 0; i < a.users.size(); ++i) {
    const auto &x = a.users[i], &y = b.users[i];
    if (x.name != y.name || x.role != y.role || x.password_hash != y.password_hash ||
        x.token_hashes != y.token_hashes)
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mp::serve;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string err;
  auto users = parse_users(text, "users", err);
  if (!users) {
    // "users:LINE: why" with 1 <= LINE <= the number of lines
    require(err.rfind("users:", 0) == 0);
    const long line = std::strtol(err.c_str() + 6, nullptr, 10);
    size_t lines = 1;
    for (char c : text) lines += c == '\n';
    require(line >= 1 && size_t(line) <= lines);
    return 0;
  }
  for (const auto& u : users->users) {
    require(valid_user_name(u.name));
    require(users->find(u.name) == &u);  // names are unique
    for (const auto& t : u.token_hashes) require(t.size() == 64);
  }
  std::string err2;
  auto again = parse_users(format_users(*users), "users", err2);
  require(again && same(*users, *again));
  return 0;
}
