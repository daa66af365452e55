// M-Bus link layer helpers for polling a meter (EN 13757-2). Pure: no I/O, no clocks; the
// serial/TCP code feeds bytes in and sends the frames built here.
//
// Poll cycle: send SND_NKE (answer: E5), then REQ_UD2 with FCB = 1; the reply is a long frame
// (RSP_UD). While the decoded reply says "more records follow" (DIF 0x1F), send REQ_UD2
// again with the FCB toggled. On a missing or damaged reply, repeat the request with the same
// FCB (the slave then repeats its last reply).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "protocols/mbus/mbus.h"

namespace mp::mbus_link {

using ShortFrame = std::array<uint8_t, 5>;

// 10 C A CS 16 with CS = C + A (mod 256).
ShortFrame short_frame(uint8_t control, uint8_t address);
// SND_NKE: 10 40 A CS 16 (link reset; the slave answers E5).
ShortFrame snd_nke(uint8_t address);
// REQ_UD2: 10 5B A CS 16 (FCB = 0) or 10 7B A CS 16 (FCB = 1); FCV is always set.
ShortFrame req_ud2(uint8_t address, bool fcb);

// Frame count bit bookkeeping for one slave.
class FcbState {
 public:
  void reset() { fcb_ = true; }  // after SND_NKE: next REQ_UD2 has FCB = 1
  bool fcb() const { return fcb_; }
  ShortFrame request(uint8_t address) const { return req_ud2(address, fcb_); }
  void reply_received() { fcb_ = !fcb_; }  // a valid reply: toggle for the next request
  // No reply or a damaged one: keep the FCB, so the slave repeats its last reply.

 private:
  bool fcb_ = true;
};

// Accumulates received bytes until one whole frame (E5, short or long) is there.
class Receiver {
 public:
  enum class Status { need_more, frame, garbage };

  // Appends bytes and reports the state. After `frame`, frame() is the frame and bytes that
  // came after it stay buffered (call consume() before the next push). After `garbage`,
  // error() says why; call reset() and wait for the line to be quiet.
  Status push(std::span<const uint8_t> bytes);
  Status status() const { return status_; }
  std::span<const uint8_t> frame() const;
  const std::string& error() const { return error_; }
  size_t buffered() const { return buf_.size(); }
  // Drops the frame just returned; re-examines the bytes that followed it.
  Status consume();
  void reset();

 private:
  Status examine();
  std::vector<uint8_t> buf_;
  size_t frame_size_ = 0;
  Status status_ = Status::need_more;
  std::string error_;
};

// Longest M-Bus frame: 68 L L 68 + 255 bytes (C A CI + 252 data) + CS 16.
constexpr size_t kMaxFrameBytes = 261;

// How long to wait for a complete reply of `reply_bytes` bytes at `baud` (EN 13757-2: the
// slave starts answering within 330 bit times, plus 50 ms of tolerance for repeaters and
// converters; each byte is 11 bit times: start bit, 8 data bits, even parity, stop bit).
//   timeout = (330 + 11 * reply_bytes) / baud seconds + 50 ms, rounded up to 1 µs.
// At 2400 baud, the default 261 bytes give 1383750 µs; an E5 (1 byte) 192084 µs.
std::chrono::microseconds reply_timeout(unsigned baud, size_t reply_bytes = kMaxFrameBytes);

// Whether the decoded reply asks for another REQ_UD2 (a record with DIF 0x1F).
inline bool more_records_follow(const mp::mbus::Frame& f) { return f.more_records_follow; }

}  // namespace mp::mbus_link
