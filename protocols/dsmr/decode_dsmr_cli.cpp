#include "protocols/dsmr/decode_dsmr_cli.h"

#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "protocols/dsmr/dsmr_framer.h"
#include "common/clock.h"
#include "common/json.h"
#include "protocols/dsmr/dlms.h"

namespace mp::dsmr {

namespace {

bool read_all(std::istream& in, std::string& out) {
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

// Hex text ("DB08…", white space allowed) to bytes; false when it is not hex text.
bool hex_text(const std::string& s, std::string& bytes) {
  bytes.clear();
  int hi = -1;
  for (unsigned char c : s) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    int v = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                     : -1;
    if (v < 0) return false;
    if (hi < 0) {
      hi = v;
    } else {
      bytes += static_cast<char>(hi * 16 + v);
      hi = -1;
    }
  }
  return hi < 0 && !bytes.empty();
}

struct Run {
  std::ostream& out;
  std::ostream& err;
  size_t telegrams = 0;
  bool failed = false;

  void telegram(const std::string& t) {
    ++telegrams;
    Result r;
    bool ok = decode(t, r);
    if (!ok) failed = true;
    out << to_json(r) << '\n';
    for (const auto& e : r.errors)
      err << "telegram " << telegrams << (ok ? ": warning: " : ": error: ") << e << '\n';
  }

  // Runs a framer over `bytes`; reports what it had to drop.
  void frames(const std::string& bytes, const char* where) {
    Framer f;
    std::string t;
    // feed in chunks and pop after each: the framer queues at most kMaxQueued telegrams
    for (size_t off = 0; off < bytes.size(); off += 1024) {
      f.feed(std::string_view(bytes).substr(off, 1024));
      while (f.pop(t)) telegram(t);
    }
    // The input ends here: a last telegram may stop right after its CRC digits.
    if (f.finish())
      while (f.pop(t)) telegram(t);
    if (f.counters().dropped) {
      failed = true;
      err << where << ": " << f.counters().dropped << " telegram(s) dropped by the framer\n";
    }
    const auto& c = f.counters();
    if (c.truncated) {
      failed = true;
      err << where << ": " << c.truncated << " telegram(s) cut off by the start of another\n";
    }
    if (c.oversize) {
      failed = true;
      err << where << ": " << c.oversize << " telegram(s) longer than " << Framer::kMaxFrame
          << " bytes dropped\n";
    }
    if (f.in_telegram()) {
      failed = true;
      err << where << ": incomplete telegram at the end (" << f.buffered()
          << " bytes, no '!' line)\n";
    }
  }
};

}  // namespace

std::string to_json(const Result& r) {
  std::string o;
  o.reserve(256 + 96 * r.reading.values.size());
  o += "{\"crc_ok\":";
  o += r.crc_present ? (r.crc_ok ? "true" : "false") : "null";
  o += ",\"header\":";
  json::append_string(o, r.header);
  o += ",\"meter_time\":";
  if (r.reading.meter_time_ns)
    json::append_string(o, clock::iso8601(r.reading.meter_time_ns));
  else
    o += "null";
  o += ",\"values\":[";
  bool first = true;
  for (const auto& v : r.reading.values) {
    if (!first) o += ',';
    first = false;
    o += "{\"name\":";
    json::append_string(o, v.name);
    o += ",\"obis\":";
    json::append_string(o, v.native_id);
    o += ",\"value\":";
    if (v.is_text)
      json::append_string(o, v.text);
    else
      json::append_number(o, v.number);
    o += ",\"unit\":";
    json::append_string(o, v.unit);
    if (v.time_ns) {
      o += ",\"time\":";
      json::append_string(o, clock::iso8601(v.time_ns));
    }
    o += '}';
  }
  o += "],\"errors\":[";
  for (size_t i = 0; i < r.errors.size(); ++i) {
    if (i) o += ',';
    json::append_string(o, r.errors[i]);
  }
  o += "]}";
  return o;
}

int decode_dsmr_main(std::istream& in, std::ostream& out, std::ostream& err,
                     const std::string& key_file) {
  std::string bytes;
  if (!read_all(in, bytes)) {
    err << "decode dsmr: read error\n";
    return 1;
  }
  Run run{out, err};
  if (key_file.empty()) {
    run.frames(bytes, "input");
  } else {
    std::ifstream kf(key_file, std::ios::binary);
    std::string key_text, why;
    if (!kf || !read_all(kf, key_text)) {
      err << "decode dsmr: cannot read key file " << key_file << '\n';
      return 2;
    }
    dlms::Keys keys;
    if (!dlms::parse_key_file(key_text, keys, why)) {
      err << "decode dsmr: " << key_file << ": " << why << '\n';
      return 2;
    }
    std::string raw;
    if (hex_text(bytes, raw)) bytes.swap(raw);
    dlms::FrameSplitter split;
    split.feed(bytes);
    std::string frame, plain;
    size_t frames = 0;
    while (split.pop(frame)) {
      ++frames;
      if (!dlms::decrypt(frame, keys, plain, why)) {
        ++run.telegrams;
        run.failed = true;
        Result r;
        r.errors.push_back("decrypt: " + why);
        out << to_json(r) << '\n';
        err << "frame " << frames << ": error: decrypt: " << why << '\n';
        continue;
      }
      size_t before = run.telegrams;
      run.frames(plain, "decrypted frame");
      if (run.telegrams == before) {
        run.failed = true;
        err << "frame " << frames << ": error: no telegram in the decrypted frame\n";
      }
    }
    if (split.buffered()) {
      run.failed = true;
      err << "input: incomplete encrypted frame at the end (" << split.buffered() << " bytes)\n";
    }
  }
  if (run.telegrams == 0) {
    err << "decode dsmr: no telegram found in the input\n";
    return 1;
  }
  return run.failed ? 1 : 0;
}

int decode_dsmr_file(const std::string& path, const std::string& key_file, std::ostream& out,
                     std::ostream& err) {
  if (path == "-" || path.empty()) return decode_dsmr_main(std::cin, out, err, key_file);
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    err << "decode dsmr: cannot read " << path << '\n';
    return 2;
  }
  return decode_dsmr_main(f, out, err, key_file);
}

}  // namespace mp::dsmr
