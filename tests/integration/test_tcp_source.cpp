// TcpSource against a local TCP server run by the test itself (127.0.0.1, free port).
// The kernel completes the handshake from the listen backlog, so one thread is enough: the
// test calls the source's read() and accept()s / sends / closes on the server side in turn.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <climits>
#include <string>

#include "acquire/tcp_source.h"
#include "common/clock.h"

using mp::acquire::backoff_delay_ms;
using mp::acquire::TcpSettings;
using mp::acquire::TcpSource;

namespace {

double now_s() { return double(mp::clock::mono_ns()) / 1e9; }

// A socket bound to 127.0.0.1 on a free port; listen() is separate so a test can first get
// "connection refused" on a known port.
class Server {
 public:
  Server() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    int on = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~Server() {
    if (fd_ >= 0) ::close(fd_);
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const { return port_; }
  void listen() { REQUIRE(::listen(fd_, 8) == 0); }

  // Accepts one connection, driving the source's read() meanwhile (so it can connect).
  // Returns the connection fd or -1 after total_ms.
  int accept_while(TcpSource& src, int total_ms) {
    const double end = now_s() + total_ms / 1000.0;
    while (now_s() < end) {
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 0) > 0) return ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      uint8_t buf[64];
      size_t k = src.read(buf, sizeof buf, 20);
      REQUIRE(k == 0);  // nothing can arrive before we accept and send
    }
    return -1;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

bool send_all(int fd, const std::string& s) {
  return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == ssize_t(s.size());
}

std::string read_n(TcpSource& src, size_t n, int total_ms) {
  std::string out;
  const double end = now_s() + total_ms / 1000.0;
  uint8_t buf[256];
  while (out.size() < n && now_s() < end) {
    size_t k = src.read(buf, std::min(sizeof buf, n - out.size()), 20);
    out.append(reinterpret_cast<const char*>(buf), k);
  }
  return out;
}

// Drives read() until the source reports itself disconnected (nothing must arrive).
bool wait_disconnected(TcpSource& src, int total_ms) {
  const double end = now_s() + total_ms / 1000.0;
  uint8_t buf[64];
  while (src.connected() && now_s() < end) src.read(buf, sizeof buf, 20);
  return !src.connected();
}

TcpSettings fast_settings(int port) {
  TcpSettings s;
  s.host = "127.0.0.1";
  s.port = port;
  s.backoff_base_ms = 50;
  s.backoff_cap_ms = 400;
  s.connect_timeout_ms = 1000;
  return s;
}

}  // namespace

TEST_CASE("tcp backoff schedule: default 1 s doubling to 30 s") {
  TcpSettings d;
  CHECK(d.backoff_base_ms == 1000);
  CHECK(d.backoff_cap_ms == 30000);
  const int expected[] = {1000, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
  for (unsigned f = 0; f < sizeof expected / sizeof expected[0]; ++f) {
    CAPTURE(f);
    CHECK(backoff_delay_ms(f, d.backoff_base_ms, d.backoff_cap_ms) == expected[f]);
  }
  CHECK(backoff_delay_ms(64, 1000, 30000) == 30000);
  CHECK(backoff_delay_ms(UINT_MAX, 1000, 30000) == 30000);
  CHECK(backoff_delay_ms(UINT_MAX, INT_MAX / 2, INT_MAX) == INT_MAX);
  CHECK(backoff_delay_ms(3, 50, 400) == 200);
  CHECK(backoff_delay_ms(5, 50, 400) == 400);
  CHECK(backoff_delay_ms(2, 0, 0) == 1);  // nonsense input stays sane: at least 1 ms
}

TEST_CASE("tcp host:port parsing and validation") {
  TcpSettings s;
  CHECK(mp::acquire::parse_host_port("192.168.1.20:2001", s));
  CHECK(s.host == "192.168.1.20");
  CHECK(s.port == 2001);
  CHECK(mp::acquire::parse_host_port("[fe80::1]:23", s));
  CHECK(s.host == "fe80::1");
  CHECK(s.port == 23);
  CHECK(mp::acquire::parse_host_port("p1dongle.local:8088", s));
  CHECK(s.host == "p1dongle.local");
  CHECK_FALSE(mp::acquire::parse_host_port("fe80::1:23", s));
  CHECK_FALSE(mp::acquire::parse_host_port("host", s));
  CHECK_FALSE(mp::acquire::parse_host_port("host:0", s));
  CHECK_FALSE(mp::acquire::parse_host_port("host:65536", s));
  CHECK_FALSE(mp::acquire::parse_host_port("host:12x", s));
  CHECK_FALSE(mp::acquire::parse_host_port(":80", s));
  CHECK(mp::acquire::validate(fast_settings(80)).empty());
  TcpSettings bad = fast_settings(0);
  CHECK_FALSE(mp::acquire::validate(bad).empty());
  bad = fast_settings(80);
  bad.backoff_cap_ms = 10;
  CHECK_FALSE(mp::acquire::validate(bad).empty());
}

TEST_CASE("tcp: server sends then drops the connection; the source reconnects and resumes") {
  Server server;
  server.listen();
  TcpSource src(fast_settings(server.port()));
  CHECK(src.describe() == "tcp 127.0.0.1:" + std::to_string(server.port()));
  CHECK_FALSE(src.connected());

  int c1 = server.accept_while(src, 2000);
  REQUIRE(c1 >= 0);
  CHECK(src.connected());
  const std::string t1 = "/ISK5\\2M550T-1012\r\n\r\n1-0:1.8.1(000123.456*kWh)\r\n!1234\r\n";
  REQUIRE(send_all(c1, t1));
  CHECK(read_n(src, t1.size(), 2000) == t1);

  // The request/answer direction works too (ser2net passes it to the meter).
  const std::string req = "poll\x13\x11";
  CHECK(src.write(reinterpret_cast<const uint8_t*>(req.data()), req.size()));
  char got[16] = {};
  pollfd pfd{c1, POLLIN, 0};
  REQUIRE(::poll(&pfd, 1, 2000) == 1);
  CHECK(::recv(c1, got, sizeof got, 0) == ssize_t(req.size()));
  CHECK(std::string(got, req.size()) == req);

  ::close(c1);  // the dongle drops us
  double t0 = now_s();
  CHECK(wait_disconnected(src, 1000));
  CHECK(src.last_error() == "peer closed the connection");
  CHECK_FALSE(src.write(reinterpret_cast<const uint8_t*>("x"), 1));

  int c2 = server.accept_while(src, 3000);
  REQUIRE(c2 >= 0);
  double gap = now_s() - t0;
  CHECK(gap >= 0.045);  // waited the backoff base (50 ms) before reconnecting
  CHECK(gap < 1.0);
  CHECK(src.connected());
  const std::string t2 = "/second telegram\r\n!ABCD\r\n";
  REQUIRE(send_all(c2, t2));
  CHECK(read_n(src, t2.size(), 2000) == t2);
  ::close(c2);

  auto c = src.counters();
  CHECK(c.reconnects == 1);
  CHECK(c.outages == 1);
  CHECK(c.bytes_in == t1.size() + t2.size());
  CHECK(c.bytes_out == req.size());
}

TEST_CASE("tcp: backoff doubles while the peer keeps dropping and resets after a stable link") {
  Server server;
  server.listen();
  TcpSettings s = fast_settings(server.port());
  s.backoff_base_ms = 100;
  s.backoff_cap_ms = 400;
  s.stable_ms = 300;
  TcpSource src(s);

  const int expected[] = {100, 200, 400, 400};
  for (int want : expected) {
    CAPTURE(want);
    int c = server.accept_while(src, 2000);
    REQUIRE(c >= 0);
    ::close(c);  // accept and drop at once
    REQUIRE(wait_disconnected(src, 1000));
    int next = src.next_attempt_in_ms();
    CHECK(next <= want);
    CHECK(next >= want - 60);
  }
  // A connection that lasts longer than stable_ms resets the schedule to the base.
  int c = server.accept_while(src, 2000);
  REQUIRE(c >= 0);
  uint8_t buf[16];
  CHECK(src.read(buf, sizeof buf, 400) == 0);  // quiet but connected for 400 ms
  CHECK(src.connected());
  ::close(c);
  REQUIRE(wait_disconnected(src, 1000));
  CHECK(src.next_attempt_in_ms() <= 100);
  CHECK(src.next_attempt_in_ms() >= 40);
  CHECK(src.counters().reconnects == 4);
}

TEST_CASE("tcp: connection refused, read timeouts honoured, connects once the peer listens") {
  Server server;  // bound but not listening: connects are refused
  TcpSource src(fast_settings(server.port()));
  uint8_t buf[64];
  for (int timeout : {0, 30, 150, 600}) {
    CAPTURE(timeout);
    double t0 = now_s();
    CHECK(src.read(buf, sizeof buf, timeout) == 0);
    double took = now_s() - t0;
    CHECK(took >= timeout / 1000.0 - 0.01);
    CHECK(took < timeout / 1000.0 + 0.15);
  }
  CHECK_FALSE(src.connected());
  CHECK(src.last_error().find("refused") != std::string::npos);
  CHECK(src.counters().outages == 1);  // one outage, logged once
  CHECK(src.counters().errors >= 3);   // several attempts with growing backoff

  server.listen();
  int c = server.accept_while(src, 2000);  // within the 400 ms cap
  REQUIRE(c >= 0);
  REQUIRE(send_all(c, "hello"));
  CHECK(read_n(src, 5, 1000) == "hello");
  CHECK(src.counters().reconnects == 0);  // first connection, not a reconnect

  // Connected and quiet: the timeout is still honoured.
  double t0 = now_s();
  CHECK(src.read(buf, sizeof buf, 200) == 0);
  CHECK(now_s() - t0 >= 0.19);
  CHECK(now_s() - t0 < 0.3);
  ::close(c);
}

TEST_CASE("tcp: a silent peer is dropped after idle_timeout_ms and reconnected") {
  Server server;
  server.listen();
  TcpSettings s = fast_settings(server.port());
  s.idle_timeout_ms = 300;
  TcpSource src(s);
  int c1 = server.accept_while(src, 2000);
  REQUIRE(c1 >= 0);
  double t0 = now_s();
  CHECK(wait_disconnected(src, 2000));
  double took = now_s() - t0;
  CHECK(took >= 0.28);
  CHECK(took < 0.6);
  CHECK(src.last_error().find("no data") != std::string::npos);
  int c2 = server.accept_while(src, 2000);
  CHECK(c2 >= 0);
  CHECK(src.counters().reconnects == 1);
  ::close(c1);
  if (c2 >= 0) ::close(c2);
}

TEST_CASE("tcp: host names are resolved without blocking; every address is tried") {
  Server server;
  server.listen();
  TcpSettings s = fast_settings(server.port());
  s.host = "localhost";  // may resolve to ::1 first (refused here), then 127.0.0.1
  TcpSource src(s);
  int c = server.accept_while(src, 3000);
  REQUIRE_MESSAGE(c >= 0, "last error: " << src.last_error());
  REQUIRE(send_all(c, "via name"));
  CHECK(read_n(src, 8, 1000) == "via name");
  ::close(c);

  TcpSettings bad = fast_settings(server.port());
  bad.host = "no-such-host.invalid";
  bad.connect_timeout_ms = 500;
  TcpSource nowhere(bad);
  uint8_t buf[16];
  const double end = now_s() + 1.5;
  while (now_s() < end) {
    double t0 = now_s();
    CHECK(nowhere.read(buf, sizeof buf, 100) == 0);
    CHECK(now_s() - t0 < 0.2);
  }
  CHECK_FALSE(nowhere.connected());
  CHECK(nowhere.last_error().find("cannot resolve") != std::string::npos);
}
