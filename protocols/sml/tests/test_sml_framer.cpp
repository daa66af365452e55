// The SML transport framer (protocols/sml/sml_transport.h) on real frames: any chunking,
// noise between frames, frames cut off by a restart or a lost byte, CRC errors, unknown
// escapes, oversize, and the escaped 1B1B1B1B inside a frame.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "protocols/sml/sml_transport.h"
#include "protocols/sml/sml_writer.h"
#include "protocols/sml/tests/sml_test_data.h"

using namespace mp::sml;
namespace td = mp::sml::testdata;

namespace {

std::vector<std::string> real_frames() {
  std::vector<std::string> all;
  for (const auto& name : td::files())
    for (auto& f : td::frames(name)) all.push_back(std::move(f));
  return all;
}

std::vector<std::string> pop_all(Framer& fr) {
  std::vector<std::string> out;
  std::string f;
  while (fr.pop(f)) out.push_back(f);
  return out;
}

}  // namespace

TEST_CASE("every real frame, back to back, in chunks of 1 to 61 bytes") {
  const auto frames = real_frames();
  REQUIRE(frames.size() >= 13);
  std::string stream;
  for (const auto& f : frames) stream += f;
  for (size_t chunk : {1, 2, 3, 4, 7, 61, 4096}) {
    Framer fr;
    std::vector<std::string> got;
    for (size_t i = 0; i < stream.size(); i += chunk) {
      fr.feed(std::string_view(stream).substr(i, chunk));
      for (auto& f : pop_all(fr)) got.push_back(f);
    }
    INFO("chunk ", chunk);
    CHECK(got == frames);
    CHECK(fr.counters().frames == frames.size());
    CHECK(fr.counters().discarded_bytes == 0);
    CHECK(!fr.in_frame());
  }
}

TEST_CASE("noise before, between and after frames is skipped and counted") {
  const auto frames = real_frames();
  const std::string noise1 = std::string("\x1B\x1B\x1B\x01\x01garbage\x00\xFF", 14);
  const std::string noise2 = "\x1B\x1B\x1B\x1B\x1B\x01\x01\x01";  // almost a start sequence
  Framer fr;
  fr.feed(noise1 + frames[0] + noise2 + frames[1] + noise1 + frames[2] + "tail");
  const auto got = pop_all(fr);
  REQUIRE(got.size() == 3);
  CHECK(got[0] == frames[0]);
  CHECK(got[1] == frames[1]);
  CHECK(got[2] == frames[2]);
  CHECK(fr.counters().discarded_bytes == 2 * noise1.size() + noise2.size() + 4);
}

TEST_CASE("a frame cut off by the next start sequence is dropped, the next one kept") {
  const auto frames = real_frames();
  SUBCASE("cut on the block grid") {
    Framer fr;
    fr.feed(frames[0].substr(0, 100) + frames[1]);
    const auto got = pop_all(fr);
    REQUIRE(got.size() == 1);
    CHECK(got[0] == frames[1]);
    CHECK(fr.counters().truncated == 1);
    CHECK(fr.counters().discarded_bytes == 100);
  }
  SUBCASE("cut off the grid (a byte lost: the blocks shifted)") {
    Framer fr;
    fr.feed(frames[0].substr(0, 101) + frames[1]);
    const auto got = pop_all(fr);
    REQUIRE(got.size() == 1);
    CHECK(got[0] == frames[1]);
    CHECK(fr.counters().truncated == 1);
    CHECK(fr.counters().discarded_bytes == 101);
  }
  SUBCASE("one byte missing in the middle of a frame") {
    Framer fr;
    std::string lossy = frames[0];
    lossy.erase(60, 1);
    fr.feed(lossy + frames[1] + frames[2]);
    const auto got = pop_all(fr);
    REQUIRE(got.size() == 2);
    CHECK(got[0] == frames[1]);
    CHECK(got[1] == frames[2]);
  }
}

TEST_CASE("CRC errors, bad padding counts and unknown escapes drop the frame") {
  const auto frames = real_frames();
  Framer fr;
  std::string bad_crc = frames[0];
  bad_crc.back() ^= 0x01;
  std::string bad_pad = frames[1];
  bad_pad[bad_pad.size() - 3] = 7;
  std::string bad_escape =
      frames[2].substr(0, 16) + std::string("\x1B\x1B\x1B\x1B\x02\x02\x02\x02", 8);
  fr.feed(bad_crc + bad_pad + bad_escape + frames[3]);
  const auto got = pop_all(fr);
  REQUIRE(got.size() == 1);
  CHECK(got[0] == frames[3]);
  CHECK(fr.counters().crc_errors == 2);
  CHECK(fr.counters().bad_escape == 1);
  CHECK(fr.counters().discarded_bytes == bad_crc.size() + bad_pad.size() + bad_escape.size());
}

TEST_CASE("a start sequence without an end never grows memory beyond kMaxFrame") {
  Framer fr;
  fr.feed(std::string("\x1B\x1B\x1B\x1B\x01\x01\x01\x01", 8));
  const std::string filler(4096, '\x42');
  for (int i = 0; i < 10; ++i) {
    fr.feed(filler);
    CHECK(fr.buffered() <= Framer::kMaxFrame);
  }
  CHECK(fr.counters().oversize == 1);
  const auto frames = real_frames();
  fr.feed(frames[0]);
  const auto got = pop_all(fr);
  REQUIRE(got.size() == 1);
  CHECK(got[0] == frames[0]);
}

TEST_CASE("reset() forgets a frame in progress; the queue is bounded") {
  const auto frames = real_frames();
  Framer fr;
  fr.feed(frames[0].substr(0, 50));
  CHECK(fr.in_frame());
  fr.reset();
  CHECK(!fr.in_frame());
  CHECK(fr.counters().discarded_bytes == 50);
  fr.feed(frames[0].substr(50) + frames[1]);  // the rest of the old one is noise now
  auto got = pop_all(fr);
  REQUIRE(got.size() == 1);
  CHECK(got[0] == frames[1]);
  for (size_t i = 0; i < Framer::kMaxQueued + 3; ++i) fr.feed(frames[0]);
  CHECK(fr.counters().dropped == 3);
  CHECK(pop_all(fr).size() == Framer::kMaxQueued);
}

TEST_CASE("unwrap removes the padding and undoes the escaping") {
  for (size_t n = 1; n <= 9; ++n) {
    const std::string msgs(n, '\x1B');
    Transport t;
    std::string err;
    const std::string f = wrap(msgs);
    REQUIRE_MESSAGE(unwrap({reinterpret_cast<const uint8_t*>(f.data()), f.size()}, t, err), err);
    CHECK(t.payload == msgs);
    CHECK(t.padding == (4 - n % 4) % 4);
  }
}
