#include "protocols/sml/sml_transport.h"

#include <array>
#include <cstdio>
#include <cstring>

namespace mp::sml {

namespace {

constexpr uint8_t kEsc[4] = {0x1B, 0x1B, 0x1B, 0x1B};
constexpr uint8_t kStart[8] = {0x1B, 0x1B, 0x1B, 0x1B, 0x01, 0x01, 0x01, 0x01};

// Table of the reflected polynomial 0x1021 (= 0x8408), shared by X-25 and KERMIT.
constexpr std::array<uint16_t, 256> make_table() {
  std::array<uint16_t, 256> t{};
  for (unsigned i = 0; i < 256; ++i) {
    uint16_t c = uint16_t(i);
    for (int k = 0; k < 8; ++k) c = (c & 1) ? uint16_t((c >> 1) ^ 0x8408) : uint16_t(c >> 1);
    t[i] = c;
  }
  return t;
}
constexpr auto kTable = make_table();

uint16_t crc_reflected(std::span<const uint8_t> data, uint16_t crc) {
  for (uint8_t b : data) crc = uint16_t((crc >> 8) ^ kTable[(crc ^ b) & 0xFF]);
  return crc;
}

bool is_block(const uint8_t* p, const uint8_t (&what)[4]) { return std::memcmp(p, what, 4) == 0; }

}  // namespace

uint16_t crc16_x25(std::span<const uint8_t> data) {
  return uint16_t(crc_reflected(data, 0xFFFF) ^ 0xFFFF);
}

uint16_t crc16_kermit(std::span<const uint8_t> data) { return crc_reflected(data, 0); }

bool unwrap(std::span<const uint8_t> f, Transport& out, std::string& error) {
  out = Transport{};
  if (f.size() < 16 || f.size() % 4 != 0 || std::memcmp(f.data(), kStart, 8) != 0) {
    error = "not an SML transport frame (start sequence, length a multiple of 4)";
    return false;
  }
  const size_t end = f.size() - 8;  // the end block: 1B1B1B1B 1A pad crc crc
  if (!is_block(f.data() + end, kEsc) || f[end + 4] != 0x1A) {
    error = "frame does not end with the end sequence 1B1B1B1B 1A";
    return false;
  }
  out.padding = f[end + 5];
  out.crc_sent = uint16_t(f[end + 6] | (f[end + 7] << 8));
  out.crc_computed = crc16_x25(f.first(f.size() - 2));
  if (out.crc_sent != out.crc_computed) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "CRC mismatch: frame says %04X, bytes give %04X", out.crc_sent,
                  out.crc_computed);
    error = buf;
    return false;
  }
  for (size_t i = 8; i < end; i += 4) {
    if (!is_block(f.data() + i, kEsc)) {
      out.payload.append(reinterpret_cast<const char*>(f.data() + i), 4);
      continue;
    }
    if (i + 4 < end && is_block(f.data() + i + 4, kEsc)) {
      out.payload.append(reinterpret_cast<const char*>(kEsc), 4);
      i += 4;
      continue;
    }
    error = "unknown escape sequence inside the frame at byte " + std::to_string(i);
    return false;
  }
  if (out.padding > 3 || out.padding > out.payload.size()) {
    error = "padding count " + std::to_string(out.padding) + " out of range";
    return false;
  }
  out.payload.resize(out.payload.size() - out.padding);
  return true;
}

std::string wrap(std::string_view messages) {
  std::string f(reinterpret_cast<const char*>(kStart), 8);
  const size_t pad = (4 - messages.size() % 4) % 4;
  std::string body(messages);
  body.append(pad, '\0');
  for (size_t i = 0; i < body.size(); i += 4) {
    if (std::memcmp(body.data() + i, kEsc, 4) == 0)
      f.append(reinterpret_cast<const char*>(kEsc), 4);
    f.append(body, i, 4);
  }
  f.append(reinterpret_cast<const char*>(kEsc), 4);
  f += '\x1A';
  f += static_cast<char>(pad);
  const uint16_t crc = crc16_x25({reinterpret_cast<const uint8_t*>(f.data()), f.size()});
  f += static_cast<char>(crc & 0xFF);
  f += static_cast<char>(crc >> 8);
  return f;
}

