// Encrypted P1 (DLMS general-glo-ciphering, AES-128-GCM): decryption against a frame made
// independently (tests/data/dsmr/sagemcom_t210_d_r.dlms, see SOURCES.md) and against frames built
// here with plain OpenSSL calls; wrong keys, damaged frames, key files, stream splitting.
#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "protocols/dsmr/dlms.h"
#include "protocols/dsmr/dsmr.h"

namespace {

std::string read_file(const std::string& name) {
  std::ifstream f(std::string(MP_TEST_DATA_DIR) + "/dsmr/" + name, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot open " << name);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

mp::dlms::Keys dummy_keys() {  // dsmr_parser's test keys
  mp::dlms::Keys k;
  k.encryption.fill(0xAA);
  k.authentication.fill(0xBB);
  return k;
}

// The frame built directly with OpenSSL, the way dsmr_parser's Sagemcom test builds it
// (independent of mp::dlms::encrypt).
std::string openssl_frame(const std::string& plain, const mp::dlms::Keys& keys,
                          const std::string& title, uint32_t counter) {
  REQUIRE(title.size() == 8);
  unsigned char iv[12];
  std::memcpy(iv, title.data(), 8);
  for (int i = 0; i < 4; ++i) iv[8 + i] = static_cast<unsigned char>(counter >> (24 - 8 * i));
  unsigned char aad[17];
  aad[0] = 0x30;
  std::memcpy(aad + 1, keys.authentication.data(), 16);
  std::vector<unsigned char> ct(plain.size());
  unsigned char tag[16];
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  REQUIRE(EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), nullptr, keys.encryption.data(), iv) == 1);
  REQUIRE(EVP_EncryptUpdate(ctx, nullptr, &len, aad, 17) == 1);
  REQUIRE(EVP_EncryptUpdate(ctx, ct.data(), &len,
                            reinterpret_cast<const unsigned char*>(plain.data()),
                            static_cast<int>(plain.size())) == 1);
  REQUIRE(EVP_EncryptFinal_ex(ctx, ct.data() + len, &len) == 1);
  REQUIRE(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1);
  EVP_CIPHER_CTX_free(ctx);
  size_t body = 1 + 4 + ct.size() + 12;
  std::string f = "\xDB\x08" + title;
  f += '\x82';
  f += static_cast<char>(body >> 8);
  f += static_cast<char>(body & 0xFF);
  f += '\x30';
  f.append(reinterpret_cast<const char*>(iv + 8), 4);
  f.append(reinterpret_cast<const char*>(ct.data()), ct.size());
  f.append(reinterpret_cast<const char*>(tag), 12);
  return f;
}

}  // namespace

TEST_CASE("decrypts the independently made Sagemcom T210-D frame and decodes it") {
  std::string frame = read_file("sagemcom_t210_d_r.dlms");
  std::string plain = read_file("sagemcom_t210_d_r.txt");
  REQUIRE(frame.size() == 511);
  mp::dlms::Header h;
  std::string err;
  REQUIRE(mp::dlms::parse_header(reinterpret_cast<const uint8_t*>(frame.data()), frame.size(), h,
                                 err) == mp::dlms::HeaderStatus::ok);
  CHECK(std::string(h.system_title.begin(), h.system_title.end()) == "SYSTEMID");
  CHECK(h.frame_counter == 0x10000001);
  CHECK(h.security == 0x30);
  CHECK(h.header_len == 18);
  CHECK(h.total_len == 511);

  std::string out;
  REQUIRE_MESSAGE(mp::dlms::decrypt(frame, dummy_keys(), out, err), err);
  CHECK(out == plain);
  mp::dsmr::Result r;
  REQUIRE(mp::dsmr::decode(out, r));
  CHECK(r.crc_ok);
  CHECK(r.reading.find("energy_import_kwh")->number == 6545.766);

  // Our encrypt() gives the same bytes, and OpenSSL directly too.
  std::array<uint8_t, 8> title;
  std::memcpy(title.data(), "SYSTEMID", 8);
  CHECK(mp::dlms::encrypt(plain, dummy_keys(), title, 0x10000001) == frame);
  CHECK(openssl_frame(plain, dummy_keys(), "SYSTEMID", 0x10000001) == frame);
}

