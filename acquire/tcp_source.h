// TcpSource: a ByteSource on a TCP byte stream, e.g. ser2net in raw mode or a P1 Wi-Fi dongle
// that serves the raw telegram stream on a port.
//
// Everything is non-blocking and driven by read(): name resolution (getaddrinfo_a), connect
// (with connect_timeout_ms) and reconnects all advance inside read() within its timeout, so a
// dead dongle never stalls the caller's loop.
//
// Loss (peer closes, error, keepalive failure, or no byte for idle_timeout_ms when set): the
// socket is closed, one warning is logged per outage, and connects are retried with backoff
// backoff_base_ms, doubling, up to backoff_cap_ms (default 1 s, 2 s, 4 s ... 30 s). The
// backoff starts again from the base after a connection that lasted stable_ms, so a peer that
// accepts and drops at once is not hammered. One info line is logged when it is back.
// TCP keepalive is on (idle/interval/count below) so a vanished dongle is noticed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "acquire/byte_source.h"

struct addrinfo;

namespace mp::acquire {

struct TcpSettings {
  std::string host;  // name or address ("192.168.1.20", "p1dongle.local", "fe80::1")
  int port = 0;
  int connect_timeout_ms = 5000;  // per attempt, name resolution included
  int backoff_base_ms = 1000;
  int backoff_cap_ms = 30000;
  int stable_ms = 30000;    // a connection that lasted this long resets the backoff
  int idle_timeout_ms = 0;  // reconnect after this long without a byte (0 = never)
  int write_timeout_ms = 1000;
  int keepalive_idle_s = 30;
  int keepalive_interval_s = 10;
  int keepalive_count = 3;
};

// Delay before the next connect after `failures` consecutive failures (1 = first failure):
// base, 2*base, 4*base, ... capped at cap. failures <= 1 gives base. Pure; never overflows.
int backoff_delay_ms(unsigned failures, int base_ms, int cap_ms);

// "host:port", "[v6addr]:port"; false when malformed (port must be 1..65535).
bool parse_host_port(std::string_view text, TcpSettings& s);
// Empty when usable, else one line saying what is wrong.
std::string validate(const TcpSettings& s);

class TcpSource final : public ByteSource {
 public:
  explicit TcpSource(TcpSettings settings);  // does not connect; read() does
  ~TcpSource() override;
  TcpSource(const TcpSource&) = delete;
  TcpSource& operator=(const TcpSource&) = delete;

  size_t read(uint8_t* buf, size_t n, int timeout_ms) override;
  bool write(const uint8_t* data, size_t n) override;
  void flush_input() override;
  bool connected() const override { return state_ == State::connected; }
  std::string describe() const override { return "tcp " + name_; }
  SourceCounters counters() const override { return counters_; }

  const TcpSettings& settings() const { return settings_; }
  const std::string& last_error() const { return last_error_; }
  // Milliseconds from now until the next connect attempt (0 when due or connected).
  int next_attempt_in_ms() const;

 private:
  enum class State { idle, resolving, connecting, connected };
  struct Lookup;

  void start_attempt(int64_t now_ns);
  bool step_resolve(int64_t deadline_ns);
  bool step_connect(int64_t deadline_ns);
  void connect_next_address(int64_t now_ns);
  void attempt_failed(const std::string& reason);
  void on_connected(int64_t now_ns);
  void lose(const std::string& reason);
  void note_outage(const std::string& reason, int64_t now_ns);
  void close_socket();
  void drop_lookup();
  void reap_abandoned();

  TcpSettings settings_;
  std::string name_;
  State state_ = State::idle;
  int fd_ = -1;
  Lookup* lookup_ = nullptr;        // running name resolution
  std::vector<Lookup*> abandoned_;  // resolutions that could not be cancelled yet
  addrinfo* addrs_ = nullptr;       // resolved addresses of this attempt
  bool addrs_from_lookup_ = false;
  addrinfo* next_addr_ = nullptr;
  std::string attempt_error_;
  int64_t attempt_deadline_ns_ = 0;
  int64_t next_attempt_ns_ = 0;
  int64_t connected_since_ns_ = 0;
  int64_t last_rx_ns_ = 0;
  unsigned failures_ = 0;
  bool ever_connected_ = false;
  bool in_outage_ = false;
  int64_t outage_start_ns_ = 0;
  std::string last_error_;
  SourceCounters counters_;
};

}  // namespace mp::acquire
