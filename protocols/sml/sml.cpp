// SML 1.04 messages and TL-encoded values (protocols/sml/sml.h).
#include "protocols/sml/sml.h"

#include "protocols/sml/sml_transport.h"

namespace mp::sml {

namespace {

constexpr unsigned kMaxDepth = 16;
constexpr uint32_t kOpenResponse = 0x0101, kCloseResponse = 0x0201, kGetListResponse = 0x0701;

enum Type : uint8_t { octets = 0, boolean = 4, integer = 5, unsigned_ = 6, list = 7 };

struct Tl {
  uint8_t type = 0;
  size_t len = 0;  // data bytes, or the number of elements of a list
};

// A cursor over the payload. Every read checks the bounds; the first error sticks.
class Reader {
 public:
  Reader(const uint8_t* p, const uint8_t* end) : p_(p), end_(end) {}

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  bool at_end() const { return p_ >= end_; }
  uint8_t peek() const { return *p_; }
  void advance() { ++p_; }
  size_t offset(const uint8_t* base) const { return size_t(p_ - base); }

  bool fail(std::string what) {
    if (error_.empty()) error_ = std::move(what);
    return false;
  }

  // The type-length field: one byte, or more when bit 7 says another follows (their low
  // nibbles append to the length). For all but lists the length counts the TL bytes too.
  bool tl(Tl& t) {
    if (at_end()) return fail("value cut off at the end of the frame");
    uint8_t b = *p_++;
    t.type = (b >> 4) & 0x07;
    size_t len = b & 0x0F, tl_bytes = 1;
    while (b & 0x80) {
      if (at_end()) return fail("type-length field cut off");
      b = *p_++;
      if ((b & 0x70) != 0) return fail("bad type-length continuation byte");
      if (++tl_bytes > 4) return fail("type-length field longer than 4 bytes");
      len = (len << 4) | (b & 0x0F);
    }
    if (t.type != octets && t.type != boolean && t.type != integer && t.type != unsigned_ &&
        t.type != list)
      return fail("unknown value type " + std::to_string(t.type));
    if (t.type == list) {
      if (len > size_t(end_ - p_)) return fail("list longer than the frame");
      t.len = len;
      return true;
    }
    if (len < tl_bytes) return fail("value length shorter than its type-length field");
    t.len = len - tl_bytes;
    if (t.len > size_t(end_ - p_)) return fail("value longer than the frame");
    return true;
  }

  // An optional item sent as "not set" (01, an empty octet string): consumed, true.
  bool skipped_optional() {
    if (!at_end() && *p_ == 0x01) {
      ++p_;
      return true;
    }
    return false;
  }

  bool list_of(size_t want, const char* what) {
    Tl t;
    if (!tl(t)) return false;
    if (t.type != list || t.len != want)
      return fail(std::string(what) + ": expected a list of " + std::to_string(want));
    return true;
  }

  bool octet_string(std::string& out, const char* what) {
    Tl t;
    if (!tl(t)) return false;
    if (t.type != octets) return fail(std::string(what) + ": expected an octet string");
    out.assign(reinterpret_cast<const char*>(p_), t.len);
    p_ += t.len;
    return true;
  }
  bool optional_octets(std::string& out, const char* what) {
    if (skipped_optional()) return true;
    return octet_string(out, what);
  }

  // An integer of 1 to 8 bytes, big-endian; `is_signed` from its type.
  bool number_body(const Tl& t, bool& negative, uint64_t& magnitude, const char* what) {
    if (t.len < 1 || t.len > 8)
      return fail(std::string(what) + ": integer of " + std::to_string(t.len) + " bytes");
    uint64_t v = 0;
    for (size_t i = 0; i < t.len; ++i) v = (v << 8) | *p_++;
    negative = false;
    magnitude = v;
    if (t.type == integer && (v >> (t.len * 8 - 1)) & 1) {
      const unsigned bits = unsigned(t.len * 8);
      const uint64_t sign_extended = bits == 64 ? v : (v | (~uint64_t(0) << bits));
      negative = true;
      magnitude = ~sign_extended + 1;  // two's complement magnitude (2^63 for the minimum)
    }
    return true;
  }

  bool unsigned_number(uint64_t& v, const char* what) {
    Tl t;
    if (!tl(t)) return false;
    if (t.type != unsigned_ && t.type != integer)
      return fail(std::string(what) + ": expected an integer");
    bool neg = false;
    if (!number_body(t, neg, v, what)) return false;
    if (neg) return fail(std::string(what) + ": negative");
    return true;
  }