TEST_CASE("wrong keys and damaged frames give a clear error") {
  std::string plain = read_file("sagemcom_t210_d_r.txt");
  mp::dlms::Keys keys;
  std::string key_err;
  REQUIRE(mp::dlms::parse_key(" 000102030405060708090a0b0c0d0e0f\n", keys.encryption, key_err));
  std::string frame = openssl_frame(plain, keys, "SAGEMCOM", 42);  // default authentication key
  std::string out, err;
  REQUIRE_MESSAGE(mp::dlms::decrypt(frame, keys, out, err), err);
  CHECK(out == plain);

  const std::string tag_error =
      "authentication failed: GCM tag mismatch (wrong encryption/authentication key or damaged "
      "frame)";
  mp::dlms::Keys wrong = keys;
  wrong.encryption[15] ^= 1;
  CHECK_FALSE(mp::dlms::decrypt(frame, wrong, out, err));
  CHECK(err == tag_error);
  CHECK(out.empty());
  wrong = keys;
  wrong.authentication[0] ^= 1;
  CHECK_FALSE(mp::dlms::decrypt(frame, wrong, out, err));
  CHECK(err == tag_error);

  // Any damaged byte after the length is caught by the tag (as dsmr_parser's frame[150] test).
  for (size_t i = 0; i < frame.size(); ++i) {
    std::string bad = frame;
    bad[i] = static_cast<char>(bad[i] ^ 0x04);
    CAPTURE(i);
    CHECK_FALSE(mp::dlms::decrypt(bad, keys, out, err));
    CHECK_FALSE(err.empty());
    if (i >= 18) CHECK(err == tag_error);
  }
  std::string bad = frame;
  bad[0] = '/';
  CHECK_FALSE(mp::dlms::decrypt(bad, keys, out, err));
  CHECK(err == "not a general-glo-ciphering frame: first byte 0x2F, expected 0xDB");
  bad = frame;
  bad[13] = 0x20;
  CHECK_FALSE(mp::dlms::decrypt(bad, keys, out, err));
  CHECK(err == "unsupported security control 0x20 (only 0x30: authenticated and encrypted)");
  CHECK_FALSE(mp::dlms::decrypt(frame.substr(0, frame.size() - 1), keys, out, err));
  CHECK(err == "frame truncated: header says " + std::to_string(frame.size()) + " bytes, got " +
                   std::to_string(frame.size() - 1));
  CHECK_FALSE(mp::dlms::decrypt(frame + "x", keys, out, err));
  CHECK(err == "frame has 1 bytes after its end");
  CHECK_FALSE(mp::dlms::decrypt(frame.substr(0, 5), keys, out, err));
  CHECK(err == "frame too short (5 bytes): header incomplete");
  CHECK_FALSE(mp::dlms::decrypt("", keys, out, err));
  // A plain telegram is not a frame.
  CHECK_FALSE(mp::dlms::decrypt(plain, keys, out, err));
  CHECK(err == "not a general-glo-ciphering frame: first byte 0x2F, expected 0xDB");
}

TEST_CASE("short and one-byte length forms") {
  mp::dlms::Keys keys = dummy_keys();
  std::array<uint8_t, 8> title{1, 2, 3, 4, 5, 6, 7, 8};
  std::string plain = "/ABC5\r\n\r\n!\r\n";  // 12 bytes: length 29 fits the short form
  std::string f = mp::dlms::encrypt(plain, keys, title, 7);
  REQUIRE(f.size() == 13 + 29);
  std::string shortform = f.substr(0, 10) + std::string(1, 29) + f.substr(13);
  std::string oneb = f.substr(0, 10) + "\x81" + std::string(1, 29) + f.substr(13);
  std::string out, err;
  CHECK(mp::dlms::decrypt(shortform, keys, out, err));
  CHECK(out == plain);
  CHECK(mp::dlms::decrypt(oneb, keys, out, err));
  CHECK(out == plain);
  std::string badlen = f.substr(0, 10) + "\x83" + f.substr(11);
  CHECK_FALSE(mp::dlms::decrypt(badlen, keys, out, err));
  CHECK(err == "unsupported length form 0x83");
  std::string tiny = f.substr(0, 10) + std::string(1, 16) + f.substr(13);
  CHECK_FALSE(mp::dlms::decrypt(tiny, keys, out, err));
  CHECK(err == "frame length 16 too short for security byte, counter, tag");
}

