// Our decoder against an independent one: libsml (volkszaehler, Debian libsml-dev) decodes
// every test frame and every frame of the simulated meter to the same entries (OBIS code,
// unit, value times 10^scaler, octet strings).
#include <doctest/doctest.h>

#include <cmath>

#include "protocols/sml/sml.h"
#include "protocols/sml/sml_sim.h"
#include "protocols/sml/tests/libsml_oracle.h"
#include "protocols/sml/tests/sml_test_data.h"

using namespace mp::sml;
namespace td = mp::sml::testdata;

namespace {

double scaled(const Entry& e) {
  const double m = double(e.magnitude) * (e.negative ? -1.0 : 1.0);
  return m * std::pow(10.0, e.has_scaler ? e.scaler : 0);
}

// Compares one frame; returns the number of entries compared.
size_t compare(const oracle::LibSml& lib, const std::string& frame, const std::string& what) {
  INFO(what);
  File ours;
  std::string err;
  REQUIRE_MESSAGE(
      decode_frame({reinterpret_cast<const uint8_t*>(frame.data()), frame.size()}, ours, err), err);
  std::vector<oracle::Entry> theirs;
  REQUIRE(oracle::entries(lib, frame, theirs));
  REQUIRE(theirs.size() == ours.entries.size());
  for (size_t i = 0; i < theirs.size(); ++i) {
    const Entry& a = ours.entries[i];
    const oracle::Entry& b = theirs[i];
    INFO("entry ", i, " ", a.obis_text());
    CHECK(a.obj_name == b.obj_name);
    CHECK(a.has_unit == b.has_unit);
    if (a.has_unit && b.has_unit) CHECK(int(a.unit) == b.unit);
    if (a.kind == Entry::Kind::bytes) {
      CHECK(b.is_bytes);
      CHECK(a.bytes == b.bytes);
    } else if (a.kind == Entry::Kind::number) {
      CHECK(!b.is_bytes);
      CHECK(std::fabs(scaled(a) - b.value) <= 1e-9 * std::max(1.0, std::fabs(b.value)));
    }
  }
  return theirs.size();
}

}  // namespace

TEST_CASE("libsml and our decoder agree on every test frame and simulated frames") {
  const oracle::LibSml lib;
  REQUIRE_MESSAGE(lib.ok(), lib.error);
  size_t entries = 0, frames = 0;
  for (const auto& name : td::files())
    for (const auto& f : td::frames(name)) {
      entries += compare(lib, f, name);
      ++frames;
    }
  SimState s;
  for (int i = 0; i < 20; ++i) {
    entries += compare(lib, make_sim_frame((1751371200LL + i * 3000) * 1000000000, s), "sim");
    ++frames;
  }
  CHECK(frames >= 33);
  CHECK(entries > 250);
}
