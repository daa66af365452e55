// The canonical names table (common/canonical.h) is the one list: every name a decoder can
// emit is in it, with the unit the decoder gives.
#include <doctest/doctest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "common/canonical.h"
#include "common/fs.h"
#include "protocols/dsmr/dsmr.h"
#include "protocols/dsmr/dsmr_framer.h"
#include "protocols/mbus/mbus.h"
#include "protocols/modbus/modbus_maps.h"
#include "protocols/modbus/sunspec.h"

namespace {

// A value is canonical, or native ("<protocol>_<id>"), never a third kind of name.
void check_value(const mp::Value& v, const std::string& where) {
  for (const char* p : {"dsmr_", "mbus_", "modbus_", "sunspec_"})
    if (v.name.rfind(p, 0) == 0) return;
  const auto* n = mp::canonical::find(v.name);
  INFO(where, ": ", v.name);
  CHECK(n != nullptr);
  if (n && !v.is_text) CHECK(n->unit == v.unit);
}

std::vector<uint8_t> hex_bytes(const std::string& text) {
  std::vector<uint8_t> out;
  std::string digits;
  for (char c : text)
    if (std::isxdigit(static_cast<unsigned char>(c))) digits += c;
  for (size_t i = 0; i + 1 < digits.size(); i += 2)
    out.push_back(uint8_t(std::stoul(digits.substr(i, 2), nullptr, 16)));
  return out;
}

}  // namespace

TEST_CASE("canonical names are unique and well formed") {
  std::set<std::string_view> seen;
  for (const auto& n : mp::canonical::all()) {
    INFO(n.name);
    CHECK(seen.insert(n.name).second);
    CHECK(!n.description.empty());
    if (n.kind == mp::canonical::Kind::counter && !n.unit.empty())
      CHECK((n.unit == "kWh" || n.unit == "kvarh" || n.unit == "m3" || n.unit == "GJ"));
  }
  CHECK(mp::canonical::find("power_net_w")->kind == mp::canonical::Kind::gauge);
  CHECK(mp::canonical::find("energy_import_t1_kwh")->kind == mp::canonical::Kind::counter);
  CHECK(mp::canonical::find("dsmr_1-0:3.8.0") == nullptr);
}

TEST_CASE("every name of the P1 corpus is canonical or native") {
  size_t values = 0;
  for (const auto& e : std::filesystem::directory_iterator(MP_TEST_DATA_DIR "/dsmr")) {
    if (e.path().extension() != ".txt") continue;
    std::string bytes, err;
    REQUIRE_MESSAGE(mp::fs::read_file(e.path(), bytes, err), err);
    mp::dsmr::Framer framer;
    framer.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    std::string t;
    while (framer.pop(t)) {
      mp::dsmr::Result r;
      mp::dsmr::decode(t, r);
      for (const auto& v : r.reading.values) {
        check_value(v, e.path().filename());
        ++values;
      }
    }
  }
  CHECK(values > 200);
}

TEST_CASE("every name of the M-Bus corpus is canonical or native") {
  size_t values = 0;
  for (const auto& e : std::filesystem::directory_iterator(MP_TEST_DATA_DIR "/mbus/test-frames")) {
    if (e.path().extension() != ".hex") continue;
    std::string text, err;
    REQUIRE_MESSAGE(mp::fs::read_file(e.path(), text, err), err);
    const auto bytes = hex_bytes(text);
    auto res = mp::mbus::decode(bytes);
    if (!res.error.empty()) continue;
    mp::Reading r;
    mp::mbus::to_reading(res.frame, r);
    for (const auto& v : r.values) {
      check_value(v, e.path().filename());
      ++values;
    }
  }
  CHECK(values > 20);
}

TEST_CASE("every register map and SunSpec model names canonical values") {
  for (const auto* map : mp::modbus::all_maps())
    for (const auto& reg : map->regs) {
      mp::Value v;
      v.name = reg.name;
      v.is_text = true;  // units are checked on decoded values below
      check_value(v, std::string(map->type));
    }
  for (uint16_t id : {1, 101, 102, 103, 111, 112, 113, 201, 202, 203, 204}) {
    std::vector<uint16_t> zeros(200, 0);
    std::vector<mp::Value> out;
    mp::sunspec::decode_model(id, 40000, zeros.data(), zeros.size(), out);
    for (const auto& v : out) check_value(v, "sunspec model " + std::to_string(id));
  }
}
