#include "protocols/mbus/mbus_link.h"

#include <cstdio>

namespace mp::mbus_link {
namespace {

std::string hex2(unsigned v) {
  char b[8];
  std::snprintf(b, sizeof b, "%02X", v & 0xFFu);
  return b;
}

}  // namespace

ShortFrame short_frame(uint8_t control, uint8_t address) {
  return {0x10, control, address, static_cast<uint8_t>(control + address), 0x16};
}

ShortFrame snd_nke(uint8_t address) { return short_frame(0x40, address); }

ShortFrame req_ud2(uint8_t address, bool fcb) { return short_frame(fcb ? 0x7B : 0x5B, address); }

Receiver::Status Receiver::push(std::span<const uint8_t> bytes) {
  if (status_ == Status::garbage) return status_;
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
  if (status_ == Status::frame) return status_;
  return status_ = examine();
}

std::span<const uint8_t> Receiver::frame() const {
  if (status_ != Status::frame) return {};
  return std::span<const uint8_t>(buf_).first(frame_size_);
}

Receiver::Status Receiver::consume() {
  if (status_ == Status::frame) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(frame_size_));
    frame_size_ = 0;
    status_ = Status::need_more;
  }
  if (status_ == Status::garbage) return status_;
  return status_ = examine();
}

void Receiver::reset() {
  buf_.clear();
  frame_size_ = 0;
  status_ = Status::need_more;
  error_.clear();
}

Receiver::Status Receiver::examine() {
  if (buf_.empty()) return Status::need_more;
  const uint8_t start = buf_[0];
  size_t size = 0;
  if (start == 0xE5) {
    frame_size_ = 1;
    return Status::frame;
  }
  if (start == 0x10) {
    size = 5;
  } else if (start == 0x68) {
    if (buf_.size() < 4) return Status::need_more;
    if (buf_[1] != buf_[2]) {
      error_ = "length fields differ (0x" + hex2(buf_[1]) + " != 0x" + hex2(buf_[2]) + ")";
      return Status::garbage;
    }
    if (buf_[1] < 3) {
      error_ = "invalid length field 0x" + hex2(buf_[1]);
      return Status::garbage;
    }
    if (buf_[3] != 0x68) {
      error_ = "second start byte is 0x" + hex2(buf_[3]);
      return Status::garbage;
    }
    size = size_t{buf_[1]} + 6;
  } else {
    error_ = "invalid frame start byte 0x" + hex2(start);
    return Status::garbage;
  }
  if (buf_.size() < size) return Status::need_more;
  if (buf_[size - 1] != 0x16) {
    error_ = "missing stop byte (0x" + hex2(buf_[size - 1]) + ")";
    return Status::garbage;
  }
  uint8_t sum = 0;
  for (size_t i = start == 0x10 ? 1 : 4; i < size - 2; ++i) sum = uint8_t(sum + buf_[i]);
  if (sum != buf_[size - 2]) {
    error_ =
        "checksum mismatch (frame 0x" + hex2(buf_[size - 2]) + ", computed 0x" + hex2(sum) + ")";
    return Status::garbage;
  }
  frame_size_ = size;
  return Status::frame;
}

std::chrono::microseconds reply_timeout(unsigned baud, size_t reply_bytes) {
  if (baud == 0) baud = 1;
  const uint64_t bits = 330 + 11 * uint64_t{reply_bytes};
  const uint64_t us = (bits * 1000000 + baud - 1) / baud + 50000;
  return std::chrono::microseconds(static_cast<std::chrono::microseconds::rep>(us));
}

}  // namespace mp::mbus_link
