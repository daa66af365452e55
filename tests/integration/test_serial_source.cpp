// SerialSource against a pseudo-terminal playing the meter. Must run under
// tests/harness/serial_ns.sh (private /dev with /dev/ttyS0 -> pty slave, ptyshim.so preloaded):
//   tests/harness/serial_ns.sh ./test_serial_source
// Outside the harness every test case that needs it FAILS with a loud message.
//
// A pty cannot show parity, framing or baud errors: these tests assert byte transport, that
// the configuration calls succeed and read back, timeouts, and vanish / re-open.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "acquire/serial_source.h"
#include "protocols/specs.h"
#include "common/clock.h"
#include "tests/harness/pty_harness.h"

using mp::protocols::apply_preset;
using mp::acquire::Parity;
using mp::acquire::SerialSettings;
using mp::acquire::SerialSource;

#define REQUIRE_SERIAL_HARNESS()                                                               \
  do {                                                                                         \
    std::string why_;                                                                          \
    if (!mp::test::in_serial_harness(&why_)) {                                                 \
      std::fprintf(stderr,                                                                     \
                   "\n######## SERIAL TEST NOT RUN: %s ########\n"                             \
                   "######## run: tests/harness/serial_ns.sh <this test binary> ########\n\n", \
                   why_.c_str());                                                              \
      FAIL("SERIAL TEST NOT RUN (needs tests/harness/serial_ns.sh): " << why_);                \
    }                                                                                          \
  } while (0)

