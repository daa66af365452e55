// Test data of protocols/sml/tests/data (sources in SOURCES.md): every frame file is a hex
// dump, one frame per line, as the meters sent them.
#pragma once

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace mp::sml::testdata {

inline const std::filesystem::path kDir =
    std::filesystem::path(MP_SOURCE_DIR) / "protocols" / "sml" / "tests" / "data";

inline std::string from_hex(const std::string& text) {
  std::string out, digits;
  for (char c : text)
    if (std::isxdigit(static_cast<unsigned char>(c))) digits += c;
  for (size_t i = 0; i + 1 < digits.size(); i += 2)
    out += static_cast<char>(std::stoul(digits.substr(i, 2), nullptr, 16));
  return out;
}

// The frames of a file (one hex line each).
inline std::vector<std::string> frames(const std::string& name) {
  std::ifstream in(kDir / name);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(from_hex(line));
  return out;
}

// Every frame file's name.
inline std::vector<std::string> files() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(kDir))
    if (e.path().extension() == ".hex") out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

inline std::string all_bytes(const std::string& name) {
  std::string s;
  for (const auto& f : frames(name)) s += f;
  return s;
}

}  // namespace mp::sml::testdata
