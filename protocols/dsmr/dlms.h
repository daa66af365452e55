// Encrypted P1 (Luxembourg Smarty, Austrian Sagemcom T210-D, …): DLMS general-glo-ciphering
// frames around a plain DSMR telegram. Pure functions over bytes (OpenSSL EVP for AES-GCM).
//
// Frame layout:
//   0xDB                       general-glo-ciphering tag
//   0x08 + 8 bytes             system title length and system title
//   length                     0x82 + 2 bytes big-endian, 0x81 + 1 byte, or one byte < 0x80;
//                              counts everything after it: security byte + frame counter +
//                              ciphertext + tag
//   0x30                       security control: authenticated and encrypted, suite 0
//   4 bytes                    frame counter (big-endian)
//   ciphertext                 AES-128-GCM of the telegram
//   12 bytes                   GCM tag
// IV = system title || frame counter (12 bytes); AAD = security byte || authentication key.
//
// Keys: the encryption key ("GUEK") comes from the grid operator. The authentication key
// ("GAK") defaults to 00112233445566778899AABBCCDDEEFF, the value Luxembourg Smarty meters use
// and that dsmr_parser/Smarty tools assume when none is given (kDefaultAuthKey).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

namespace mp::dlms {

using Key = std::array<uint8_t, 16>;

inline constexpr Key kDefaultAuthKey = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                        0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF};

struct Keys {
  Key encryption{};
  Key authentication = kDefaultAuthKey;
};

inline constexpr uint8_t kTag = 0xDB;
inline constexpr uint8_t kSecurityAuthEnc = 0x30;
inline constexpr size_t kTagLen = 12;
inline constexpr size_t kMaxFrame = 16384;  // far above any real telegram

// A key as 32 hex digits (any case, blanks around ignored) or exactly 16 raw bytes.
bool parse_key(std::string_view text, Key& key, std::string& error);

// Key file contents. Text: the encryption key as 32 hex digits on the first line, optionally
// the authentication key on the second line ('#' comment lines and blank lines ignored).
// Binary: exactly 16 raw bytes (encryption key) or 32 (encryption then authentication key).
// Without an authentication key, kDefaultAuthKey is used.
bool parse_key_file(std::string_view contents, Keys& keys, std::string& error);

struct Header {
  std::array<uint8_t, 8> system_title{};
  uint8_t security = 0;
  uint32_t frame_counter = 0;
  size_t header_len = 0;  // bytes before the ciphertext (tag .. frame counter)
  size_t total_len = 0;   // whole frame
};

enum class HeaderStatus { ok, need_more, invalid };

// Reads a frame header from the start of `data`. need_more: the bytes so far are a valid
// beginning; invalid: `error` says why.
HeaderStatus parse_header(const uint8_t* data, size_t n, Header& h, std::string& error);

// Decrypts and authenticates one whole frame. False with a clear `error` on a short or
// malformed frame, unsupported security, trailing bytes, or a tag mismatch (wrong key or
// damaged frame).
bool decrypt(const uint8_t* frame, size_t n, const Keys& keys, std::string& plaintext,
             std::string& error);
inline bool decrypt(std::string_view frame, const Keys& keys, std::string& plaintext,
                    std::string& error) {
  return decrypt(reinterpret_cast<const uint8_t*>(frame.data()), frame.size(), keys, plaintext,
                 error);
}

// Builds a frame (for simulated Smarty meters and tests). Empty string when OpenSSL fails.
std::string encrypt(std::string_view plaintext, const Keys& keys,
                    const std::array<uint8_t, 8>& system_title, uint32_t frame_counter);

// Splits a byte stream into frames using the length in each header. Bytes before a valid
// header are discarded (counted); a candidate header that turns out invalid costs one byte and
// the search goes on. The buffer never holds more than kMaxFrame bytes.
class FrameSplitter {
 public:
  static constexpr size_t kMaxQueued = 16;
  struct Counters {
    uint64_t frames = 0;
    uint64_t discarded_bytes = 0;
    uint64_t dropped = 0;  // complete frames dropped because nobody popped them
  };
  void feed(const uint8_t* data, size_t n);
  void feed(std::string_view bytes) {
    feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  bool pop(std::string& frame);
  const Counters& counters() const { return counters_; }
  size_t buffered() const { return buf_.size(); }
  // Forgets a partial frame (after a reconnect); its bytes count as discarded.
  void reset() {
    counters_.discarded_bytes += buf_.size();
    buf_.clear();
  }

 private:
  void scan();
  std::string buf_;
  std::deque<std::string> ready_;
  Counters counters_;
};

}  // namespace mp::dlms