TEST_CASE("keys and key files") {
  mp::dlms::Key k;
  std::string err;
  REQUIRE(mp::dlms::parse_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", k, err));
  CHECK(k[0] == 0xAA);
  CHECK(k[15] == 0xAA);
  REQUIRE(mp::dlms::parse_key(std::string("0123456789abcdef"), k, err));  // 16 raw bytes
  CHECK(k[0] == '0');
  CHECK(k[15] == 'f');
  CHECK_FALSE(mp::dlms::parse_key("AAAA", k, err));
  CHECK(err == "key must be 32 hex digits or 16 raw bytes (got 4 characters)");
  CHECK_FALSE(mp::dlms::parse_key("GAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", k, err));

  mp::dlms::Keys keys;
  REQUIRE(mp::dlms::parse_key_file("# Smarty key\n000102030405060708090A0B0C0D0E0F\n", keys, err));
  CHECK(keys.encryption[1] == 0x01);
  CHECK(keys.authentication == mp::dlms::kDefaultAuthKey);
  CHECK(keys.authentication[1] == 0x11);
  REQUIRE(mp::dlms::parse_key_file(
      "000102030405060708090A0B0C0D0E0F\r\nBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\r\n", keys, err));
  CHECK(keys.authentication[7] == 0xBB);
  std::string raw(32, '\0');
  for (int i = 0; i < 32; ++i) raw[i] = static_cast<char>(i);
  raw[10] = '\n';
  REQUIRE(mp::dlms::parse_key_file(raw, keys, err));
  CHECK(keys.encryption[3] == 3);
  CHECK(keys.encryption[10] == '\n');
  CHECK(keys.authentication[0] == 16);
  CHECK_FALSE(mp::dlms::parse_key_file("", keys, err));
  CHECK_FALSE(mp::dlms::parse_key_file("0001\n", keys, err));
  CHECK(err.rfind("key file: expected", 0) == 0);
  CHECK_FALSE(mp::dlms::parse_key_file(
      "000102030405060708090A0B0C0D0E0F\n000102030405060708090A0B0C0D0E0F\n"
      "000102030405060708090A0B0C0D0E0F\n",
      keys, err));
}

TEST_CASE("frame splitter: noise, several frames, any chunking, bounded") {
  mp::dlms::Keys keys = dummy_keys();
  std::string plain = read_file("sagemcom_t210_d_r.txt");
  std::array<uint8_t, 8> title;
  std::memcpy(title.data(), "SYSTEMID", 8);
  std::vector<std::string> frames;
  std::string stream = "\x01\xDB\x07junk";  // a 0xDB that is not a frame header
  size_t noise = stream.size();
  for (uint32_t c = 1; c <= 5; ++c) {
    frames.push_back(mp::dlms::encrypt(plain, keys, title, c));
    stream += frames.back();
    if (c == 2) {
      stream += "\xDB\x08zz";  // starts like a header, then garbage
      noise += 4;
    }
  }
  for (size_t chunk : {size_t(1), size_t(3), size_t(100), stream.size()}) {
    CAPTURE(chunk);
    mp::dlms::FrameSplitter s;
    std::vector<std::string> got;
    for (size_t i = 0; i < stream.size(); i += chunk) {
      s.feed(stream.substr(i, chunk));
      CHECK(s.buffered() <= mp::dlms::kMaxFrame);
      std::string f;
      while (s.pop(f)) got.push_back(f);
    }
    REQUIRE(got.size() == 5);
    for (size_t i = 0; i < 5; ++i) CHECK(got[i] == frames[i]);
    CHECK(s.counters().frames == 5);
    CHECK(s.counters().discarded_bytes == noise);
    std::string out, err;
    for (size_t i = 0; i < 5; ++i) {
      REQUIRE(mp::dlms::decrypt(got[i], keys, out, err));
      CHECK(out == plain);
    }
  }

  // Random bytes: bounded buffer, every byte accounted for.
  uint64_t x = 12345;
  std::string junk;
  for (int i = 0; i < 200000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    junk += static_cast<char>((x >> 33) % 7 == 0 ? 0xDB : (x >> 40));
  }
  mp::dlms::FrameSplitter s;
  uint64_t delivered = 0;
  for (size_t i = 0; i < junk.size(); i += 999) {
    s.feed(junk.substr(i, 999));
    CHECK(s.buffered() <= mp::dlms::kMaxFrame);
    std::string f;
    while (s.pop(f)) delivered += f.size();
  }
  CHECK(s.counters().discarded_bytes + delivered + s.buffered() == junk.size());
}