  bool signed_number(int64_t& v, const char* what) {
    Tl t;
    if (!tl(t)) return false;
    if (t.type != unsigned_ && t.type != integer)
      return fail(std::string(what) + ": expected an integer");
    bool neg = false;
    uint64_t mag = 0;
    if (!number_body(t, neg, mag, what)) return false;
    if (mag > uint64_t(INT64_MAX) + (neg ? 1 : 0)) return fail(std::string(what) + ": too big");
    v = neg ? int64_t(0 - mag) : int64_t(mag);
    return true;
  }

  // SML_Time: list(choice, value); a bare number is taken as a second index (Holley).
  bool time(Time& out, const char* what) {
    out = Time{};
    if (skipped_optional()) return true;
    const uint8_t* save = p_;
    Tl t;
    if (!tl(t)) return false;
    if (t.type == unsigned_ || t.type == integer) {
      p_ = save;
      out.kind = Time::Kind::sec_index;
      return unsigned_number(out.seconds, what);
    }
    if (t.type != list || t.len != 2) return fail(std::string(what) + ": expected SML_Time");
    uint64_t choice = 0;
    if (!unsigned_number(choice, what)) return false;
    if (choice == 1 || choice == 2) {
      out.kind = choice == 1 ? Time::Kind::sec_index : Time::Kind::timestamp;
      return unsigned_number(out.seconds, what);
    }
    if (choice == 3) {  // localTimestamp: timestamp (UTC), local offset, season offset
      int64_t offset = 0;
      if (!list_of(3, what) || !unsigned_number(out.seconds, what) ||
          !signed_number(offset, what) || !signed_number(offset, what))
        return false;
      out.kind = Time::Kind::timestamp;
      return true;
    }
    return fail(std::string(what) + ": unknown time choice " + std::to_string(choice));
  }