// --- Framer

void Framer::feed(const uint8_t* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (in_frame_)
      frame_byte(data[i]);
    else
      hunt_byte(data[i]);
  }
}

// Outside a frame: keep only the bytes that may begin a start sequence.
void Framer::hunt_byte(uint8_t c) {
  hunt_ += static_cast<char>(c);
  while (!hunt_.empty() && std::memcmp(hunt_.data(), kStart, hunt_.size()) != 0) {
    hunt_.erase(0, 1);
    ++counters_.discarded_bytes;
  }
  if (hunt_.size() == 8) {
    hunt_.clear();
    start_frame();
  }
}

void Framer::start_frame() {
  buf_.assign(reinterpret_cast<const char*>(kStart), 8);
  block_at_ = 8;
  esc_ = Esc::none;
  in_frame_ = true;
}

void Framer::frame_byte(uint8_t c) {
  if (buf_.size() >= kMaxFrame) {
    drop(&Counters::oversize);
    hunt_byte(c);
    return;
  }
  buf_ += static_cast<char>(c);
  // A start sequence off the block grid: the stream lost bytes and a new frame begins.
  const size_t n = buf_.size();
  if (c == 0x01 && n >= 16 && (n - 8) % 4 != 0 &&
      std::memcmp(buf_.data() + n - 8, kStart, 8) == 0) {
    buf_.resize(n - 8);
    drop(&Counters::truncated);
    start_frame();
    return;
  }
  if (n - block_at_ == 4) block_done();
}

void Framer::block_done() {
  const auto* b = reinterpret_cast<const uint8_t*>(buf_.data() + block_at_);
  const bool esc = is_block(b, kEsc);
  block_at_ += 4;
  if (esc_ == Esc::none) {
    if (esc) esc_ = Esc::after_escape;
    return;
  }
  esc_ = Esc::none;
  if (esc) return;  // an escaped 1B1B1B1B inside the messages
  if (b[0] == 0x01 && b[1] == 0x01 && b[2] == 0x01 && b[3] == 0x01) {
    buf_.resize(buf_.size() - 8);  // a new start sequence: the frame so far was cut off
    drop(&Counters::truncated);
    start_frame();
    return;
  }
  if (b[0] == 0x1A) {
    finish_frame();
    return;
  }
  drop(&Counters::bad_escape);
}

void Framer::finish_frame() {
  const auto* p = reinterpret_cast<const uint8_t*>(buf_.data());
  const size_t n = buf_.size();
  const uint16_t sent = uint16_t(p[n - 2] | (p[n - 1] << 8));
  if (check_crc && (p[n - 3] > 3 || crc16_x25({p, n - 2}) != sent)) {
    drop(&Counters::crc_errors);
    return;
  }
  if (ready_.size() >= kMaxQueued) {
    counters_.discarded_bytes += ready_.front().size();
    ready_.pop_front();
    ++counters_.dropped;
  }
  ready_.push_back(std::move(buf_));
  buf_ = std::string();
  ++counters_.frames;
  in_frame_ = false;
}

void Framer::drop(uint64_t Counters::*why) {
  ++(counters_.*why);
  counters_.discarded_bytes += buf_.size();
  buf_.clear();
  in_frame_ = false;
}

void Framer::reset() {
  counters_.discarded_bytes += buf_.size() + hunt_.size();
  buf_.clear();
  hunt_.clear();
  in_frame_ = false;
}

bool Framer::pop(std::string& frame) {
  if (ready_.empty()) return false;
  frame = std::move(ready_.front());
  ready_.pop_front();
  return true;
}

}  // namespace mp::sml
