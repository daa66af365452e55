#include "protocols/mbus/decode_mbus_cli.h"

#include <cctype>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "common/json.h"
#include "protocols/mbus/mbus.h"

namespace mp::mbus {
namespace {

bool looks_like_hex_text(const std::string& s) {
  for (unsigned char c : s)
    if (!std::isxdigit(c) && !std::isspace(c)) return false;
  return true;
}

// Hex text to bytes: tokens of one or two digits are one byte each ("D" = 0x0D); longer
// tokens are read two digits at a time. Returns false on an odd-length long token.
bool hex_to_bytes(const std::string& s, std::vector<uint8_t>& out, std::string& why) {
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
    const std::string tok = s.substr(i, j - i);
    i = j;
    if (tok.empty()) continue;
    if (tok.size() > 2 && tok.size() % 2) {
      why = "hex token '" + tok + "' has an odd number of digits";
      return false;
    }
    for (size_t k = 0; k < tok.size(); k += 2) {
      out.push_back(static_cast<uint8_t>(std::stoul(tok.substr(k, 2), nullptr, 16)));
    }
  }
  return true;
}

void print_error(std::ostream& out, std::ostream& err, size_t index, size_t offset,
                 const std::string& why) {
  std::string o = "{\"frame\":" + std::to_string(index) + ",\"offset\":" + std::to_string(offset) +
                  ",\"error\":";
  mp::json::append_string(o, why);
  o += '}';
  out << o << '\n';
  err << "decode mbus: frame " << index << " at byte " << offset << ": " << why << '\n';
}

}  // namespace

int decode_mbus_main(std::istream& in, std::ostream& out, std::ostream& err) {
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<uint8_t> bytes;
  if (looks_like_hex_text(text)) {
    std::string why;
    if (!hex_to_bytes(text, bytes, why)) {
      print_error(out, err, 0, 0, why);
      return 1;
    }
  } else {
    bytes.assign(text.begin(), text.end());
  }
  if (bytes.empty()) {
    print_error(out, err, 0, 0, "no frame in input");
    return 1;
  }
  int rc = 0;
  size_t pos = 0, index = 0;
  const std::span<const uint8_t> all(bytes);
  while (pos < bytes.size()) {
    const auto rest = all.subspan(pos);
    const ScanResult s = scan_frame(rest);
    const size_t size = s.status == FrameScan::complete ? s.size : rest.size();
    const DecodeResult res = decode(rest.first(size));
    if (!res.ok()) {
      print_error(out, err, index, pos, res.error);
      rc = 1;
      if (s.status != FrameScan::complete) break;  // cannot find the next frame's start
    } else if (res.frame.payload == Payload::app_error) {
      std::string o = to_json(res.frame);
      o.pop_back();
      o += ",\"error\":";
      mp::json::append_string(o, "meter reported application error: " + res.frame.app_error_text);
      o += '}';
      out << o << '\n';
      err << "decode mbus: frame " << index << " at byte " << pos
          << ": meter reported application error: " << res.frame.app_error_text << '\n';
      rc = 1;
    } else {
      out << to_json(res.frame) << '\n';
    }
    pos += size;
    ++index;
  }
  return rc;
}

int decode_mbus_file(const std::string& path, std::ostream& out, std::ostream& err) {
  if (path == "-") return decode_mbus_main(std::cin, out, err);
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    err << "decode mbus: cannot open " << path << '\n';
    return 2;
  }
  return decode_mbus_main(f, out, err);
}

}  // namespace mp::mbus
