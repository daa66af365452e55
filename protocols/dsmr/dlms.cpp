#include "protocols/dsmr/dlms.h"

#include <cstdio>
#include <cstring>
#include <memory>

#include "protocols/dsmr/lazy_crypto.h"

namespace mp::dlms {

namespace {

int hex_val(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

bool parse_hex_key(std::string_view s, Key& key) {
  if (s.size() != 32) return false;
  for (size_t i = 0; i < 16; ++i) {
    int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    key[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return true;
}

struct CtxFree {
  const Crypto* c;
  void operator()(EVP_CIPHER_CTX* ctx) const { c->ctx_free(ctx); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

std::string hex8(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%02X", v);
  return b;
}

}  // namespace

bool parse_key(std::string_view text, Key& key, std::string& error) {
  std::string_view t = trim(text);
  if (parse_hex_key(t, key)) return true;
  if (text.size() == 16) {
    for (size_t i = 0; i < 16; ++i) key[i] = static_cast<uint8_t>(text[i]);
    return true;
  }
  error =
      "key must be 32 hex digits or 16 raw bytes (got " + std::to_string(t.size()) + " characters)";
  return false;
}

bool parse_key_file(std::string_view contents, Keys& keys, std::string& error) {
  keys = Keys{};
  // Text form: lines of hex.
  std::string_view lines[2];
  size_t n = 0;
  bool text_ok = true;
  size_t pos = 0;
  while (pos <= contents.size() && text_ok) {
    size_t nl = contents.find('\n', pos);
    if (nl == std::string_view::npos) nl = contents.size();
    std::string_view line = trim(contents.substr(pos, nl - pos));
    pos = nl + 1;
    if (line.empty() || line[0] == '#') continue;
    Key k;
    if (n >= 2 || !parse_hex_key(line, k)) {
      text_ok = false;
      break;
    }
    lines[n++] = line;
  }
  if (text_ok && n >= 1) {
    parse_hex_key(lines[0], keys.encryption);
    if (n == 2) parse_hex_key(lines[1], keys.authentication);
    return true;
  }
  if (contents.size() == 16 || contents.size() == 32) {
    for (size_t i = 0; i < 16; ++i) keys.encryption[i] = static_cast<uint8_t>(contents[i]);
    if (contents.size() == 32)
      for (size_t i = 0; i < 16; ++i)
        keys.authentication[i] = static_cast<uint8_t>(contents[16 + i]);
    return true;
  }
  error =
      "key file: expected the encryption key as 32 hex digits on the first line (and optionally "
      "the authentication key on the second), or 16/32 raw bytes";
  return false;
}

HeaderStatus parse_header(const uint8_t* d, size_t n, Header& h, std::string& error) {
  if (n < 1) return HeaderStatus::need_more;
  if (d[0] != kTag) {
    error = "not a general-glo-ciphering frame: first byte " + hex8(d[0]) + ", expected 0xDB";
    return HeaderStatus::invalid;
  }
  if (n < 2) return HeaderStatus::need_more;
  if (d[1] != 8) {
    error = "system title length " + std::to_string(d[1]) + ", expected 8";
    return HeaderStatus::invalid;
  }
  if (n < 11) return HeaderStatus::need_more;
  for (int i = 0; i < 8; ++i) h.system_title[i] = d[2 + i];
  size_t len, p;
  uint8_t lf = d[10];
  if (lf < 0x80) {
    len = lf;
    p = 11;
  } else if (lf == 0x81) {
    if (n < 12) return HeaderStatus::need_more;
    len = d[11];
    p = 12;
  } else if (lf == 0x82) {
    if (n < 13) return HeaderStatus::need_more;
    len = (size_t(d[11]) << 8) | d[12];
    p = 13;
  } else {
    error = "unsupported length form " + hex8(lf);
    return HeaderStatus::invalid;
  }
  if (len < 1 + 4 + kTagLen) {
    error = "frame length " + std::to_string(len) + " too short for security byte, counter, tag";
    return HeaderStatus::invalid;
  }
  if (p + len > kMaxFrame) {
    error = "frame length " + std::to_string(len) + " too large";
    return HeaderStatus::invalid;
  }
  if (n < p + 1) return HeaderStatus::need_more;
  if (d[p] != kSecurityAuthEnc) {
    error =
        "unsupported security control " + hex8(d[p]) + " (only 0x30: authenticated and encrypted)";
    return HeaderStatus::invalid;
  }
  if (n < p + 5) return HeaderStatus::need_more;
  h.security = d[p];
  h.frame_counter = (uint32_t(d[p + 1]) << 24) | (uint32_t(d[p + 2]) << 16) |
                    (uint32_t(d[p + 3]) << 8) | uint32_t(d[p + 4]);
  h.header_len = p + 5;
  h.total_len = p + len;
  return HeaderStatus::ok;
}

bool decrypt(const uint8_t* frame, size_t n, const Keys& keys, std::string& plaintext,
             std::string& error) {
  plaintext.clear();
  Header h;
  HeaderStatus st = parse_header(frame, n, h, error);
  if (st == HeaderStatus::need_more) {
    error = "frame too short (" + std::to_string(n) + " bytes): header incomplete";
    return false;
  }
  if (st == HeaderStatus::invalid) return false;
  if (n < h.total_len) {
    error = "frame truncated: header says " + std::to_string(h.total_len) + " bytes, got " +
            std::to_string(n);
    return false;
  }
  if (n > h.total_len) {
    error = "frame has " + std::to_string(n - h.total_len) + " bytes after its end";
    return false;
  }
  uint8_t iv[12];
  for (int i = 0; i < 8; ++i) iv[i] = h.system_title[i];
  for (int i = 0; i < 4; ++i) iv[8 + i] = frame[h.header_len - 4 + i];
  uint8_t aad[17];
  aad[0] = h.security;
  for (int i = 0; i < 16; ++i) aad[1 + i] = keys.authentication[i];
  const uint8_t* ct = frame + h.header_len;
  size_t ct_len = h.total_len - h.header_len - kTagLen;
  const uint8_t* tag = frame + h.total_len - kTagLen;

  const Crypto* c = crypto(error);
  if (!c) return false;
  Ctx ctx(c->ctx_new(), CtxFree{c});
  int len = 0;
  std::string out(ct_len, '\0');
  if (!ctx || c->decrypt_init(ctx.get(), c->aes_128_gcm(), nullptr, nullptr, nullptr) != 1 ||
      c->ctx_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) != 1 ||
      c->decrypt_init(ctx.get(), nullptr, nullptr, keys.encryption.data(), iv) != 1 ||
      c->decrypt_update(ctx.get(), nullptr, &len, aad, sizeof aad) != 1 ||
      c->decrypt_update(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, ct,
                        static_cast<int>(ct_len)) != 1 ||
      c->ctx_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagLen),
                  const_cast<uint8_t*>(tag)) != 1) {
    error = "AES-GCM setup failed (OpenSSL)";
    return false;
  }
  int fin = 0;
  if (c->decrypt_final(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &fin) != 1) {
    error =
        "authentication failed: GCM tag mismatch (wrong encryption/authentication key or damaged "
        "frame)";
    return false;
  }
  plaintext = std::move(out);
  return true;
}

std::string encrypt(std::string_view plaintext, const Keys& keys,
                    const std::array<uint8_t, 8>& system_title, uint32_t frame_counter) {
  uint8_t iv[12];
  for (int i = 0; i < 8; ++i) iv[i] = system_title[i];
  for (int i = 0; i < 4; ++i) iv[8 + i] = static_cast<uint8_t>(frame_counter >> (24 - 8 * i));
  uint8_t aad[17];
  aad[0] = kSecurityAuthEnc;
  for (int i = 0; i < 16; ++i) aad[1 + i] = keys.authentication[i];

  size_t len_field = 1 + 4 + plaintext.size() + kTagLen;
  if (13 + len_field > kMaxFrame) return {};
  std::string f;
  f += static_cast<char>(kTag);
  f += static_cast<char>(8);
  f.append(reinterpret_cast<const char*>(system_title.data()), 8);
  f += static_cast<char>(0x82);
  f += static_cast<char>(len_field >> 8);
  f += static_cast<char>(len_field & 0xFF);
  f += static_cast<char>(kSecurityAuthEnc);
  f.append(reinterpret_cast<const char*>(iv + 8), 4);
  size_t ct_at = f.size();
  f.resize(ct_at + plaintext.size() + kTagLen);

  std::string error;
  const Crypto* c = crypto(error);
  if (!c) return {};
  Ctx ctx(c->ctx_new(), CtxFree{c});
  int len = 0, fin = 0;
  auto* out = reinterpret_cast<unsigned char*>(f.data()) + ct_at;
  if (!ctx || c->encrypt_init(ctx.get(), c->aes_128_gcm(), nullptr, nullptr, nullptr) != 1 ||
      c->ctx_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) != 1 ||
      c->encrypt_init(ctx.get(), nullptr, nullptr, keys.encryption.data(), iv) != 1 ||
      c->encrypt_update(ctx.get(), nullptr, &len, aad, sizeof aad) != 1 ||
      c->encrypt_update(ctx.get(), out, &len,
                        reinterpret_cast<const unsigned char*>(plaintext.data()),
                        static_cast<int>(plaintext.size())) != 1 ||
      c->encrypt_final(ctx.get(), out + len, &fin) != 1 ||
      c->ctx_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagLen),
                  out + plaintext.size()) != 1)
    return {};
  return f;
}