namespace {

const char* const kDevice = "/dev/ttyS0";

// A DSMR 5-like telegram, 7-bit ASCII only.
const std::string kTelegram =
    "/ISk5\\2MT382-1000\r\n\r\n"
    "1-3:0.2.8(50)\r\n"
    "0-0:1.0.0(101209113020W)\r\n"
    "0-0:96.1.1(4B384547303034303436333935353037)\r\n"
    "1-0:1.8.1(123456.789*kWh)\r\n"
    "1-0:1.8.2(123456.789*kWh)\r\n"
    "1-0:2.8.1(123456.789*kWh)\r\n"
    "1-0:2.8.2(123456.789*kWh)\r\n"
    "0-0:96.14.0(0002)\r\n"
    "1-0:1.7.0(01.193*kW)\r\n"
    "1-0:2.7.0(00.000*kW)\r\n"
    "1-0:32.7.0(220.1*V)\r\n"
    "1-0:31.7.0(001*A)\r\n"
    "0-1:24.2.1(101209112500W)(12785.123*m3)\r\n"
    "!EF2F\r\n";

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

double now_s() { return double(mp::clock::mono_ns()) / 1e9; }

// Waits until the slave side's input queue holds at least n bytes (FIONREAD on a second
// descriptor of the slave: a byte written to the master reaches it through a kernel work
// item, not at once). False after total_ms.
bool wait_unread(const std::string& slave, int n, int total_ms) {
  const double end = now_s() + total_ms / 1000.0;
  do {
    const int fd = ::open(slave.c_str(), O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    int k = -1;
    if (fd >= 0) {
      if (::ioctl(fd, FIONREAD, &k) != 0) k = -1;
      ::close(fd);
    }
    if (k >= n) return true;
    ::usleep(2000);  // poll interval
  } while (now_s() < end);
  return false;
}

// Reads until n bytes arrived or total_ms passed.
std::string read_n(SerialSource& src, size_t n, int total_ms) {
  std::string out;
  const double end = now_s() + total_ms / 1000.0;
  uint8_t buf[256];
  while (out.size() < n && now_s() < end) {
    size_t want = std::min(sizeof buf, n - out.size());
    size_t k = src.read(buf, want, 50);
    out.append(reinterpret_cast<const char*>(buf), k);
  }
  return out;
}

// Calls read() (nothing is sent meanwhile) until the source reports connected.
bool wait_connected(SerialSource& src, int total_ms) {
  const double end = now_s() + total_ms / 1000.0;
  uint8_t buf[16];
  while (!src.connected() && now_s() < end) src.read(buf, sizeof buf, 20);
  return src.connected();
}

SerialSettings settings_for(std::string_view preset) {
  SerialSettings s;
  s.device = kDevice;
  REQUIRE(apply_preset(preset, s));
  return s;
}

}  // namespace

TEST_CASE("serial presets, framing and validation") {
  SerialSettings s;
  CHECK(apply_preset("dsmr5", s));
  CHECK(s.baud == 115200);
  CHECK(mp::acquire::framing(s) == "8N1");
  CHECK(apply_preset("dsmr3", s));
  CHECK(s.baud == 9600);
  CHECK(mp::acquire::framing(s) == "7E1");
  CHECK(apply_preset("fluvius", s));
  CHECK(mp::acquire::framing(s) == "8N1");
  CHECK(apply_preset("dsmr4", s));
  CHECK(s.baud == 115200);
  CHECK(apply_preset("dsmr2", s));
  CHECK(mp::acquire::framing(s) == "7E1");
  CHECK(apply_preset("mbus", s));
  CHECK(s.baud == 2400);
  CHECK(mp::acquire::framing(s) == "8E1");
  SerialSettings before = s;
  CHECK_FALSE(apply_preset("DSMR9", s));
  CHECK(s.baud == before.baud);
  CHECK(mp::acquire::framing(s) == "8E1");

  CHECK(mp::acquire::parse_framing("7o2", s));
  CHECK(s.data_bits == 7);
  CHECK(s.parity == Parity::odd);
  CHECK(s.stop_bits == 2);
  CHECK_FALSE(mp::acquire::parse_framing("9N1", s));
  CHECK_FALSE(mp::acquire::parse_framing("8X1", s));
  CHECK_FALSE(mp::acquire::parse_framing("8N3", s));
  CHECK_FALSE(mp::acquire::parse_framing("8N", s));

  SerialSettings ok;
  CHECK(mp::acquire::validate(ok).empty());
  SerialSettings bad = ok;
  bad.data_bits = 9;
  CHECK_FALSE(mp::acquire::validate(bad).empty());
  bad = ok;
  bad.device.clear();
  CHECK_FALSE(mp::acquire::validate(bad).empty());
  bad = ok;
  bad.baud = 0;
  CHECK_FALSE(mp::acquire::validate(bad).empty());
}

TEST_CASE("serial 115200 8N1: configuration reads back; telegram and every byte value pass") {
  REQUIRE_SERIAL_HARNESS();
  mp::test::Pty meter;
  REQUIRE_MESSAGE(meter.ok(), meter.error());
  REQUIRE(meter.plug());
  REQUIRE_MESSAGE(meter.dirty_slave_settings(), meter.error());

  SerialSource src(settings_for("dsmr5"));
  CHECK_FALSE(src.connected());
  REQUIRE_MESSAGE(src.open(), src.last_error());
  CHECK(src.connected());
  CHECK(src.describe() == "serial /dev/ttyS0 115200 8N1");

  auto rb = src.read_back();
  REQUIRE(rb.has_value());
  CHECK(rb->baud == 115200);
  CHECK(rb->data_bits == 8);
  CHECK(rb->parity == Parity::none);
  CHECK(rb->stop_bits == 1);
  CHECK(rb->flow_control_none);

  REQUIRE(meter.send(kTelegram));
  CHECK(read_n(src, kTelegram.size(), 2000) == kTelegram);

  // All 256 byte values, including XON 0x11 / XOFF 0x13, CR, LF, 0x00 and 0xFF, unchanged.
  std::string all;
  for (int round = 0; round < 2; ++round)
    for (int b = 0; b < 256; ++b) all.push_back(char(b));
  REQUIRE(meter.send(all));
  std::string got = read_n(src, all.size(), 2000);
  CHECK(got.size() == all.size());
  CHECK(got == all);

  auto c = src.counters();
  CHECK(c.bytes_in == kTelegram.size() + all.size());
  CHECK(c.reconnects == 0);
  CHECK(c.outages == 0);
}

TEST_CASE("serial 9600 7E1 (dsmr3) and 2400 8E1 (mbus): configuration reads back") {
  REQUIRE_SERIAL_HARNESS();
  mp::test::Pty meter;
  REQUIRE_MESSAGE(meter.ok(), meter.error());
  REQUIRE(meter.plug());

  {
    SerialSource src(settings_for("dsmr3"));
    REQUIRE_MESSAGE(src.open(), src.last_error());
    auto rb = src.read_back();
    REQUIRE(rb.has_value());
    CHECK(rb->baud == 9600);
    CHECK(rb->data_bits == 7);
    CHECK(rb->parity == Parity::even);
    CHECK(rb->stop_bits == 1);
    CHECK(rb->flow_control_none);
    CHECK(src.describe() == "serial /dev/ttyS0 9600 7E1");

    REQUIRE(meter.send(kTelegram));  // 7-bit ASCII
    CHECK(read_n(src, kTelegram.size(), 2000) == kTelegram);
  }
  {
    SerialSource src(settings_for("mbus"));
    REQUIRE_MESSAGE(src.open(), src.last_error());
    auto rb = src.read_back();
    REQUIRE(rb.has_value());
    CHECK(rb->baud == 2400);
    CHECK(rb->data_bits == 8);
    CHECK(rb->parity == Parity::even);
    CHECK(rb->stop_bits == 1);
    // An M-Bus long frame start with XON/XOFF bytes inside.
    const std::string frame("\x68\x11\x11\x68\x08\x13\x72\x13\x11\x00\x16", 11);
    REQUIRE(meter.send(frame));
    CHECK(read_n(src, frame.size(), 2000) == frame);
  }
  {
    SerialSettings s = settings_for("dsmr5");
    s.stop_bits = 2;
    s.parity = Parity::odd;
    SerialSource src(s);
    REQUIRE_MESSAGE(src.open(), src.last_error());
    auto rb = src.read_back();
    REQUIRE(rb.has_value());
    CHECK(rb->parity == Parity::odd);
    CHECK(rb->stop_bits == 2);
  }
}

TEST_CASE("serial write reaches the meter; flush_input drops unread bytes") {
  REQUIRE_SERIAL_HARNESS();
  mp::test::Pty meter;
  REQUIRE_MESSAGE(meter.ok(), meter.error());
  REQUIRE(meter.plug());
  REQUIRE_MESSAGE(meter.dirty_slave_settings(), meter.error());
  SerialSource src(settings_for("mbus"));
  REQUIRE_MESSAGE(src.open(), src.last_error());

  // An M-Bus SND_NKE with 0x13 / 0x11 bytes: must arrive unchanged (no XON/XOFF, no OPOST).
  const std::string req("\x10\x40\x13\x11\x0a\x0d\x16", 7);
  CHECK(src.write(reinterpret_cast<const uint8_t*>(req.data()), req.size()));
  CHECK(meter.receive(req.size(), 2000) == req);
  CHECK(src.counters().bytes_out == req.size());

  REQUIRE(meter.send("stale bytes"));
  REQUIRE(wait_unread(meter.slave_path(), 11, 10000));  // in the queue flush_input empties
  src.flush_input();
  REQUIRE(meter.send("fresh"));
  CHECK(read_n(src, 5, 2000) == "fresh");
}

TEST_CASE("serial read timeouts are honoured, with and without a device") {
  REQUIRE_SERIAL_HARNESS();
  mp::test::Pty meter;
  REQUIRE_MESSAGE(meter.ok(), meter.error());
  REQUIRE(meter.plug());
  SerialSource src(settings_for("dsmr5"));
  REQUIRE(src.open());

  uint8_t buf[64];
  double t0 = now_s();
  CHECK(src.read(buf, sizeof buf, 300) == 0);
  double took = now_s() - t0;
  CHECK(took >= 0.29);
  CHECK(took < 0.45);

  t0 = now_s();
  CHECK(src.read(buf, sizeof buf, 0) == 0);
  CHECK(now_s() - t0 < 0.05);

  // Data that arrives during the wait ends it early.
  REQUIRE(meter.send("x"));
  t0 = now_s();
  CHECK(src.read(buf, sizeof buf, 1000) == 1);
  CHECK(now_s() - t0 < 0.2);

  // No device at all: every read still returns within its timeout.
  SerialSettings none = settings_for("dsmr5");
  none.device = "/dev/ttyS0-not-there";
  SerialSource absent(none);
  CHECK_FALSE(absent.open());
  CHECK(absent.last_error().find("No such file") != std::string::npos);
  for (int timeout : {0, 50, 250, 1200}) {
    t0 = now_s();
    CHECK(absent.read(buf, sizeof buf, timeout) == 0);
    took = now_s() - t0;
    CHECK(took >= timeout / 1000.0 - 0.01);
    CHECK(took < timeout / 1000.0 + 0.15);
  }
  CHECK_FALSE(absent.connected());
  CHECK(absent.counters().outages == 1);  // one outage, however many attempts
  CHECK(absent.counters().errors >= 2);   // retried once a second meanwhile
  CHECK_FALSE(absent.write(buf, 1));
}

TEST_CASE("serial device vanishes and returns as a new pty: resumes by itself, no CPU spin") {
  REQUIRE_SERIAL_HARNESS();
  auto meter = std::make_unique<mp::test::Pty>();
  REQUIRE_MESSAGE(meter->ok(), meter->error());
  REQUIRE(meter->plug());
  SerialSource src(settings_for("dsmr5"));  // default retry interval: 1 s
  REQUIRE(src.open());

  for (int outage = 1; outage <= 2; ++outage) {
    CAPTURE(outage);
    REQUIRE(meter->send(kTelegram));
    CHECK(read_n(src, kTelegram.size(), 2000) == kTelegram);

    // Unplug: the symlink goes, the master closes, the open slave hangs up.
    meter->unplug();
    uint8_t buf[256];
    double t0 = now_s();
    CHECK(src.read(buf, sizeof buf, 500) == 0);
    CHECK(now_s() - t0 < 0.6);
    CHECK_FALSE(src.connected());
    CHECK(src.last_error().find("hung up") != std::string::npos);

    // While it is gone: the caller's loop keeps running and the CPU stays idle.
    double cpu0 = cpu_seconds();
    double w0 = now_s();
    int calls = 0;
    while (now_s() - w0 < 2.0) {
      double c0 = now_s();
      CHECK(src.read(buf, sizeof buf, 100) == 0);
      CHECK(now_s() - c0 < 0.2);
      ++calls;
    }
    double cpu = cpu_seconds() - cpu0;
    CHECK(calls >= 15);
    CHECK_MESSAGE(cpu < 0.2, "CPU time while the device was gone: " << cpu << " s");
    CHECK_FALSE(src.connected());
    CHECK(src.counters().reconnects == uint64_t(outage - 1));

    // Plug a new pty under the same name: reads resume within 2 s.
    meter = std::make_unique<mp::test::Pty>();
    REQUIRE_MESSAGE(meter->ok(), meter->error());
    double p0 = now_s();
    REQUIRE(meter->plug());
    CHECK(wait_connected(src, 2000));
    const std::string hello = "/back again " + std::to_string(outage) + "\r\n";
    REQUIRE(meter->send(hello));
    CHECK(read_n(src, hello.size(), 2000) == hello);
    double resumed = now_s() - p0;
    CHECK_MESSAGE(resumed < 2.0, "reads resumed after " << resumed << " s");
    auto c = src.counters();
    CHECK(c.reconnects == uint64_t(outage));
    CHECK(c.outages == uint64_t(outage));
  }
}

TEST_CASE("serial device absent at start: opens when it appears, not counted as reconnect") {
  REQUIRE_SERIAL_HARNESS();
  ::unlink(kDevice);
  SerialSettings s = settings_for("dsmr5");
  s.retry_ms = 200;
  SerialSource src(s);
  uint8_t buf[64];
  CHECK(src.read(buf, sizeof buf, 300) == 0);
  CHECK_FALSE(src.connected());
  CHECK(src.counters().outages == 1);

  mp::test::Pty meter;
  REQUIRE_MESSAGE(meter.ok(), meter.error());
  REQUIRE(meter.plug());
  CHECK(wait_connected(src, 1000));
  REQUIRE(meter.send("/first\r\n"));
  CHECK(read_n(src, 8, 1000) == "/first\r\n");
  CHECK(src.counters().reconnects == 0);
}

TEST_CASE("serial device given by its stable /dev/serial/by-id name") {
  REQUIRE_SERIAL_HARNESS();
  mp::test::Pty meter;
  REQUIRE_MESSAGE(meter.ok(), meter.error());
  REQUIRE(meter.plug());
  // What udev makes for a USB adapter: /dev/serial/by-id/<name> -> ../../ttyUSB0.
  ::mkdir("/dev/serial", 0755);
  ::mkdir("/dev/serial/by-id", 0755);
  const std::string by_id = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A12345-if00-port0";
  ::unlink(by_id.c_str());
  REQUIRE(::symlink("../../ttyS0", by_id.c_str()) == 0);
  SerialSettings s = settings_for("dsmr5");
  s.device = by_id;
  SerialSource src(s);
  REQUIRE_MESSAGE(src.open(), src.last_error());
  REQUIRE(meter.send(kTelegram));
  CHECK(read_n(src, kTelegram.size(), 2000) == kTelegram);
  ::unlink(by_id.c_str());
}
