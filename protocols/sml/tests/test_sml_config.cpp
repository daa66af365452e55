// `protocol = "sml"` as configuration sees it (protocols/sml/spec.cpp): sources, the `sml`
// preset and its line settings, and one meter per IR head.
#include <doctest/doctest.h>

#include <string>

#include "config/config.h"
#include "protocols/specs.h"

namespace {

std::string errors(const std::string& toml) {
  const auto r = mp::config::load_string(toml, "t.toml");
  std::string all;
  for (const auto& e : r.errors) all += e.key + ": " + e.message + "\n";
  return all;
}

const std::string kSerial =
    "[[meter]]\nname = \"ehz\"\nprotocol = \"sml\"\nsource = \"serial\"\ndevice = "
    "\"/dev/ttyUSB0\"\n";

}  // namespace

TEST_CASE("an SML meter on serial, tcp or simulate is valid; file is not") {
  CHECK(errors(kSerial) == "");
  CHECK(errors(kSerial + "preset = \"sml\"\nbaud = 300\ndata_bits = 7\nparity = \"even\"\n") == "");
  CHECK(errors("[[meter]]\nname = \"b\"\nprotocol = \"sml\"\nsource = \"tcp\"\nhost = "
               "\"10.0.0.5\"\nport = 8888\n") == "");
  CHECK(errors("[[meter]]\nname = \"s\"\nprotocol = \"sml\"\nsource = \"simulate\"\n") == "");
  const std::string e =
      errors("[[meter]]\nname = \"f\"\nprotocol = \"sml\"\nsource = \"file\"\nfile = \"x\"\n");
  CHECK(e.find("meter[0].source: SML meters are read over \"serial\"") == 0);
}

TEST_CASE("the sml preset is 9600 8N1; baud and parity override it") {
  mp::config::Meter m;
  m.protocol = "sml";
  m.device = "/dev/ttyUSB0";
  auto s = mp::protocols::serial_settings(m);
  CHECK(s.baud == 9600);
  CHECK(s.data_bits == 8);
  CHECK(s.parity == mp::acquire::Parity::none);
  CHECK(s.stop_bits == 1);
  m.preset = "sml";
  m.baud = 300;
  m.data_bits = 7;
  m.parity = "even";
  s = mp::protocols::serial_settings(m);
  CHECK(s.baud == 300);
  CHECK(s.data_bits == 7);
  CHECK(s.parity == mp::acquire::Parity::even);
}

TEST_CASE("two SML meters on one IR head are refused") {
  const std::string e = errors(kSerial +
                               "\n[[meter]]\nname = \"two\"\nprotocol = \"sml\"\nsource = "
                               "\"serial\"\ndevice = \"/dev/ttyUSB0\"\n");
  CHECK(e.find("meter[1].device: \"/dev/ttyUSB0\" is already read by meter[0] \"ehz\" (one IR "
               "head reads one meter)") != std::string::npos);
}
