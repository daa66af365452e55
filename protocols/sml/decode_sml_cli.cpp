#include "protocols/sml/decode_sml_cli.h"

#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>

#include "common/json.h"
#include "protocols/sml/sml.h"
#include "protocols/sml/sml_transport.h"

namespace mp::sml {

namespace {

int hex_digit(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Hex dump to bytes; false when the text is not one (then it is taken as binary).
bool from_hex(const std::string& s, std::string& bytes) {
  bytes.clear();
  int hi = -1;
  for (unsigned char c : s) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    const int v = hex_digit(c);
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

std::string iso_time(int64_t seconds) {
  const time_t t = static_cast<time_t>(seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void append_raw(std::string& o, const Entry& e) {
  switch (e.kind) {
    case Entry::Kind::number:
      o += ",\"raw\":";
      if (e.negative && e.magnitude) o += '-';
      o += std::to_string(e.magnitude);
      break;
    case Entry::Kind::bytes:
      o += ",\"raw_hex\":";
      json::append_string(o, hex(e.bytes));
      break;
    case Entry::Kind::boolean:
      o += e.flag ? ",\"raw\":true" : ",\"raw\":false";
      break;
    case Entry::Kind::absent:
      break;
  }
}

void append_entry(std::string& o, const Entry& e) {
  o += "{\"obis\":";
  json::append_string(o, e.obis_text());
  o += ",\"status\":" + (e.has_status ? std::to_string(e.status) : std::string("null"));
  o += ",\"unit\":" + (e.has_unit ? std::to_string(e.unit) : std::string("null"));
  o += ",\"scaler\":" + (e.has_scaler ? std::to_string(e.scaler) : std::string("null"));
  append_raw(o, e);
  if (e.val_time.kind == Time::Kind::timestamp)
    o += ",\"time\":" + std::to_string(e.val_time.seconds);
  o += '}';
}

void append_value(std::string& o, const Value& v) {
  o += "{\"name\":";
  json::append_string(o, v.name);
  o += ",\"obis\":";
  json::append_string(o, v.native_id);
  o += ",\"value\":";
  if (v.is_text)
    json::append_string(o, v.text);
  else
    json::append_number(o, v.number);
  if (!v.unit.empty()) {
    o += ",\"unit\":";
    json::append_string(o, v.unit);
  }
  if (v.time_ns) o += ",\"time\":\"" + iso_time(v.time_ns / 1000000000) + "\"";
  o += '}';
}

struct Run {
  std::ostream& out;
  std::ostream& err;
  size_t frames = 0;
  bool failed = false;

  void frame(const std::string& bytes) {
    ++frames;
    File f;
    std::string error;
    const bool ok =
        decode_frame({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, f, error);
    Transport t;
    std::string terr;
    const bool crc_ok =
        unwrap({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, t, terr) ||
        t.crc_sent == t.crc_computed;
    Reading r;
    if (ok) to_reading(f, r);
    std::string o = "{\"frame\":" + std::to_string(frames) +
                    ",\"crc_ok\":" + (crc_ok ? "true" : "false") + ",\"server_id\":";
    json::append_string(o, hex(f.server_id));
    o += ",\"meter_time\":";
    o += r.meter_time_ns ? "\"" + iso_time(r.meter_time_ns / 1000000000) + "\"" : "null";
    o += ",\"sec_index\":";
    o += f.act_sensor_time.kind == Time::Kind::sec_index ? std::to_string(f.act_sensor_time.seconds)
                                                         : "null";
    o += ",\"values\":[";
    for (size_t i = 0; i < r.values.size(); ++i) {
      if (i) o += ',';
      append_value(o, r.values[i]);
    }
    o += "],\"entries\":[";
    for (size_t i = 0; ok && i < f.entries.size(); ++i) {
      if (i) o += ',';
      append_entry(o, f.entries[i]);
    }
    o += "],\"errors\":[";
    if (!ok) {
      json::append_string(o, error);
      failed = true;
      err << "decode sml: frame " << frames << ": " << error << '\n';
    }
    o += "]}";
    out << o << '\n';
  }
};

}  // namespace

int decode_sml_main(std::istream& in, std::ostream& out, std::ostream& err) {
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string bytes;
  if (!from_hex(text, bytes)) bytes = text;
  Framer framer;
  framer.check_crc = false;  // each frame's CRC is reported with it
  framer.feed(bytes);
  Run run{out, err};
  std::string frame;
  while (framer.pop(frame)) run.frame(frame);
  const auto& c = framer.counters();
  if (c.discarded_bytes)
    err << "decode sml: " << c.discarded_bytes << " bytes outside whole frames skipped\n";
  if (c.truncated || c.bad_escape || c.oversize) {
    err << "decode sml: frames dropped: " << c.truncated << " cut off, " << c.bad_escape
        << " with an unknown escape, " << c.oversize << " too long\n";
    run.failed = true;
  }
  if (framer.in_frame()) {
    err << "decode sml: the input ends inside a frame\n";
    run.failed = true;
  }
  if (run.frames == 0) {
    err << "decode sml: no SML frame in the input\n";
    return 1;
  }
  return run.failed ? 1 : 0;
}

int decode_sml_file(const std::string& path, std::ostream& out, std::ostream& err) {
  if (path == "-") return decode_sml_main(std::cin, out, err);
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    err << "decode sml: cannot open " << path << '\n';
    return 2;
  }
  return decode_sml_main(f, out, err);
}

}  // namespace mp::sml
