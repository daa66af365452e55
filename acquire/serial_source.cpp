#include "acquire/serial_source.h"

#include <libserialport.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "common/clock.h"
#include "common/log.h"
#include "common/wake.h"

namespace mp::acquire {
namespace {

constexpr int64_t kMs = 1000000;

// Text of the last libserialport failure for return code rc.
std::string sp_reason(sp_return rc) {
  switch (rc) {
    case SP_ERR_ARG:
      return "invalid argument or device not recognised";
    case SP_ERR_MEM:
      return "out of memory";
    case SP_ERR_SUPP:
      return "not supported by the device";
    case SP_ERR_FAIL: {
      char* msg = sp_last_error_message();
      std::string text = msg ? msg : "unknown error";
      if (msg) sp_free_error_message(msg);
      return text;
    }
    case SP_OK:
      break;
  }
  return "unknown error";
}

std::string interval_text(int ms) {
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

int ms_until(int64_t now_ns, int64_t until_ns) {
  if (until_ns <= now_ns) return 0;
  int64_t ms = (until_ns - now_ns + kMs - 1) / kMs;
  return static_cast<int>(std::min<int64_t>(ms, 1 << 30));
}

sp_parity to_sp(Parity p) {
  switch (p) {
    case Parity::even:
      return SP_PARITY_EVEN;
    case Parity::odd:
      return SP_PARITY_ODD;
    case Parity::none:
      break;
  }
  return SP_PARITY_NONE;
}

}  // namespace

std::string framing(const SerialSettings& s) {
  std::string f = std::to_string(s.data_bits);
  f += s.parity == Parity::even ? 'E' : s.parity == Parity::odd ? 'O' : 'N';
  f += std::to_string(s.stop_bits);
  return f;
}

bool parse_framing(std::string_view t, SerialSettings& s) {
  if (t.size() != 3) return false;
  if (t[0] < '5' || t[0] > '8') return false;
  Parity p;
  switch (t[1]) {
    case 'N':
    case 'n':
      p = Parity::none;
      break;
    case 'E':
    case 'e':
      p = Parity::even;
      break;
    case 'O':
    case 'o':
      p = Parity::odd;
      break;
    default:
      return false;
  }
  if (t[2] != '1' && t[2] != '2') return false;
  s.data_bits = t[0] - '0';
  s.parity = p;
  s.stop_bits = t[2] - '0';
  return true;
}

std::string validate(const SerialSettings& s) {
  if (s.device.empty()) return "serial device is empty";
  if (s.baud <= 0 || s.baud > 4000000)
    return "baud rate " + std::to_string(s.baud) + " is out of range";
  if (s.data_bits < 5 || s.data_bits > 8)
    return "data bits " + std::to_string(s.data_bits) + " must be 5..8";
  if (s.stop_bits != 1 && s.stop_bits != 2)
    return "stop bits " + std::to_string(s.stop_bits) + " must be 1 or 2";
  if (s.retry_ms < 1) return "retry interval must be at least 1 ms";
  if (s.write_timeout_ms < 1) return "write timeout must be at least 1 ms";
  return {};
}

SerialSource::SerialSource(SerialSettings settings) : settings_(std::move(settings)) {}

SerialSource::~SerialSource() { close_port(); }

std::string SerialSource::describe() const {
  return "serial " + settings_.device + " " + std::to_string(settings_.baud) + " " +
         framing(settings_);
}

void SerialSource::close_port() {
  if (!port_) return;
  // Undo TIOCEXCL: on a pty (socat, tests) the flag outlives our descriptor and would refuse
  // the next open of a non-root process. Fails harmlessly on a hung-up device.
  if (fd_ >= 0) (void)::ioctl(fd_, TIOCNXCL);
  sp_close(port_);
  sp_free_port(port_);
  port_ = nullptr;
  fd_ = -1;
}

void SerialSource::note_outage(const std::string& reason, int64_t now_ns) {
  last_error_ = reason;
  ++counters_.errors;
  next_attempt_ns_ = now_ns + int64_t(settings_.retry_ms) * kMs;
  if (in_outage_) {
    log::debug("serial %s still unavailable: %s", settings_.device.c_str(), reason.c_str());
    return;
  }
  in_outage_ = true;
  outage_start_ns_ = now_ns;
  ++counters_.outages;
  log::warn("serial %s %s: %s; retrying every %s", settings_.device.c_str(),
            ever_open_ ? "lost" : "cannot be opened", reason.c_str(),
            interval_text(settings_.retry_ms).c_str());
}

void SerialSource::lose(const std::string& reason) {
  close_port();
  note_outage(reason, clock::mono_ns());
}

bool SerialSource::try_open(int64_t now_ns) {
  if (port_) return true;
  if (std::string bad = validate(settings_); !bad.empty()) {
    note_outage(bad, now_ns);
    return false;
  }
  const char* dev = settings_.device.c_str();
  struct stat st;
  if (::stat(dev, &st) != 0) {
    note_outage(std::strerror(errno), now_ns);
    return false;
  }
  // libserialport only accepts /dev/<name> with a /sys/class/tty/<name>: it does not follow
  // symlinks such as /dev/serial/by-id/... -> ../../ttyUSB0. Follow them one hop at a time
  // until it accepts the name (stopping early keeps a /dev/ttyS0 -> pts link usable).
  std::string name = settings_.device;
  sp_port* p = nullptr;
  sp_return rc = SP_ERR_ARG;
  for (int hop = 0; hop < 8; ++hop) {
    rc = sp_get_port_by_name(name.c_str(), &p);
    if (rc == SP_OK) break;
    p = nullptr;
    std::error_code ec;
    if (!std::filesystem::is_symlink(name, ec)) break;
    std::filesystem::path target = std::filesystem::read_symlink(name, ec);
    if (ec) break;
    if (target.is_relative()) target = std::filesystem::path(name).parent_path() / target;
    name = target.lexically_normal().string();
  }
  if (rc != SP_OK) {
    note_outage("not a usable serial port (" + sp_reason(rc) + ")", now_ns);
    return false;
  }
  std::string step;
  bool opened = false;
  if ((rc = sp_open(p, SP_MODE_READ_WRITE)) != SP_OK) {
    step = "open";
  } else {
    opened = true;
    if ((rc = sp_set_baudrate(p, settings_.baud)) != SP_OK) {
      step = "set " + std::to_string(settings_.baud) + " baud";
    } else if ((rc = sp_set_bits(p, settings_.data_bits)) != SP_OK) {
      step = "set " + std::to_string(settings_.data_bits) + " data bits";
    } else if ((rc = sp_set_parity(p, to_sp(settings_.parity))) != SP_OK) {
      step = "set parity";
    } else if ((rc = sp_set_stopbits(p, settings_.stop_bits)) != SP_OK) {
      step = "set " + std::to_string(settings_.stop_bits) + " stop bits";
    } else if ((rc = sp_set_flowcontrol(p, SP_FLOWCONTROL_NONE)) != SP_OK) {
      step = "switch flow control off";
    } else if ((rc = sp_get_port_handle(p, &fd_)) != SP_OK || fd_ < 0) {
      step = "get the file descriptor";
      if (rc == SP_OK) rc = SP_ERR_FAIL;
    }
  }
  if (!step.empty()) {
    std::string reason = "cannot " + step + ": " + sp_reason(rc);
    if (opened) sp_close(p);
    sp_free_port(p);
    fd_ = -1;
    note_outage(reason, now_ns);
    return false;
  }
  port_ = p;
  // One reader per port: a second process reading the same tty would steal bytes. Root can
  // still open it, so this is a guard, not a lock; failure is not fatal.
  (void)::ioctl(fd_, TIOCEXCL);
  if (in_outage_) {
    double secs = double(now_ns - outage_start_ns_) / 1e9;
    if (ever_open_) {
      ++counters_.reconnects;
      log::info("serial %s open again after %.0f s", settings_.device.c_str(), secs);
    } else {
      log::info("serial %s open (%d %s) after %.0f s", settings_.device.c_str(), settings_.baud,
                framing(settings_).c_str(), secs);
    }
  } else {
    log::info("serial %s open (%s%s%d %s)", settings_.device.c_str(),
              name == settings_.device ? "" : name.c_str(), name == settings_.device ? "" : ", ",
              settings_.baud, framing(settings_).c_str());
  }
  in_outage_ = false;
  ever_open_ = true;
  return true;
}

bool SerialSource::open() { return try_open(clock::mono_ns()); }

size_t SerialSource::read(uint8_t* buf, size_t n, int timeout_ms) {
  if (!buf || n == 0) return 0;
  const int64_t deadline = clock::mono_ns() + int64_t(std::max(timeout_ms, 0)) * kMs;
  int empty_reads = 0;
  for (;;) {
    int64_t now = clock::mono_ns();
    if (!port_) {
      if (now >= next_attempt_ns_) try_open(now);
      if (!port_) {
        if (now >= deadline) return 0;
        // Sleep until the next attempt or the deadline, whichever comes first (or a stop).
        if (!wake::sleep_until(std::min(deadline, next_attempt_ns_))) return 0;
        continue;
      }
      now = clock::mono_ns();
    }
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake::stop_fd(), POLLIN, 0}};
    int r = ::poll(fds, fds[1].fd >= 0 ? 2 : 1, ms_until(now, deadline));
    if (r < 0) {
      if (errno == EINTR) return 0;  // let the caller look at its signals
      lose(std::string("poll failed: ") + std::strerror(errno));
      continue;
    }
    if (r == 0) return 0;           // timeout
    if (!fds[0].revents) return 0;  // the stop notice
    const pollfd& pfd = fds[0];
    if (pfd.revents & POLLNVAL) {
      lose("file descriptor became invalid");
      continue;
    }
    if (pfd.revents & POLLIN) {
      int k = sp_nonblocking_read(port_, buf, n);
      if (k > 0) {
        counters_.bytes_in += size_t(k);
        return size_t(k);
      }
      if (k < 0) {
        lose("read failed: " + sp_reason(sp_return(k)));
        continue;
      }
      // Readable but nothing to read: a hung-up tty looks exactly like this, and then
      // reports EIO on the input-queue query.
      int waiting = sp_input_waiting(port_);
      if (waiting < 0) {
        lose("device hung up (" + sp_reason(sp_return(waiting)) + ")");
        continue;
      }
      if ((pfd.revents & (POLLHUP | POLLERR)) || ++empty_reads >= 3) {
        lose("device hung up");
        continue;
      }
      continue;
    }
    if (pfd.revents & (POLLHUP | POLLERR)) {
      lose("device hung up");
      continue;
    }
  }
}

