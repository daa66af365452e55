#include "common/curve_keys.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace mp::keys {

namespace {

constexpr std::string_view kZ85Chars =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int z85_value(char ch) {
  const auto p = kZ85Chars.find(ch);
  return p == std::string_view::npos ? -1 : int(p);
}

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

// Calls f(line number, trimmed line) for every line that is neither blank nor a comment.
template <class F>
void for_each_content_line(std::string_view text, F f) {
  int no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    ++no;
    const auto nl = text.find('\n', pos);
    const std::string_view line =
        trim(text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos));
    if (!line.empty() && line[0] != '#') f(no, line);
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
}

}  // namespace

bool z85_decode(std::string_view text, std::string& out) {
  if (text.size() % 5 != 0) return false;
  std::string bytes;
  bytes.reserve(text.size() / 5 * 4);
  for (size_t i = 0; i < text.size(); i += 5) {
    uint64_t v = 0;
    for (size_t j = 0; j < 5; ++j) {
      const int d = z85_value(text[i + j]);
      if (d < 0) return false;
      v = v * 85 + uint64_t(d);
    }
    if (v > 0xffffffffULL) return false;  // 85^5 > 2^32: not every group is a value
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(char((v >> shift) & 0xff));
  }
  out = std::move(bytes);
  return true;
}

bool valid_z85_key(std::string_view text) {
  std::string bytes;
  return text.size() == kZ85KeyChars && z85_decode(text, bytes) && bytes.size() == 32;
}

std::string Problem::str() const {
  return line > 0 ? "line " + std::to_string(line) + ": " + message : message;
}

std::vector<AuthorizedKey> parse_authorized_keys(std::string_view text,
                                                 std::vector<Problem>& problems) {
  std::vector<AuthorizedKey> keys;
  std::map<std::string, int> seen;  // key -> line
  for_each_content_line(text, [&](int no, std::string_view line) {
    const auto end = line.find_first_of(" \t");
    const std::string_view key = line.substr(0, end);
    std::string_view name =
        end == std::string_view::npos ? std::string_view{} : trim(line.substr(end));
    if (!name.empty() && name[0] == '#') name = {};
    if (!valid_z85_key(key)) {
      problems.push_back(
          Problem{no,
                  "not a public key (40 Z85 characters, as `meterpipe keygen` writes to "
                  "NAME.pub), optionally followed by a name"});
      return;
    }
    auto [it, fresh] = seen.emplace(std::string(key), no);
    if (!fresh) {
      problems.push_back(Problem{no, "the same key as line " + std::to_string(it->second)});
      return;
    }
    keys.push_back(AuthorizedKey{std::string(key), std::string(name), no});
  });
  return keys;
}

bool parse_key_text(std::string_view text, std::string& key, Problem& problem) {
  std::string found;
  int found_line = 0;
  bool ok = true;
  for_each_content_line(text, [&](int no, std::string_view line) {
    if (!ok) return;
    if (found_line) {
      problem = Problem{no, "a second key (the file holds one key, written by `meterpipe keygen`)"};
      ok = false;
      return;
    }
    if (!valid_z85_key(line)) {
      problem = Problem{no, "not a key (40 Z85 characters, as `meterpipe keygen` writes)"};
      ok = false;
      return;
    }
    found = std::string(line);
    found_line = no;
  });
  if (!ok) return false;
  if (!found_line) {
    problem = Problem{0, "holds no key"};
    return false;
  }
  key = std::move(found);
  return true;
}

std::string key_hint(std::string_view key) { return std::string(key.substr(0, 8)) + "..."; }

}  // namespace mp::keys
