// SerialSource: a ByteSource on a serial port (P1 cable, M-Bus level converter, RS-485
// adapter) through libserialport.
//
// Device names: USB adapters are numbered in the order the kernel finds them, so /dev/ttyUSB0
// can become /dev/ttyUSB1 after a replug or reboot. Use the stable udev name instead:
//   /dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A12345-if00-port0
// (ls -l /dev/serial/by-id/ lists them). The name is resolved again at every (re)open, so it
// follows the adapter to whatever ttyUSB number it gets.
//
// Flow control is always off (no XON/XOFF, no RTS/CTS): libserialport's sp_open leaves IXON
// on, which silently eats the bytes 0x11 and 0x13 of binary M-Bus / Modbus frames.
//
// Loss: when the device hangs up (USB unplugged), errors, or cannot be opened, the port is
// closed, one warning is logged ("serial /dev/ttyUSB0 lost: <reason>; retrying every 1 s"),
// the device is re-opened every retry_ms from later read()/write() calls, and one info line is
// logged when it is back ("serial /dev/ttyUSB0 open again after N s").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "acquire/byte_source.h"

struct sp_port;

namespace mp::acquire {

enum class Parity { none, even, odd };

struct SerialSettings {
  std::string device = "/dev/ttyUSB0";
  int baud = 115200;
  int data_bits = 8;  // 5..8
  Parity parity = Parity::none;
  int stop_bits = 1;            // 1 or 2
  int retry_ms = 1000;          // re-open interval while the device is gone (>= 1)
  int write_timeout_ms = 1000;  // write() gives up after this long (>= 1)
};

// Presets (dsmr5, mbus, ...) belong to the protocols: protocols/registry.h apply_preset().

// "8N1", "7E1", "8E2" ...
std::string framing(const SerialSettings& s);
// Parses "8N1" / "7e1" style framing into data bits, parity and stop bits; false when invalid.
bool parse_framing(std::string_view text, SerialSettings& s);
// Empty when the settings are usable, else one line saying what is wrong.
std::string validate(const SerialSettings& s);

// The line configuration the driver reports for an open port (sp_get_config_*).
struct SerialReadBack {
  int baud = 0;
  int data_bits = 0;
  Parity parity = Parity::none;
  int stop_bits = 0;
  bool flow_control_none = false;  // no XON/XOFF, no RTS/CTS, no DTR/DSR flow control
};

class SerialSource final : public ByteSource {
 public:
  // Does not open the device: the first open() / read() / write() does.
  explicit SerialSource(SerialSettings settings);
  ~SerialSource() override;
  SerialSource(const SerialSource&) = delete;
  SerialSource& operator=(const SerialSource&) = delete;

  // Opens the device now when it is closed (regardless of the retry schedule); true when open.
  // A failure is logged once per outage and counted; later reads keep retrying.
  bool open();

  size_t read(uint8_t* buf, size_t n, int timeout_ms) override;
  bool write(const uint8_t* data, size_t n) override;
  void flush_input() override;
  bool connected() const override { return port_ != nullptr; }
  std::string describe() const override;
  SourceCounters counters() const override { return counters_; }

  const SerialSettings& settings() const { return settings_; }
  // Configuration as read back from the open port; nullopt when closed or on error.
  std::optional<SerialReadBack> read_back() const;
  // Reason of the last failure ("" when none yet).
  const std::string& last_error() const { return last_error_; }

 private:
  bool try_open(int64_t now_ns);
  void close_port();
  void lose(const std::string& reason);
  void note_outage(const std::string& reason, int64_t now_ns);

  SerialSettings settings_;
  sp_port* port_ = nullptr;
  int fd_ = -1;
  bool ever_open_ = false;
  bool in_outage_ = false;
  int64_t outage_start_ns_ = 0;
  int64_t next_attempt_ns_ = 0;
  std::string last_error_;
  SourceCounters counters_;
};

}  // namespace mp::acquire
