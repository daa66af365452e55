// ByteSource: the common interface of everything the acquire worker reads raw meter bytes
// from (serial port, TCP stream of a ser2net / P1 Wi-Fi dongle, ...).
//
// Contract, the same for every implementation:
// - read() returns the bytes read (> 0), or 0 when nothing arrived within timeout_ms. It never
//   blocks longer than timeout_ms (timeout_ms <= 0: poll once, do not wait), never throws and
//   never spins the CPU. It returns 0 at once when the stop notice (common/wake.h) is up, so
//   a long timeout does not delay a stop.
// - Loss of the device / connection is handled inside: the source closes, logs once per
//   outage, retries in the background of later read() calls (with its own retry schedule)
//   and resumes by itself. While it is disconnected read() simply waits out its timeout (or
//   until the device is back and sends), so the caller's loop keeps running (heartbeats,
//   SIGTERM) without any special case.
// - write() sends all bytes or returns false (not connected, error, or the write timed out);
//   a failed write that shows the device is gone starts the same reconnect cycle.
// - Not thread-safe: one thread owns a source.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mp::acquire {

struct SourceCounters {
  uint64_t bytes_in = 0;    // bytes returned by read()
  uint64_t bytes_out = 0;   // bytes written by write()
  uint64_t reconnects = 0;  // successful re-opens after a loss (the first open is not one)
  uint64_t outages = 0;     // times the device / connection was lost or could not be opened
  uint64_t errors = 0;      // failed open / connect attempts and I/O errors
};

class ByteSource {
 public:
  virtual ~ByteSource() = default;

  // Bytes read into buf (at most n), 0 on timeout. See the contract above.
  virtual size_t read(uint8_t* buf, size_t n, int timeout_ms) = 0;
  // True when all n bytes were written.
  virtual bool write(const uint8_t* data, size_t n) = 0;
  // Drops bytes received but not read yet (before a poll request of M-Bus / Modbus RTU).
  virtual void flush_input() = 0;
  virtual bool connected() const = 0;
  // Human-readable name for logs: "serial /dev/ttyUSB0 115200 8N1", "tcp 192.168.1.20:2001".
  virtual std::string describe() const = 0;
  virtual SourceCounters counters() const = 0;
};

}  // namespace mp::acquire