  // Skips one value of any type (lists with their elements).
  bool skip(unsigned depth = 0) {
    if (depth > kMaxDepth) return fail("lists nested too deep");
    Tl t;
    if (!tl(t)) return false;
    if (t.type != list) {
      p_ += t.len;
      return true;
    }
    for (size_t i = 0; i < t.len; ++i)
      if (!skip(depth + 1)) return false;
    return true;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  std::string error_;
};

bool parse_entry(Reader& r, Entry& e) {
  if (!r.list_of(7, "list entry") || !r.octet_string(e.obj_name, "objName")) return false;
  if (!r.skipped_optional()) {
    if (!r.unsigned_number(e.status, "status")) return false;
    e.has_status = true;
  }
  if (!r.time(e.val_time, "valTime")) return false;
  if (!r.skipped_optional()) {
    uint64_t unit = 0;
    if (!r.unsigned_number(unit, "unit")) return false;
    if (unit > 255) return r.fail("unit code above 255");
    e.has_unit = true;
    e.unit = uint8_t(unit);
  }
  if (!r.skipped_optional()) {
    int64_t scaler = 0;
    if (!r.signed_number(scaler, "scaler")) return false;
    if (scaler < -128 || scaler > 127) return r.fail("scaler out of range");
    e.has_scaler = true;
    e.scaler = int8_t(scaler);
  }
  if (!r.skipped_optional()) {
    Tl t;
    if (!r.tl(t)) return false;
    if (t.type == integer || t.type == unsigned_) {
      e.kind = Entry::Kind::number;
      if (!r.number_body(t, e.negative, e.magnitude, "value")) return false;
    } else if (t.type == octets) {
      e.kind = Entry::Kind::bytes;
      for (size_t i = 0; i < t.len; ++i) {
        e.bytes += static_cast<char>(r.peek());
        r.advance();
      }
    } else if (t.type == boolean) {
      if (t.len != 1) return r.fail("value: boolean of " + std::to_string(t.len) + " bytes");
      e.kind = Entry::Kind::boolean;
      e.flag = r.peek() != 0;
      r.advance();
    } else {  // a list value (SML_ListType of later versions): not a number, skipped
      for (size_t i = 0; i < t.len; ++i)
        if (!r.skip(1)) return false;
    }
  }
  std::string signature;
  return r.optional_octets(signature, "valueSignature");
}

bool parse_open_response(Reader& r, File& f) {
  std::string ignore, server;
  Time ref;
  uint64_t version = 0;
  if (!r.list_of(6, "OpenResponse") || !r.optional_octets(ignore, "codepage") ||
      !r.optional_octets(ignore, "clientId") || !r.octet_string(f.req_file_id, "reqFileId") ||
      !r.octet_string(server, "serverId") || !r.time(ref, "refTime"))
    return false;
  if (!r.skipped_optional() && !r.unsigned_number(version, "smlVersion")) return false;
  if (f.server_id.empty()) f.server_id = server;
  ++f.open_responses;
  return true;
}

bool parse_get_list_response(Reader& r, File& f) {
  std::string ignore, server;
  Time sensor, gateway;
  if (!r.list_of(7, "GetListResponse") || !r.optional_octets(ignore, "clientId") ||
      !r.octet_string(server, "serverId") || !r.optional_octets(ignore, "listName") ||
      !r.time(sensor, "actSensorTime"))
    return false;
  Tl t;
  if (!r.tl(t)) return false;
  if (t.type != list) return r.fail("valList: expected a list");
  for (size_t i = 0; i < t.len; ++i) {
    Entry e;
    if (!parse_entry(r, e)) return false;
    f.entries.push_back(std::move(e));
  }
  if (!r.optional_octets(ignore, "listSignature") || !r.time(gateway, "actGatewayTime"))
    return false;
  if (!server.empty()) f.server_id = server;
  if (f.get_list_responses++ == 0) f.act_sensor_time = sensor;
  return true;
}

bool parse_message(Reader& r, File& f) {
  std::string transaction;
  uint64_t group = 0, abort = 0, tag = 0, crc = 0;
  if (!r.list_of(6, "SML_Message") || !r.octet_string(transaction, "transactionId") ||
      !r.unsigned_number(group, "groupNo") || !r.unsigned_number(abort, "abortOnError") ||
      !r.list_of(2, "messageBody") || !r.unsigned_number(tag, "message tag"))
    return false;
  bool ok = false;
  switch (tag) {
    case kOpenResponse:
      ok = parse_open_response(r, f);
      break;
    case kGetListResponse:
      ok = parse_get_list_response(r, f);
      break;
    case kCloseResponse:
      ++f.close_responses;
      ok = r.skip();
      break;
    default:
      ++f.other_messages;
      ok = r.skip();
  }
  if (!ok) return false;
  if (!r.skipped_optional() && !r.unsigned_number(crc, "message crc")) return false;
  if (r.at_end() || r.peek() != 0x00) return r.fail("endOfSmlMsg (00) missing");
  r.advance();
  ++f.messages;
  return true;
}

}  // namespace

std::string Entry::obis_text() const {
  if (!is_obis()) return hex(obj_name);
  const auto* b = reinterpret_cast<const uint8_t*>(obj_name.data());
  std::string s = std::to_string(b[0]) + "-" + std::to_string(b[1]) + ":" + std::to_string(b[2]) +
                  "." + std::to_string(b[3]) + "." + std::to_string(b[4]);
  if (b[5] != 255) s += "*" + std::to_string(b[5]);
  return s;
}

bool decode_messages(std::span<const uint8_t> payload, File& out, std::string& error) {
  out = File{};
  const uint8_t* base = payload.data();
  Reader r(base, base + payload.size());
  while (!r.at_end()) {
    if (r.peek() == 0x00) {  // fill bytes between or after messages
      r.advance();
      continue;
    }
    const size_t at = r.offset(base);
    if (!parse_message(r, out)) {
      error = "message " + std::to_string(out.messages + 1) + " at byte " + std::to_string(at) +
              ": " + r.error();
      return false;
    }
  }
  if (out.messages == 0) {
    error = "no SML message in the frame";
    return false;
  }
  return true;
}

bool decode_frame(std::span<const uint8_t> frame, File& out, std::string& error) {
  Transport t;
  if (!unwrap(frame, t, error)) {
    out = File{};
    return false;
  }
  return decode_messages({reinterpret_cast<const uint8_t*>(t.payload.data()), t.payload.size()},
                         out, error);
}

std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    s += digits[c >> 4];
    s += digits[c & 15];
  }
  return s;
}

std::string_view unit_symbol(uint8_t code) {
  switch (code) {
    case 1:
      return "a";
    case 2:
      return "mo";
    case 3:
      return "wk";
    case 4:
      return "d";
    case 5:
      return "h";
    case 6:
      return "min";
    case 7:
      return "s";
    case 8:
      return "deg";
    case 9:
      return "C";
    case 11:
      return "m";
    case 12:
      return "m/s";
    case 13:
      return "m3";
    case 14:
      return "m3";
    case 15:
      return "m3/h";
    case 16:
      return "m3/h";
    case 19:
      return "l";
    case 20:
      return "kg";
    case 23:
      return "Pa";
    case 24:
      return "bar";
    case 25:
      return "J";
    case 26:
      return "J/h";
    case 27:
      return "W";
    case 28:
      return "VA";
    case 29:
      return "var";
    case 30:
      return "Wh";
    case 31:
      return "VAh";
    case 32:
      return "varh";
    case 33:
      return "A";
    case 35:
      return "V";
    case 44:
      return "Hz";
    case 52:
      return "K";
    case 56:
      return "%";
    case 57:
      return "Ah";
    default:
      return "";
  }
}

}  // namespace mp::sml
