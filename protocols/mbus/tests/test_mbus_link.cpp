// M-Bus link layer helpers: request frames, FCB handling, the byte receiver, timeouts.
#include <doctest/doctest.h>

#include <vector>

#include "protocols/mbus/mbus_link.h"
#include "protocols/mbus/mbus.h"

using namespace mp::mbus_link;
using Status = Receiver::Status;

namespace {
std::vector<uint8_t> bytes(std::initializer_list<int> l) {
  std::vector<uint8_t> v;
  for (int b : l) v.push_back(static_cast<uint8_t>(b));
  return v;
}
}  // namespace

TEST_CASE("request frames") {
  CHECK(snd_nke(1) == ShortFrame{0x10, 0x40, 0x01, 0x41, 0x16});
  CHECK(snd_nke(0xFE) == ShortFrame{0x10, 0x40, 0xFE, 0x3E, 0x16});  // checksum wraps
  CHECK(req_ud2(1, true) == ShortFrame{0x10, 0x7B, 0x01, 0x7C, 0x16});
  CHECK(req_ud2(1, false) == ShortFrame{0x10, 0x5B, 0x01, 0x5C, 0x16});
  // Our own frames decode as valid short frames.
  const auto f = req_ud2(0x25, true);
  const auto d = mp::mbus::decode(f);
  REQUIRE(d.ok());
  CHECK(d.frame.type == mp::mbus::FrameType::short_frame);
  CHECK(d.frame.control == 0x7B);
  CHECK(d.frame.address == 0x25);
}

TEST_CASE("FCB toggles only after a reply") {
  FcbState s;
  CHECK(s.request(5)[1] == 0x7B);
  s.reply_received();
  CHECK(s.request(5)[1] == 0x5B);
  CHECK(s.request(5)[1] == 0x5B);  // no reply: repeat with the same FCB
  s.reply_received();
  CHECK(s.request(5)[1] == 0x7B);
  s.reply_received();
  s.reset();
  CHECK(s.fcb());
}

TEST_CASE("receiver assembles frames from pieces") {
  Receiver r;
  CHECK(r.push({}) == Status::need_more);
  CHECK(r.push(bytes({0xE5})) == Status::frame);
  CHECK(r.frame().size() == 1);
  CHECK(r.consume() == Status::need_more);

  const auto f = bytes({0x68, 0x04, 0x04, 0x68, 0x08, 0x01, 0x70, 0x08, 0x81, 0x16});
  for (size_t i = 0; i + 1 < f.size(); ++i) {
    CAPTURE(i);
    CHECK(r.push(std::span(f).subspan(i, 1)) == Status::need_more);
  }
  CHECK(r.push(std::span(f).last(1)) == Status::frame);
  CHECK(std::vector<uint8_t>(r.frame().begin(), r.frame().end()) == f);
  const auto d = mp::mbus::decode(r.frame());
  REQUIRE(d.ok());
  CHECK(d.frame.app_error == 8);
  r.consume();

  // Two frames in one read: the second stays buffered.
  auto two = bytes({0xE5, 0x10, 0x5B, 0x01, 0x5C, 0x16});
  CHECK(r.push(two) == Status::frame);
  CHECK(r.frame().size() == 1);
  CHECK(r.buffered() == 6);
  CHECK(r.consume() == Status::frame);
  CHECK(r.frame().size() == 5);
  CHECK(r.consume() == Status::need_more);
  CHECK(r.buffered() == 0);
}

TEST_CASE("receiver detects garbage") {
  Receiver r;
  CHECK(r.push(bytes({0x00})) == Status::garbage);
  CHECK(r.error() == "invalid frame start byte 0x00");
  CHECK(r.push(bytes({0xE5})) == Status::garbage);  // stays garbage until reset
  r.reset();
  CHECK(r.push(bytes({0x68, 0x05, 0x04, 0x68})) == Status::garbage);
  CHECK(r.error() == "length fields differ (0x05 != 0x04)");
  r.reset();
  CHECK(r.push(bytes({0x10, 0x5B, 0x01, 0x5D, 0x16})) == Status::garbage);
  CHECK(r.error() == "checksum mismatch (frame 0x5D, computed 0x5C)");
  r.reset();
  CHECK(r.push(bytes({0x10, 0x5B, 0x01, 0x5C, 0x17})) == Status::garbage);
  CHECK(r.error() == "missing stop byte (0x17)");
  r.reset();
  CHECK(r.push(bytes({0x68, 0x02, 0x02, 0x68})) == Status::garbage);
  CHECK(r.error() == "invalid length field 0x02");
}

TEST_CASE("reply timeout: 11 bit times per byte + 330 bit times + 50 ms") {
  using std::chrono::microseconds;
  CHECK(reply_timeout(2400) == microseconds(1383750));  // (330 + 11*261)/2400 s + 50 ms
  CHECK(reply_timeout(2400, 1) == microseconds(192084));
  CHECK(reply_timeout(300, 1) == microseconds(1186667));
  CHECK(reply_timeout(9600, 261) == microseconds(383438));
  CHECK(reply_timeout(0, 1) > microseconds(0));  // no division by zero
}

TEST_CASE("more records follow") {
  const auto one =
      mp::mbus::decode(bytes({0x68, 0x10, 0x10, 0x68, 0x08, 0x01, 0x72, 0x78, 0x56, 0x34, 0x12,
                              0x24, 0x40, 0x01, 0x07, 0x55, 0x00, 0x00, 0x00, 0x1F, 0x6F, 0x16}));
  REQUIRE_MESSAGE(one.ok(), one.error);
  CHECK(more_records_follow(one.frame));
  const auto last =
      mp::mbus::decode(bytes({0x68, 0x10, 0x10, 0x68, 0x08, 0x01, 0x72, 0x78, 0x56, 0x34, 0x12,
                              0x24, 0x40, 0x01, 0x07, 0x55, 0x00, 0x00, 0x00, 0x0F, 0x5F, 0x16}));
  REQUIRE_MESSAGE(last.ok(), last.error);
  CHECK_FALSE(more_records_follow(last.frame));
}