void FrameSplitter::feed(const uint8_t* data, size_t n) {
  while (n > 0) {
    // Never hold more than kMaxFrame bytes: take what fits, scan, repeat.
    size_t room = kMaxFrame - buf_.size();
    size_t take = n < room ? n : room;
    buf_.append(reinterpret_cast<const char*>(data), take);
    data += take;
    n -= take;
    scan();
  }
}

void FrameSplitter::scan() {
  size_t pos = 0;
  std::string err;
  while (pos < buf_.size()) {
    const void* tag = std::memchr(buf_.data() + pos, kTag, buf_.size() - pos);
    if (!tag) {
      counters_.discarded_bytes += buf_.size() - pos;
      pos = buf_.size();
      break;
    }
    size_t at = static_cast<size_t>(static_cast<const char*>(tag) - buf_.data());
    counters_.discarded_bytes += at - pos;
    pos = at;
    Header h;
    auto* p = reinterpret_cast<const uint8_t*>(buf_.data()) + pos;
    HeaderStatus st = parse_header(p, buf_.size() - pos, h, err);
    if (st == HeaderStatus::invalid) {
      ++counters_.discarded_bytes;
      ++pos;
      continue;
    }
    if (st == HeaderStatus::need_more || buf_.size() - pos < h.total_len) break;
    if (ready_.size() >= kMaxQueued) {
      counters_.discarded_bytes += ready_.front().size();
      ready_.pop_front();
      ++counters_.dropped;
    }
    ready_.emplace_back(buf_.data() + pos, h.total_len);
    ++counters_.frames;
    pos += h.total_len;
  }
  buf_.erase(0, pos);
}

bool FrameSplitter::pop(std::string& frame) {
  if (ready_.empty()) return false;
  frame = std::move(ready_.front());
  ready_.pop_front();
  return true;
}

}  // namespace mp::dlms
