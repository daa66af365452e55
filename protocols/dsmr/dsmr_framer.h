// Splits a P1 byte stream (as it comes off the serial port or TCP) into DSMR telegrams.
// Pure: no I/O; feed() bytes in any chunking, then pop() complete telegrams.
//
// A telegram runs from '/' to the end of its '!' line: "!" + up to 4 hex CRC digits + CRLF, or
// "!" + CRLF (DSMR 2.2/3 without CRC); LF-only line ends are accepted. The '!' (and the CRC line)
// may arrive in a later feed() than the rest.
//  - Bytes outside a telegram (leading garbage, noise between telegrams) are discarded and
//    counted in discarded_bytes. Outside a telegram a '/' anywhere starts one.
//  - A '/' at the start of a line inside a telegram means the meter restarted the telegram (the
//    one in progress was cut off): the partial one is dropped (truncated + 1, its bytes counted in
//    discarded_bytes) and the new one starts.
//  - A telegram is bounded to kMaxFrame bytes: a longer one is dropped (oversize + 1, bytes
//    counted in discarded_bytes) and bytes are discarded until the next '/', so bytes without an
//    end never grow memory.
//  - On the '!' line, anything that is not a hex digit, blank or line end ends the telegram
//    without it (the byte is then looked at again outside the telegram). More than 16 bytes on
//    the '!' line also end it. The decoder reports a damaged CRC field.
//  - At most kMaxQueued telegrams wait for pop(); when a caller does not pop, the oldest is
//    dropped (dropped + 1).
//  - finish() says the input ended (end of a file or a decrypted frame, or a line that went
//    quiet): a telegram whose '!' line already holds its complete CRC (4 hex digits) is
//    delivered without the CR LF that never came (DSMR 5.0.2: the CRC is 4 hex digits, so
//    the telegram is whole); anything shorter stays incomplete.
// Frames delivered are counted in frames. The framer does not check the CRC: that is the
// decoder's job.
// Header-only so that process/ (the decode command) can use it without linking mp_acquire
// (mp_acquire already depends on mp_process).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>

namespace mp::dsmr {

class Framer {
 public:
  static constexpr size_t kMaxFrame = 8192;
  static constexpr size_t kMaxQueued = 16;

  struct Counters {
    uint64_t frames = 0;           // telegrams completed
    uint64_t discarded_bytes = 0;  // bytes not delivered in a telegram
    uint64_t oversize = 0;         // telegrams longer than kMaxFrame, dropped
    uint64_t truncated = 0;        // telegrams cut off by a new '/', dropped
    uint64_t dropped = 0;          // completed telegrams dropped because nobody popped them
  };

  void feed(const uint8_t* data, size_t n);
  void feed(std::string_view bytes) {
    feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  // Moves the oldest complete telegram into `telegram`; false when none is waiting.
  bool pop(std::string& telegram);

  const Counters& counters() const { return counters_; }
  // Bytes held for the telegram in progress (never more than kMaxFrame).
  size_t buffered() const { return buf_.size(); }
  // True while a telegram has started but not ended.
  bool in_telegram() const { return state_ != State::hunt; }
  // Forgets the telegram in progress (e.g. after a reconnect); counts its bytes as discarded.
  void reset();
  // End of input: delivers a telegram that ends with its 4 CRC digits (see above); true when
  // it did. Otherwise the telegram in progress (if any) is kept.
  bool finish();

 private:
  enum class State { hunt, body, end_line };
  void start();
  void complete();
  void drop_partial();

  State state_ = State::hunt;
  bool line_start_ = false;
  size_t end_line_len_ = 0;
  std::string buf_;
  std::deque<std::string> ready_;
  Counters counters_;
};

namespace framer_detail {
inline bool is_hex(uint8_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
inline constexpr size_t kMaxEndLine = 16;
}  // namespace framer_detail

inline void Framer::start() {
  buf_.clear();
  if (buf_.capacity() < 1024) buf_.reserve(1024);
  buf_ += '/';
  state_ = State::body;
  line_start_ = false;
}

inline void Framer::drop_partial() {
  counters_.discarded_bytes += buf_.size();
  buf_.clear();
  state_ = State::hunt;
}

inline void Framer::complete() {
  if (ready_.size() >= kMaxQueued) {
    counters_.discarded_bytes += ready_.front().size();
    ready_.pop_front();
    ++counters_.dropped;
  }
  ready_.push_back(std::move(buf_));
  buf_ = std::string();
  ++counters_.frames;
  state_ = State::hunt;
}

inline void Framer::reset() { drop_partial(); }

inline bool Framer::finish() {
  if (state_ != State::end_line) return false;
  // The '!' line so far: "!" then the CRC digits, perhaps blanks after them.
  const size_t bang = buf_.rfind('!');
  size_t digits = 0;
  for (size_t i = bang + 1; i < buf_.size(); ++i) {
    const auto c = static_cast<uint8_t>(buf_[i]);
    if (framer_detail::is_hex(c)) {
      if (i != bang + 1 + digits) return false;  // a blank inside the CRC field
      ++digits;
    } else if (c != ' ' && c != '\t' && c != '\r') {
      return false;
    }
  }
  if (digits != 4) return false;
  complete();
  return true;
}

inline void Framer::feed(const uint8_t* data, size_t n) {
  size_t i = 0;
  while (i < n) {
    switch (state_) {
      case State::hunt: {
        const void* slash = std::memchr(data + i, '/', n - i);
        if (!slash) {
          counters_.discarded_bytes += n - i;
          return;
        }
        size_t at = static_cast<const uint8_t*>(slash) - data;
        counters_.discarded_bytes += at - i;
        i = at + 1;
        start();
        break;
      }
      case State::body: {
        uint8_t c = data[i];
        if (line_start_ && c == '/') {  // a new telegram begins: the current one was cut off
          ++counters_.truncated;
          drop_partial();
          ++i;
          start();
          break;
        }
        if (buf_.size() >= kMaxFrame) {
          ++counters_.oversize;
          drop_partial();
          break;  // byte i is looked at again while hunting
        }
        if (line_start_ && c == '!') {
          buf_ += '!';
          ++i;
          state_ = State::end_line;
          end_line_len_ = 0;
          break;
        }
        // Copy up to and including the next line end, within the size bound.
        size_t room = kMaxFrame - buf_.size();
        size_t avail = n - i < room ? n - i : room;
        const void* nl = std::memchr(data + i, '\n', avail);
        size_t take =
            nl ? static_cast<size_t>(static_cast<const uint8_t*>(nl) - (data + i)) + 1 : avail;
        buf_.append(reinterpret_cast<const char*>(data + i), take);
        i += take;
        line_start_ = nl != nullptr;
        break;
      }
      case State::end_line: {
        uint8_t c = data[i];
        bool fits = c == '\n' || framer_detail::is_hex(c) || c == '\r' || c == ' ' || c == '\t';
        if (!fits) {
          complete();  // byte i is looked at again while hunting
          break;
        }
        if (buf_.size() >= kMaxFrame) {
          ++counters_.oversize;
          drop_partial();
          break;
        }
        if (c != '\n' && end_line_len_ >= framer_detail::kMaxEndLine) {
          complete();  // end line too long: deliver, the decoder reports it
          break;
        }
        buf_ += static_cast<char>(c);
        ++i;
        if (c == '\n')
          complete();
        else
          ++end_line_len_;
        break;
      }
    }
  }
}

inline bool Framer::pop(std::string& telegram) {
  if (ready_.empty()) return false;
  telegram = std::move(ready_.front());
  ready_.pop_front();
  return true;
}

}  // namespace mp::dsmr