bool SerialSource::write(const uint8_t* data, size_t n) {
  if (!port_) {
    int64_t now = clock::mono_ns();
    if (now < next_attempt_ns_ || !try_open(now)) return false;
  }
  if (n == 0) return true;
  if (!data) return false;
  int k = sp_blocking_write(port_, data, n, unsigned(settings_.write_timeout_ms));
  if (k < 0) {
    lose("write failed: " + sp_reason(sp_return(k)));
    return false;
  }
  counters_.bytes_out += size_t(k);
  if (size_t(k) < n) {
    ++counters_.errors;
    last_error_ =
        "write timed out after " + std::to_string(k) + " of " + std::to_string(n) + " bytes";
    log::warn("serial %s: %s", settings_.device.c_str(), last_error_.c_str());
    return false;
  }
  return true;
}

void SerialSource::flush_input() {
  if (!port_) return;
  sp_return rc = sp_flush(port_, SP_BUF_INPUT);
  if (rc != SP_OK)
    log::debug("serial %s: flush failed: %s", settings_.device.c_str(), sp_reason(rc).c_str());
}

std::optional<SerialReadBack> SerialSource::read_back() const {
  if (!port_) return std::nullopt;
  sp_port_config* cfg = nullptr;
  if (sp_new_config(&cfg) != SP_OK) return std::nullopt;
  std::optional<SerialReadBack> out;
  SerialReadBack rb;
  sp_parity parity = SP_PARITY_INVALID;
  sp_xonxoff xon = SP_XONXOFF_INVALID;
  sp_rts rts = SP_RTS_INVALID;
  sp_cts cts = SP_CTS_INVALID;
  sp_dtr dtr = SP_DTR_INVALID;
  sp_dsr dsr = SP_DSR_INVALID;
  if (sp_get_config(port_, cfg) == SP_OK && sp_get_config_baudrate(cfg, &rb.baud) == SP_OK &&
      sp_get_config_bits(cfg, &rb.data_bits) == SP_OK &&
      sp_get_config_parity(cfg, &parity) == SP_OK &&
      sp_get_config_stopbits(cfg, &rb.stop_bits) == SP_OK &&
      sp_get_config_xon_xoff(cfg, &xon) == SP_OK && sp_get_config_rts(cfg, &rts) == SP_OK &&
      sp_get_config_cts(cfg, &cts) == SP_OK && sp_get_config_dtr(cfg, &dtr) == SP_OK &&
      sp_get_config_dsr(cfg, &dsr) == SP_OK) {
    bool known = true;
    switch (parity) {
      case SP_PARITY_NONE:
        rb.parity = Parity::none;
        break;
      case SP_PARITY_EVEN:
        rb.parity = Parity::even;
        break;
      case SP_PARITY_ODD:
        rb.parity = Parity::odd;
        break;
      default:
        known = false;
        break;  // mark / space / invalid: not ours
    }
    rb.flow_control_none = xon == SP_XONXOFF_DISABLED && rts != SP_RTS_FLOW_CONTROL &&
                           cts == SP_CTS_IGNORE && dtr != SP_DTR_FLOW_CONTROL &&
                           dsr == SP_DSR_IGNORE;
    if (known) out = rb;
  }
  sp_free_config(cfg);
  return out;
}

}  // namespace mp::acquire
