// Modbus polling over libmodbus against an independent peer (pymodbus, started here as a
// child process with /usr/bin/python3 on 127.0.0.1): readings decoded from the polled
// blocks equal the served image; refused holes are split; SunSpec discovery; scan; a silent
// listener, a slow peer, and a peer that goes away and returns.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "protocols/modbus/modbus_maps.h"
#include "protocols/modbus/modbus_poll.h"
#include "protocols/modbus/sunspec.h"

#ifndef MP_SOURCE_DIR
#error "MP_SOURCE_DIR must be defined by the build"
#endif

using namespace mp::modbus;

namespace {

// Adds a device that must be accepted; the reason shows when it is not.
bool add(Bus& bus, const DeviceConfig& device) {
  std::string err;
  const bool ok = bus.add_device(device, err);
  if (!ok) MESSAGE(err);
  return ok;
}

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

bool can_connect(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

// Register images per unit id and function code.
struct Image {
  std::map<int, std::map<uint16_t, uint16_t>> ir, hr;
  void set_f32(std::map<uint16_t, uint16_t>& m, uint16_t a, float v) {
    const auto u = std::bit_cast<uint32_t>(v);
    m[a] = static_cast<uint16_t>(u >> 16);
    m[static_cast<uint16_t>(a + 1)] = static_cast<uint16_t>(u);
  }
  std::string json() const {
    std::string s = "{\"units\": {";
    std::map<int, int> units;
    for (const auto& [u, _] : ir) units[u] = 1;
    for (const auto& [u, _] : hr) units[u] = 1;
    bool first_unit = true;
    for (const auto& [u, _] : units) {
      s += (first_unit ? "\"" : ", \"") + std::to_string(u) + "\": {";
      first_unit = false;
      bool first_fc = true;
      for (const auto* fc : {&ir, &hr}) {
        auto it = fc->find(u);
        if (it == fc->end()) continue;
        s += first_fc ? "" : ", ";
        first_fc = false;
        s += fc == &ir ? "\"ir\": {" : "\"hr\": {";
        bool first = true;
        for (const auto& [a, w] : it->second) {
          s += (first ? "\"" : ", \"") + std::to_string(a) + "\": " + std::to_string(w);
          first = false;
        }
        s += "}";
      }
      s += "}";
    }
    return s + "}}";
  }
};

struct Peer {
  pid_t pid = -1;
  int port = 0;
  std::string image_path;
  int delay_ms = 0;

  void start() {
    const std::string script = std::string(MP_SOURCE_DIR) + "/tests/integration/modbus_peer.py";
    const std::string port_s = std::to_string(port);
    const std::string delay_s = std::to_string(delay_ms);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::execl("/usr/bin/python3", "python3", script.c_str(), "--port", port_s.c_str(), "--image",
              image_path.c_str(), "--delay-ms", delay_s.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const int64_t deadline = mp::clock::mono_ns() + 15'000'000'000LL;
    while (!can_connect(port)) {
      int st = 0;
      REQUIRE_MESSAGE(::waitpid(pid, &st, WNOHANG) == 0, "modbus_peer.py exited early");
      REQUIRE_MESSAGE(mp::clock::mono_ns() < deadline, "modbus_peer.py did not listen");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  void stop() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      int st = 0;
      ::waitpid(pid, &st, 0);
      pid = -1;
    }
  }
  ~Peer() { stop(); }
};

std::string write_temp(const std::string& text) {
  char path[] = "/tmp/mp_modbus_image_XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fd);
  return path;
}

// The value served for the i-th register of a map (exact in float32).
float sdm_value(size_t i) { return 200.0f + 0.5f * static_cast<float>(i); }

// SunSpec image at 40000: marker, common model, inverter 103, meter 203, end.
void add_sunspec(Image& img, int unit) {
  auto& m = img.hr[unit];
  uint16_t a = 40000;
  auto put = [&](uint16_t w) { m[a++] = w; };
  put(mp::sunspec::kMarker0);
  put(mp::sunspec::kMarker1);
  put(1);
  put(66);
  const std::string mn = "meterpipe-test", sn = "SN-0042";
  for (int i = 0; i < 66; ++i) {
    uint16_t w = 0;
    auto ch = [&](const std::string& s, int off) -> uint16_t {
      const size_t k = static_cast<size_t>(off);
      return k < s.size() ? static_cast<unsigned char>(s[k]) : 0;
    };
    if (i < 16) w = static_cast<uint16_t>(ch(mn, 2 * i) << 8 | ch(mn, 2 * i + 1));
    if (i >= 48 && i < 64)
      w = static_cast<uint16_t>(ch(sn, 2 * (i - 48)) << 8 | ch(sn, 2 * (i - 48) + 1));
    put(w);
  }
  put(103);
  put(50);
  std::vector<uint16_t> inv(50, 0);
  for (int i : {1, 2, 3, 5, 6, 7, 9, 10, 16, 17, 18, 19, 20, 21, 25, 26, 29, 30, 32, 33, 34})
    inv[static_cast<size_t>(i)] = 0xFFFF;
  inv[0] = 1234, inv[4] = 0xFFFE;      // 12.34 A
  inv[8] = 2301, inv[11] = 0xFFFF;     // 230.1 V
  inv[12] = 321, inv[13] = 1;          // 3210 W
  inv[14] = 5002, inv[15] = 0xFFFE;    // 50.02 Hz
  inv[22] = 0x0001, inv[23] = 0x86A0;  // 100000 Wh
  inv[24] = 0;                         // -> 100 kWh
  inv[16] = 0x8000, inv[18] = 0x8000, inv[29] = 0x8000, inv[32] = 0x8000, inv[33] = 0x8000,
  inv[34] = 0x8000, inv[20] = 0x8000;
  inv[31] = 400, inv[35] = 0xFFFF;  // 40.0 C
  inv[36] = 4;
  for (uint16_t w : inv) put(w);
  put(203);
  put(105);
  std::vector<uint16_t> met(105, 0x8000);
  met[16] = static_cast<uint16_t>(-2500), met[20] = 0;  // -2500 W: exporting
  met[36] = 0, met[37] = 5000;                          // TotWhExp 5000 Wh
  met[44] = 0, met[45] = 7000;                          // TotWhImp 7000 Wh
  met[52] = 0;
  for (uint16_t w : met) put(w);
  put(0xFFFF);
  put(0);
}

struct Collected {
  std::vector<RawBlock> blocks;
  BlockSink sink() {
    return [this](const RawBlock& b) { blocks.push_back(b); };
  }
  std::vector<mp::Value> decode_all() const {
    std::vector<mp::Value> vals;
    for (const auto& b : blocks) {
      if (b.type == "sunspec") {
        mp::sunspec::decode_block_bytes(b.start, b.bytes.data(), b.bytes.size(), vals);
      } else {
        const MeterMap* m = find_map(b.type);
        REQUIRE(m);
        decode_bytes(*m, b.fc, b.start, b.bytes.data(), b.bytes.size(), vals);
      }
    }
    complete(vals);
    return vals;
  }
};

const mp::Value* find(const std::vector<mp::Value>& vs, std::string_view n) {
  for (const auto& v : vs)
    if (v.name == n) return &v;
  return nullptr;
}

// One peer for most cases: unit 1 = SDM630 with every register of its range readable,
// unit 2 = SDM630 that refuses reads over its holes, unit 3 = SunSpec inverter + meter.
struct Fixture {
  Image img;
  Peer peer;
  std::string path;
  Fixture() {
    const MeterMap& sdm = *find_map("sdm630");
    for (uint16_t a = 0; a < 0x016C; ++a) img.ir[1][a] = 0;
    for (size_t i = 0; i < sdm.regs.size(); ++i) {
      img.set_f32(img.ir[1], sdm.regs[i].address, sdm_value(i));
      img.set_f32(img.ir[2], sdm.regs[i].address, sdm_value(i));
    }
    add_sunspec(img, 3);
    path = write_temp(img.json());
    peer.port = free_port();
    peer.image_path = path;
    peer.start();
  }
  ~Fixture() {
    peer.stop();
    ::unlink(path.c_str());
  }
  BusConfig bus_config(int timeout_ms = 1000) const {
    BusConfig c;
    c.host = "127.0.0.1";
    c.port = peer.port;
    c.response_timeout_ms = timeout_ms;
    c.reconnect_min_ms = 50;
    c.reconnect_max_ms = 200;
    c.backoff_min_ms = 100;
    c.backoff_max_ms = 400;
    return c;
  }
};

void check_sdm_values(const std::vector<mp::Value>& vals) {
  const MeterMap& sdm = *find_map("sdm630");
  for (size_t i = 0; i < sdm.regs.size(); ++i) {
    CAPTURE(sdm.regs[i].name);
    const mp::Value* v = find(vals, sdm.regs[i].name);
    REQUIRE(v != nullptr);
    CHECK(v->number == static_cast<double>(sdm_value(i)));
    CHECK(v->native_id == native_id(4, sdm.regs[i].address));
  }
  // power_net_w is register index 12: 206.0 W import.
  CHECK(find(vals, "power_net_w")->number == 206.0);
  CHECK(find(vals, "power_import_w")->number == 206.0);
  CHECK(find(vals, "power_export_w")->number == 0.0);
}

}  // namespace

TEST_CASE("modbus tcp: SDM630 poll decodes to the served image") {
  Fixture fx;
  Bus bus(fx.bus_config());
  std::string err;
  REQUIRE(bus.add_device({"grid", 1, "sdm630", 1000}, err));
  CHECK_FALSE(bus.add_device({"grid", 1, "sdm630", 1000}, err));
  CHECK(err == "duplicate device name 'grid'");
  CHECK_FALSE(bus.add_device({"x", 1, "no-such-meter", 1000}, err));
  CHECK_FALSE(bus.add_device({"y", 300, "sdm630", 1000}, err));

  Collected c;
  REQUIRE(bus.poll_device(0, c.sink()));
  REQUIRE(c.blocks.size() == 5);
  for (size_t i = 0; i < c.blocks.size(); ++i) {
    CHECK(c.blocks[i].device == "grid");
    CHECK(c.blocks[i].type == "sdm630");
    CHECK(c.blocks[i].unit_id == 1);
    CHECK(c.blocks[i].fc == 4);
    CHECK(c.blocks[i].poll_seq == 1);
    CHECK(c.blocks[i].last == (i + 1 == c.blocks.size()));
    CHECK(c.blocks[i].time_ns > 0);
  }
  CHECK(c.blocks.back().poll_complete);
  CHECK(c.blocks[2].start == 52);
  CHECK(c.blocks[2].bytes.size() == 68);
  // Register 0 on the wire: 200.0f = 0x43480000.
  CHECK(c.blocks[0].bytes[0] == 0x43);
  CHECK(c.blocks[0].bytes[1] == 0x48);
  check_sdm_values(c.decode_all());

  const auto st = bus.status();
  REQUIRE(st.size() == 1);
  CHECK(st[0].requests == 5);
  CHECK(st[0].errors == 0);
  CHECK(st[0].state == DeviceState::ok);
  CHECK(st[0].request_rate_per_min > 0);
  CHECK(st[0].error_rate_per_min == 0);
}

TEST_CASE("modbus tcp: exception 02 over holes splits the reads and remembers the split") {
  Fixture fx;
  Bus bus(fx.bus_config());
  REQUIRE(add(bus, {"holes", 2, "sdm630", 1000}));
  Collected c;
  REQUIRE(bus.poll_device(0, c.sink()));
  check_sdm_values(c.decode_all());
  auto st = bus.status();
  const std::vector<ReadRequest> split = {{4, 0, 18},  {4, 30, 6},  {4, 52, 2},  {4, 56, 2},
                                          {4, 60, 4},  {4, 70, 6},  {4, 84, 2},  {4, 234, 6},
                                          {4, 248, 2}, {4, 342, 2}, {4, 346, 18}};
  CHECK(st[0].plan == split);
  // Refused: [52,34] [52,24] [52,12] [56,8] [234,16] [342,22] = 6 errors, 17 requests.
  CHECK(st[0].errors == 6);
  CHECK(st[0].requests == 17);
  // The next poll uses the stored split: 11 requests, no new errors.
  Collected c2;
  REQUIRE(bus.poll_device(0, c2.sink()));
  st = bus.status();
  CHECK(st[0].requests == 28);
  CHECK(st[0].errors == 6);
  CHECK(c2.blocks.size() == 11);
  check_sdm_values(c2.decode_all());
}

TEST_CASE("modbus tcp: SunSpec discovery and decoding") {
  Fixture fx;
  Bus bus(fx.bus_config());
  DeviceConfig inv{"pv", 3, "sunspec", 1000};
  DeviceConfig met{"pvmeter", 3, "sunspec", 1000};
  met.sunspec_part = SunspecPart::meter;
  REQUIRE(add(bus, inv));
  REQUIRE(add(bus, met));

  Collected c;
  REQUIRE(bus.poll_device(0, c.sink()));
  REQUIRE(c.blocks.size() == 2);  // common model (once) + inverter model
  CHECK(c.blocks[0].start == 40002);
  CHECK(c.blocks[0].bytes.size() == 68 * 2);
  CHECK(c.blocks[1].start == 40070);
  CHECK(c.blocks[1].type == "sunspec");
  auto vals = c.decode_all();
  CHECK(find(vals, "manufacturer")->text == "meterpipe-test");
  CHECK(find(vals, "serial_number")->text == "SN-0042");
  CHECK(find(vals, "current_a")->number == doctest::Approx(12.34));
  CHECK(find(vals, "voltage_l1_v")->number == doctest::Approx(230.1));
  CHECK(find(vals, "pv_power_w")->number == doctest::Approx(3210.0));
  CHECK(find(vals, "frequency_hz")->number == doctest::Approx(50.02));
  CHECK(find(vals, "pv_energy_kwh")->number == doctest::Approx(100.0));
  CHECK(find(vals, "temperature_c")->number == doctest::Approx(40.0));
  CHECK(find(vals, "dc_power_w") == nullptr);
  CHECK(find(vals, "power_net_w") == nullptr);

  // Second poll: only the inverter model.
  Collected c2;
  REQUIRE(bus.poll_device(0, c2.sink()));
  REQUIRE(c2.blocks.size() == 1);
  CHECK(c2.blocks[0].start == 40070);

  Collected m;
  REQUIRE(bus.poll_device(1, m.sink()));
  REQUIRE(m.blocks.size() == 2);
  CHECK(m.blocks[1].start == 40122);
  CHECK(m.blocks[1].bytes.size() == 107 * 2);
  auto mv = m.decode_all();
  CHECK(find(mv, "power_net_w")->number == -2500.0);
  CHECK(find(mv, "power_export_w")->number == 2500.0);
  CHECK(find(mv, "energy_import_kwh")->number == doctest::Approx(7.0));
  CHECK(find(mv, "energy_export_kwh")->number == doctest::Approx(5.0));
  CHECK(find(mv, "pv_power_w") == nullptr);

  // A unit without SunSpec fails discovery.
  DeviceConfig none{"nope", 1, "sunspec", 1000};
  REQUIRE(add(bus, none));
  Collected n;
  CHECK_FALSE(bus.poll_device(2, n.sink()));
  CHECK(n.blocks.empty());
  CHECK(bus.status()[2].last_error == "no SunS marker at 40000, 0 or 50000");
}

TEST_CASE("modbus tcp: scan finds exactly the served meters") {
  Fixture fx;
  Bus bus(fx.bus_config());
  const int64_t t0 = mp::clock::mono_ns();
  const auto found = bus.scan({1, 2, 3, 4, 5}, 300);
  const double secs = static_cast<double>(mp::clock::mono_ns() - t0) / 1e9;
  REQUIRE(found.size() == 2);
  CHECK(found[0].unit_id == 1);
  CHECK(found[0].type == "sdm630");
  CHECK(found[0].voltage_l1_v == 200.0);
  CHECK(found[1].unit_id == 2);
  CHECK(found[1].type == "sdm630");
  // Units 4 and 5 are silent: one 300 ms timeout each, not one per map.
  CHECK(secs < 1.5);
  MESSAGE("scan of 5 ids (2 silent, 300 ms timeout) took " << secs << " s");
}

TEST_CASE("modbus tcp: a silent unit costs one timeout per poll and becomes unavailable") {
  Fixture fx;
  Bus bus(fx.bus_config(250));
  REQUIRE(add(bus, {"good", 1, "sdm630", 100}));
  REQUIRE(add(bus, {"silent", 9, "sdm630", 100}));
  int good_polls = 0;
  for (int round = 0; round < 3; ++round) {
    Collected c;
    const int64_t t0 = mp::clock::mono_ns();
    bus.poll_device(0, c.sink());
    bus.poll_device(1, c.sink());
    const double ms = static_cast<double>(mp::clock::mono_ns() - t0) / 1e6;
    CHECK(ms < 250 + 200);  // one timeout, not one per request (5) or per retry
    CHECK(ms >= 240);
    for (const auto& b : c.blocks) CHECK(b.device == "good");
    if (c.blocks.size() == 5) ++good_polls;
  }
  CHECK(good_polls == 3);
  auto st = bus.status();
  CHECK(st[0].state == DeviceState::ok);
  CHECK(st[1].state == DeviceState::unavailable);
  CHECK(st[1].requests == 3);
  CHECK(st[1].errors == 3);
  CHECK(st[1].consecutive_failures == 3);
  CHECK(st[1].last_error.find("timeout") == 0);
  // poll_due right away: the good unit is overdue (its 100 ms interval is shorter than a
  // round) and is polled; the unavailable one waits its backoff (100 ms) and costs nothing.
  Collected c;
  const int64_t now = mp::clock::mono_ns();
  const int64_t next = bus.poll_due(now, c.sink());
  const double ms = static_cast<double>(mp::clock::mono_ns() - now) / 1e6;
  CHECK(c.blocks.size() == 5);
  for (const auto& b : c.blocks) CHECK(b.device == "good");
  CHECK(ms < 100);
  CHECK(next > now);
  CHECK(bus.status()[1].requests == 3);
}

TEST_CASE("modbus tcp: a listener that never answers") {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(s, 8) == 0);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  BusConfig cfg;
  cfg.port = ntohs(a.sin_port);
  cfg.response_timeout_ms = 200;
  cfg.unavailable_after = 2;
  Bus bus(cfg);
  REQUIRE(add(bus, {"mute", 1, "sdm630", 1000}));
  for (int i = 0; i < 2; ++i) {
    Collected c;
    const int64_t t0 = mp::clock::mono_ns();
    CHECK_FALSE(bus.poll_device(0, c.sink()));
    const double ms = static_cast<double>(mp::clock::mono_ns() - t0) / 1e6;
    CHECK(ms >= 190);
    CHECK(ms < 400);
    CHECK(c.blocks.empty());
  }
  CHECK(bus.status()[0].state == DeviceState::unavailable);
  ::close(s);
}

TEST_CASE("modbus tcp: a slow peer within and beyond the timeout") {
  Image img;
  const MeterMap& sdm = *find_map("sdm630");
  for (uint16_t a = 0; a < 0x016C; ++a) img.ir[1][a] = 0;
  for (size_t i = 0; i < sdm.regs.size(); ++i)
    img.set_f32(img.ir[1], sdm.regs[i].address, sdm_value(i));
  const std::string path = write_temp(img.json());
  Peer slow;
  slow.port = free_port();
  slow.image_path = path;
  slow.delay_ms = 150;
  slow.start();

  BusConfig patient;
  patient.port = slow.port;
  patient.response_timeout_ms = 1000;
  Bus ok_bus(patient);
  REQUIRE(add(ok_bus, {"slow", 1, "sdm630", 1000}));
  Collected c;
  const int64_t t0 = mp::clock::mono_ns();
  REQUIRE(ok_bus.poll_device(0, c.sink()));
  const double ms = static_cast<double>(mp::clock::mono_ns() - t0) / 1e6;
  CHECK(ms >= 5 * 150 - 20);
  check_sdm_values(c.decode_all());

  BusConfig hasty = patient;
  hasty.response_timeout_ms = 60;
  Bus bad_bus(hasty);
  REQUIRE(add(bad_bus, {"slow", 1, "sdm630", 1000}));
  Collected c2;
  CHECK_FALSE(bad_bus.poll_device(0, c2.sink()));
  CHECK(bad_bus.status()[0].last_error.find("timeout") == 0);
  // The late answer of the timed-out request must not be taken for the next one: the
  // patient bus still decodes the right values afterwards, and so does the hasty one once
  // its connection was renewed (no stale transaction).
  Collected c3;
  REQUIRE(ok_bus.poll_device(0, c3.sink()));
  check_sdm_values(c3.decode_all());
  slow.stop();
  ::unlink(path.c_str());
}

TEST_CASE("modbus tcp: the peer goes away and returns") {
  Fixture fx;
  Bus bus(fx.bus_config(300));
  REQUIRE(add(bus, {"grid", 1, "sdm630", 100}));
  Collected c;
  REQUIRE(bus.poll_device(0, c.sink()));
  fx.peer.stop();
  int failures = 0;
  for (int i = 0; i < 4; ++i) {
    Collected f;
    if (!bus.poll_device(0, f.sink())) ++failures;
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
  }
  CHECK(failures == 4);
  CHECK(bus.status()[0].state == DeviceState::unavailable);
  CHECK_FALSE(bus.connected());
  fx.peer.start();
  bool back = false;
  Collected r;
  const int64_t deadline = mp::clock::mono_ns() + 5'000'000'000LL;
  while (!back && mp::clock::mono_ns() < deadline) {
    r.blocks.clear();
    back = bus.poll_device(0, r.sink());
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE(back);
  CHECK(bus.status()[0].state == DeviceState::ok);
  CHECK(bus.connected());
  check_sdm_values(r.decode_all());
}
