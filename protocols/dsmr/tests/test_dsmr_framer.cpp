// DSMR framer: splitting P1 byte streams into telegrams, noise, cut-offs, bounds, counters.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "protocols/dsmr/dsmr_framer.h"
#include "protocols/dsmr/dsmr.h"

namespace {

std::string read_file(const std::string& name) {
  std::ifstream f(std::string(MP_TEST_DATA_DIR) + "/dsmr/" + name, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot open " << name);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> pop_all(mp::dsmr::Framer& f) {
  std::vector<std::string> out;
  std::string t;
  while (f.pop(t)) out.push_back(t);
  return out;
}

const char* const kCorpus[] = {"fluvius_v171", "fluvius_v171_alt",
                               "iskra_ie",     "sagemcom_t210_d_r",
                               "unpadded_crc", "v2_2",
                               "v3",           "v4_2",
                               "v5",           "v5_eon_hu",
                               "v5_two_mbus"};

}  // namespace

TEST_CASE("one telegram in one feed") {
  std::string v5 = read_file("v5.txt");
  mp::dsmr::Framer f;
  f.feed(v5);
  auto out = pop_all(f);
  REQUIRE(out.size() == 1);
  CHECK(out[0] == v5);
  CHECK(f.counters().frames == 1);
  CHECK(f.counters().discarded_bytes == 0);
  CHECK(f.buffered() == 0);
  CHECK_FALSE(f.in_telegram());
}

TEST_CASE("the corpus byte by byte, with garbage before and between") {
  std::string stream("\x00\xff garbage\r\nmore!noise\r\n", 24);
  const std::string noise("\r\n\x01\x02 noise between ");  // no '/' in the noise
  size_t garbage = stream.size();
  std::vector<std::string> sent;
  for (const char* name : kCorpus) {
    sent.push_back(read_file(std::string(name) + ".txt"));
    stream += sent.back();
    stream += noise;
    garbage += noise.size();
  }
  for (size_t chunk : {size_t(1), size_t(2), size_t(7), size_t(64), stream.size()}) {
    CAPTURE(chunk);
    mp::dsmr::Framer f;
    std::vector<std::string> got;
    for (size_t i = 0; i < stream.size(); i += chunk) {
      f.feed(reinterpret_cast<const uint8_t*>(stream.data()) + i,
             std::min(chunk, stream.size() - i));
      for (auto& t : pop_all(f)) got.push_back(t);
    }
    REQUIRE(got.size() == sent.size());
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == sent[i]);
    CHECK(f.counters().frames == sent.size());
    CHECK(f.counters().discarded_bytes == garbage);
    CHECK(f.counters().truncated == 0);
    CHECK(f.counters().oversize == 0);
    mp::dsmr::Result r;
    for (const auto& t : got) CHECK(mp::dsmr::decode(t, r));
  }
}

TEST_CASE("two telegrams glued together are split") {
  std::string a = read_file("v4_2.txt"), b = read_file("v5.txt");
  mp::dsmr::Framer f;
  f.feed(a + b);
  auto out = pop_all(f);
  REQUIRE(out.size() == 2);
  CHECK(out[0] == a);
  CHECK(out[1] == b);
}

TEST_CASE("the '!' and the CRC line arrive in later feeds") {
  std::string v5 = read_file("v5.txt");
  size_t bang = v5.find("\n!") + 1;
  mp::dsmr::Framer f;
  f.feed(v5.substr(0, bang));
  CHECK(pop_all(f).empty());
  CHECK(f.in_telegram());
  CHECK(f.buffered() == bang);
  f.feed("!6E");
  CHECK(pop_all(f).empty());
  f.feed("EE\r");
  CHECK(pop_all(f).empty());
  f.feed("\n");
  auto out = pop_all(f);
  REQUIRE(out.size() == 1);
  CHECK(out[0] == v5);
}

TEST_CASE("DSMR 2.2 without CRC, Q3D with noise lines after the end") {
  std::string q3d = read_file("esy5q3da1004_v304.txt");
  mp::dsmr::Framer f;
  f.feed(q3d);
  auto out = pop_all(f);
  REQUIRE(out.size() == 1);
  size_t end = q3d.find("\n!\r\n") + 4;
  CHECK(out[0] == q3d.substr(0, end));
  CHECK(f.counters().discarded_bytes == q3d.size() - end);  // "  25818685\r\nDE00...\r\n"
  mp::dsmr::Result r;
  CHECK(mp::dsmr::decode(out[0], r));
  CHECK_FALSE(r.crc_present);
}

TEST_CASE("a telegram cut off by a new '/' is dropped and counted") {
  std::string v4 = read_file("v4_2.txt"), v5 = read_file("v5.txt");
  std::string partial = v4.substr(0, 300);
  partial = partial.substr(0, partial.rfind('\n') + 1);  // cut at a line end
  mp::dsmr::Framer f;
  f.feed(partial + v5);
  auto out = pop_all(f);
  REQUIRE(out.size() == 1);
  CHECK(out[0] == v5);
  CHECK(f.counters().truncated == 1);
  CHECK(f.counters().discarded_bytes == partial.size());

  // A '/' inside a line is data, not a new telegram (e.g. the header's "\2").
  mp::dsmr::Framer g;
  std::string mid = v4.substr(0, 300) + "x/y\r\n" + v4.substr(300);
  g.feed(mid);
  out = pop_all(g);
  REQUIRE(out.size() == 1);
  CHECK(out[0] == mid);
  CHECK(g.counters().truncated == 0);
}

