// The SML transport layer, version 1 (SML 1.04, protocols/sml/README.md): a file travels as
//   1B1B1B1B 01010101  <escaped messages> <0-3 padding bytes 00>  1B1B1B1B 1A <pad> <crc lo> <crc
//   hi>
// The stream after the start sequence is read in 4-byte blocks; a block 1B1B1B1B inside the
// messages is sent twice (escaped). The CRC is CRC-16/X-25 over everything from the start
// sequence to the padding count, sent low byte first.
//
// Framer: splits a byte stream (serial port, TCP) into whole transport frames, bytes exactly as
// received. Pure: no I/O; feed() bytes in any chunking, then pop() frames.
//  - Bytes outside a frame (noise, a frame's tail after a replug) are discarded and counted.
//  - A start sequence where a block was expected, or anywhere inside the frame at an
//    unaligned offset (a lost byte shifted the blocks), means the frame in progress was cut
//    off: it is dropped (truncated + 1) and the new one starts.
//  - An unknown escape (1B1B1B1B then neither 1B1B1B1B, 01010101 nor 1A..) drops the frame
//    (bad_escape + 1); a frame longer than kMaxFrame is dropped (oversize + 1).
//  - A frame whose CRC does not match is dropped (crc_errors + 1); so is one whose padding
//    count is above 3.
//  - At most kMaxQueued frames wait for pop(); the oldest is dropped (dropped + 1) after that.
// Dropped bytes are counted in discarded_bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>

namespace mp::sml {

// CRC-16/X-25 (poly 0x1021 reflected, init 0xFFFF, final xor 0xFFFF; "123456789" -> 0x906E).
uint16_t crc16_x25(std::span<const uint8_t> data);
// CRC-16/KERMIT (the same without init and final xor), which some meters use for messages.
uint16_t crc16_kermit(std::span<const uint8_t> data);

// What unwrap() found in a transport frame.
struct Transport {
  std::string payload;  // the messages, unescaped, padding removed
  uint16_t crc_sent = 0, crc_computed = 0;
  unsigned padding = 0;
};

// Checks and unescapes one whole frame (as the framer delivers it, start sequence to CRC).
// False with `error` set when it is not one (bad start or end, unknown escape, CRC mismatch,
// padding count above 3 or longer than the messages).
bool unwrap(std::span<const uint8_t> frame, Transport& out, std::string& error);

// Wraps messages into a transport frame: escapes 1B1B1B1B blocks, pads to 4 bytes, appends
// the end sequence and the CRC.
std::string wrap(std::string_view messages);

class Framer {
 public:
  static constexpr size_t kMaxFrame = 16384;
  static constexpr size_t kMaxQueued = 16;

  struct Counters {
    uint64_t frames = 0;           // frames delivered
    uint64_t discarded_bytes = 0;  // bytes not delivered in a frame
    uint64_t truncated = 0;        // frames cut off by a new start sequence
    uint64_t crc_errors = 0;       // frames whose CRC (or padding count) was wrong
    uint64_t bad_escape = 0;       // frames with an unknown escape sequence
    uint64_t oversize = 0;         // frames longer than kMaxFrame
    uint64_t dropped = 0;          // frames nobody popped in time
  };

  // False: frames are delivered whatever their CRC (`meterpipe decode sml` reports it).
  bool check_crc = true;

  void feed(const uint8_t* data, size_t n);
  void feed(std::string_view bytes) {
    feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  // Moves the oldest whole frame into `frame`; false when none is waiting.
  bool pop(std::string& frame);
  // Forgets the frame in progress (after a reconnect); its bytes count as discarded.
  void reset();

  const Counters& counters() const { return counters_; }
  bool in_frame() const { return in_frame_; }
  size_t buffered() const { return buf_.size() + hunt_.size(); }

 private:
  void hunt_byte(uint8_t c);
  void frame_byte(uint8_t c);
  void block_done();
  void drop(uint64_t Counters::*why);
  void start_frame();
  void finish_frame();

  bool in_frame_ = false;
  std::string hunt_;     // the last bytes seen while hunting (a start sequence in the making)
  std::string buf_;      // the frame so far, as received
  size_t block_at_ = 0;  // offset of the current 4-byte block in buf_
  enum class Esc { none, after_escape, end } esc_ = Esc::none;
  std::deque<std::string> ready_;
  Counters counters_;
};

}  // namespace mp::sml
