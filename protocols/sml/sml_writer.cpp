#include "protocols/sml/sml_writer.h"

#include "protocols/sml/sml_transport.h"

namespace mp::sml {

namespace tlv {

namespace {
// A type-length field for `data` bytes of `type` (0 octets, 4 boolean, 5 signed, 6
// unsigned): the length counts the TL bytes too; long items need several TL bytes.
void header(std::string& out, uint8_t type, size_t data) {
  size_t n = 1;
  while (data + n > (size_t(1) << (4 * n)) - 1) ++n;
  const size_t len = data + n;
  for (size_t i = 0; i < n; ++i) {
    const unsigned nibble = unsigned(len >> (4 * (n - 1 - i))) & 0x0F;
    uint8_t b = uint8_t(nibble);
    if (i == 0) b |= uint8_t(type << 4);
    if (i + 1 < n) b |= 0x80;
    out += static_cast<char>(b);
  }
}
}  // namespace

void octets(std::string& out, std::string_view bytes) {
  header(out, 0, bytes.size());
  out += bytes;
}

void unsigned_n(std::string& out, uint64_t v, unsigned bytes) {
  header(out, 6, bytes);
  for (unsigned i = bytes; i-- > 0;) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

void signed_n(std::string& out, int64_t v, unsigned bytes) {
  header(out, 5, bytes);
  const auto u = static_cast<uint64_t>(v);
  for (unsigned i = bytes; i-- > 0;) out += static_cast<char>((u >> (8 * i)) & 0xFF);
}

void boolean(std::string& out, bool v) {
  header(out, 4, 1);
  out += v ? '\x01' : '\x00';
}

void list(std::string& out, size_t elements) {
  if (elements < 16) {
    out += static_cast<char>(0x70 | elements);
    return;
  }
  out += static_cast<char>(0xF0 | ((elements >> 4) & 0x0F));
  out += static_cast<char>(elements & 0x0F);
}

}  // namespace tlv

namespace {

std::string transaction_id(uint32_t n) {
  std::string s;
  tlv::octets(s, std::string{char(n >> 24), char(n >> 16), char(n >> 8), char(n)});
  return s;
}

// SML_Message: transactionId, groupNo, abortOnError, body (tag + content), crc16, end.
void message(std::string& out, uint32_t transaction, uint8_t group, uint16_t tag,
             const std::string& content) {
  std::string m;
  tlv::list(m, 6);
  m += transaction_id(transaction);
  tlv::unsigned_n(m, group, 1);
  tlv::unsigned_n(m, 0, 1);
  tlv::list(m, 2);
  tlv::unsigned_n(m, tag, 2);
  m += content;
  const uint16_t crc = crc16_x25({reinterpret_cast<const uint8_t*>(m.data()), m.size()});
  m += '\x63';
  m += static_cast<char>(crc & 0xFF);
  m += static_cast<char>(crc >> 8);
  m += '\x00';
  out += m;
}

void sec_index(std::string& out, uint32_t s) {
  tlv::list(out, 2);
  tlv::unsigned_n(out, 1, 1);
  tlv::unsigned_n(out, s, 4);
}

void entry(std::string& out, const OutEntry& e) {
  tlv::list(out, 7);
  tlv::octets(out, std::string(reinterpret_cast<const char*>(e.obis), 6));
  if (e.status >= 0)
    tlv::unsigned_n(out, uint64_t(e.status), 4);
  else
    tlv::absent(out);
  tlv::absent(out);  // valTime
  if (e.unit >= 0)
    tlv::unsigned_n(out, uint64_t(e.unit), 1);
  else
    tlv::absent(out);
  if (e.has_scaler)
    tlv::signed_n(out, e.scaler, 1);
  else
    tlv::absent(out);
  switch (e.kind) {
    case OutEntry::Kind::signed_:
      tlv::signed_n(out, e.number, e.bytes);
      break;
    case OutEntry::Kind::unsigned_:
      tlv::unsigned_n(out, uint64_t(e.number), e.bytes);
      break;
    case OutEntry::Kind::bytes:
      tlv::octets(out, e.text);
      break;
  }
  tlv::absent(out);  // valueSignature
}

}  // namespace

std::string build_messages(const OutFile& f) {
  std::string out, body;
  // OpenResponse: codepage, clientId, reqFileId, serverId, refTime, smlVersion
  tlv::list(body, 6);
  tlv::absent(body);
  tlv::absent(body);
  tlv::octets(body, transaction_id(f.transaction).substr(1));
  tlv::octets(body, f.server_id);
  tlv::absent(body);
  tlv::absent(body);
  message(out, f.transaction, 0, 0x0101, body);
  // GetListResponse: clientId, serverId, listName, actSensorTime, valList, listSignature,
  // actGatewayTime
  body.clear();
  tlv::list(body, 7);
  tlv::absent(body);
  tlv::octets(body, f.server_id);
  tlv::octets(body, std::string("\x01\x00\x62\x0A\xFF\xFF", 6));
  sec_index(body, f.sec_index);
  tlv::list(body, f.entries.size());
  for (const auto& e : f.entries) entry(body, e);
  tlv::absent(body);
  tlv::absent(body);
  message(out, f.transaction + 1, 0, 0x0701, body);
  // CloseResponse: globalSignature
  body.clear();
  tlv::list(body, 1);
  tlv::absent(body);
  message(out, f.transaction + 2, 0, 0x0201, body);
  return out;
}

std::string build_frame(const OutFile& f) { return wrap(build_messages(f)); }

}  // namespace mp::sml