TEST_CASE("a missing end keeps waiting; reset() discards it") {
  std::string v5 = read_file("v5.txt");
  mp::dsmr::Framer f;
  f.feed(v5.substr(0, v5.find("\n!") + 1));
  CHECK(pop_all(f).empty());
  CHECK(f.in_telegram());
  size_t held = f.buffered();
  f.reset();
  CHECK_FALSE(f.in_telegram());
  CHECK(f.buffered() == 0);
  CHECK(f.counters().discarded_bytes == held);
  f.feed(v5);
  CHECK(pop_all(f).size() == 1);
}

TEST_CASE("LF-only line ends") {
  std::string t = "/ISk5\\2MT382-1000\n\n1-0:1.8.1(000004.426*kWh)\n!";
  char crc[8];
  std::snprintf(crc, sizeof crc, "%04X", mp::dsmr::crc16(t));
  t += std::string(crc) + "\n";
  mp::dsmr::Framer f;
  f.feed("noise" + t + t + "/AAA5\n\n!\n");
  auto out = pop_all(f);
  REQUIRE(out.size() == 3);
  CHECK(out[0] == t);
  CHECK(out[1] == t);
  CHECK(out[2] == "/AAA5\n\n!\n");
  mp::dsmr::Result r;
  REQUIRE(mp::dsmr::decode(out[0], r));
  CHECK(r.crc_ok);
  CHECK(r.reading.find("energy_import_t1_kwh")->number == 4.426);
  CHECK(f.counters().discarded_bytes == 5);
}

TEST_CASE("a byte that cannot be on the end line ends the telegram and is looked at again") {
  std::string v5 = read_file("v5.txt"), v4 = read_file("v4_2.txt");
  std::string no_eol = v5.substr(0, v5.size() - 2);  // "...!6EEE" with no line end
  mp::dsmr::Framer f;
  f.feed(no_eol + v4);
  auto out = pop_all(f);
  REQUIRE(out.size() == 2);
  CHECK(out[0] == no_eol);
  CHECK(out[1] == v4);
  mp::dsmr::Result r;
  CHECK(mp::dsmr::decode(out[0], r));
}

TEST_CASE("bytes without an end never grow memory") {
  mp::dsmr::Framer f;
  std::string junk(1000, 'a');
  junk += "\r\n";
  f.feed("/XXX5\r\n");
  for (int i = 0; i < 20; ++i) {
    f.feed(junk);
    CHECK(f.buffered() <= mp::dsmr::Framer::kMaxFrame);
  }
  CHECK(f.counters().oversize == 1);
  CHECK(f.counters().frames == 0);
  CHECK_FALSE(f.in_telegram());
  CHECK(f.counters().discarded_bytes == 7 + 20 * junk.size());
  // Recovers with the next telegram.
  std::string v5 = read_file("v5.txt");
  f.feed(v5);
  auto out = pop_all(f);
  REQUIRE(out.size() == 1);
  CHECK(out[0] == v5);

  // A telegram of exactly kMaxFrame bytes passes; one byte more does not.
  std::string head = "/XXX5\r\n\r\n";
  std::string tail = "!\r\n";
  std::string big = head +
                    std::string(mp::dsmr::Framer::kMaxFrame - head.size() - tail.size() - 2, 'b') +
                    "\r\n" + tail;
  REQUIRE(big.size() == mp::dsmr::Framer::kMaxFrame);
  mp::dsmr::Framer g;
  g.feed(big);
  CHECK(pop_all(g).size() == 1);
  std::string bigger =
      head + std::string(big.size() - head.size() - tail.size() - 1, 'b') + "\r\n" + tail;
  g.feed(bigger);
  CHECK(pop_all(g).empty());
  CHECK(g.counters().oversize == 1);
}

TEST_CASE("telegrams nobody pops are bounded too") {
  std::string v5 = read_file("v5.txt");
  mp::dsmr::Framer f;
  for (int i = 0; i < 20; ++i) f.feed(v5);
  CHECK(f.counters().frames == 20);
  CHECK(f.counters().dropped == 4);
  CHECK(f.counters().discarded_bytes == 4 * v5.size());
  CHECK(pop_all(f).size() == mp::dsmr::Framer::kMaxQueued);
}

TEST_CASE("100 KiB of random bytes: no crash, bounded buffer, every byte accounted for") {
  uint64_t s = 88172645463325252ULL;
  auto next = [&s] {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  };
  for (int variant = 0; variant < 2; ++variant) {
    std::string stream;
    while (stream.size() < 100 * 1024) {
      uint64_t r = next();
      // Variant 1 is biased towards the framing characters so that frames do happen.
      if (variant == 1 && r % 3 == 0)
        stream += "/!\r\n0A"[(r >> 8) % 6];
      else
        stream += static_cast<char>(r >> 24);
    }
    mp::dsmr::Framer f;
    uint64_t delivered = 0, popped = 0;
    size_t i = 0;
    while (i < stream.size()) {
      size_t n = 1 + next() % 300;
      n = std::min(n, stream.size() - i);
      f.feed(reinterpret_cast<const uint8_t*>(stream.data()) + i, n);
      i += n;
      CHECK(f.buffered() <= mp::dsmr::Framer::kMaxFrame);
      std::string t;
      while (f.pop(t)) {
        CHECK(t.size() <= mp::dsmr::Framer::kMaxFrame);
        CHECK(t[0] == '/');
        CHECK(t.back() != '\0');
        delivered += t.size();
        ++popped;
        mp::dsmr::Result r;
        mp::dsmr::decode(t, r);
      }
    }
    const auto& c = f.counters();
    CHECK(c.frames == popped);
    CHECK(c.discarded_bytes + delivered + f.buffered() == stream.size());
    if (variant == 1) {
      CHECK(c.frames > 0);
      CHECK(c.truncated > 0);
    }
  }
}
