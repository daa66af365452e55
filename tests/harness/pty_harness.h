// Header-only helpers for serial tests that run under tests/harness/serial_ns.sh:
// a pseudo-terminal pair plays the meter; its slave is "plugged in" as /dev/ttyS0 (a symlink
// in the namespace's private tmpfs /dev) and "unplugged" by removing the symlink and closing
// the master, which hangs up every open slave descriptor, as a USB unplug does.
// No test framework in here: functions report failure through their return value / error().
#pragma once

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/statfs.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

namespace mp::test {

// True when this process runs inside serial_ns.sh: MP_SERIAL_HARNESS=1, /dev is the private
// tmpfs, and ptyshim.so is loaded. Otherwise false, with the reason in *why.
inline bool in_serial_harness(std::string* why) {
  const char* env = std::getenv("MP_SERIAL_HARNESS");
  if (!env || std::string_view(env) != "1") {
    if (why) *why = "MP_SERIAL_HARNESS is not set: run me as tests/harness/serial_ns.sh <test>";
    return false;
  }
  struct statfs fs;
  if (::statfs("/dev", &fs) != 0 || fs.f_type != 0x01021994 /* TMPFS_MAGIC */) {
    if (why) *why = "/dev is not the harness tmpfs: run me as tests/harness/serial_ns.sh <test>";
    return false;
  }
  if (!::dlsym(RTLD_DEFAULT, "mp_ptyshim_loaded")) {
    if (why) *why = "ptyshim.so is not preloaded (LD_PRELOAD / PTYSHIM)";
    return false;
  }
  return true;
}

// One pseudo-terminal pair; the master side is the meter.
class Pty {
 public:
  static constexpr const char* kDefaultLink = "/dev/ttyS0";

  Pty() {
    master_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master_ < 0) {
      fail("posix_openpt");
      return;
    }
    if (::grantpt(master_) != 0) {
      fail("grantpt");
      return;
    }
    if (::unlockpt(master_) != 0) {
      fail("unlockpt");
      return;
    }
    char name[128];
    if (::ptsname_r(master_, name, sizeof name) != 0) {
      fail("ptsname_r");
      return;
    }
    slave_ = name;
    termios t;
    if (::tcgetattr(master_, &t) != 0) {
      fail("tcgetattr(master)");
      return;
    }
    ::cfmakeraw(&t);
    if (::tcsetattr(master_, TCSANOW, &t) != 0) {
      fail("tcsetattr(master)");
      return;
    }
  }
  ~Pty() {
    unplug();
    close_master();
  }
  Pty(const Pty&) = delete;
  Pty& operator=(const Pty&) = delete;

  bool ok() const { return master_ >= 0 && error_.empty(); }
  const std::string& error() const { return error_; }
  int master() const { return master_; }
  const std::string& slave_path() const { return slave_; }

  // Makes link (default /dev/ttyS0) a symlink to the slave, atomically replacing whatever was
  // there (ln -s to a temporary name + rename, like `ln -s` + `mv -T`).
  bool plug(const std::string& link = kDefaultLink) {
    if (!ok()) return false;
    std::string tmp = link + ".plug." + std::to_string(::getpid());
    ::unlink(tmp.c_str());
    if (::symlink(slave_.c_str(), tmp.c_str()) != 0) {
      fail("symlink " + tmp);
      return false;
    }
    if (::rename(tmp.c_str(), link.c_str()) != 0) {
      fail("rename to " + link);
      ::unlink(tmp.c_str());
      return false;
    }
    link_ = link;
    return true;
  }

  // Removes the symlink (when it still points at this pty) and closes the master: open slave
  // descriptors hang up and re-opening the name fails with ENOENT, like a USB unplug.
  void unplug() {
    if (!link_.empty()) {
      char target[256];
      ssize_t n = ::readlink(link_.c_str(), target, sizeof target - 1);
      if (n >= 0 && std::string_view(target, size_t(n)) == slave_) ::unlink(link_.c_str());
      link_.clear();
    }
    close_master();
  }

  // Leaves the slave the way a previous user (getty, stty, another program) may leave a real
  // port: cooked mode, echo, XON/XOFF, CR/LF mapping, 8th bit stripped. The code under test
  // must undo all of it. True when applied.
  bool dirty_slave_settings() {
    int fd = ::open(slave_.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
      fail("open " + slave_);
      return false;
    }
    termios t;
    bool ok = ::tcgetattr(fd, &t) == 0;
    if (ok) {
      t.c_iflag |= IXON | IXOFF | ICRNL | ISTRIP | INLCR;
      t.c_oflag |= OPOST | ONLCR;
      t.c_lflag |= ICANON | ECHO | ISIG | IEXTEN;
      ok = ::tcsetattr(fd, TCSANOW, &t) == 0;
    }
    if (!ok) fail("tcsetattr " + slave_);
    ::close(fd);
    return ok;
  }

  void close_master() {
    if (master_ >= 0) ::close(master_);
    master_ = -1;
  }

  // The meter sends bytes. True when all were written.
  bool send(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0 && master_ >= 0) {
      ssize_t k = ::write(master_, p, n);
      if (k < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          pollfd pfd{master_, POLLOUT, 0};
          ::poll(&pfd, 1, 100);
          continue;
        }
        return false;
      }
      p += k;
      n -= size_t(k);
    }
    return n == 0;
  }
  bool send(std::string_view s) { return send(s.data(), s.size()); }

  // What the code under test wrote to the port: up to max bytes, waiting at most timeout_ms
  // for the first and collecting until max bytes or timeout_ms have passed.
  std::string receive(size_t max, int timeout_ms) {
    std::string out;
    const int step = 10;
    for (int waited = 0; out.size() < max && waited <= timeout_ms; waited += step) {
      pollfd pfd{master_, POLLIN, 0};
      if (master_ < 0 || ::poll(&pfd, 1, step) <= 0 || !(pfd.revents & POLLIN)) continue;
      char buf[512];
      ssize_t k = ::read(master_, buf, std::min(sizeof buf, max - out.size()));
      if (k > 0) out.append(buf, size_t(k));
    }
    return out;
  }

 private:
  void fail(const std::string& what) {
    if (error_.empty()) error_ = what + ": " + std::strerror(errno);
  }

  int master_ = -1;
  std::string slave_;
  std::string link_;
  std::string error_;
};

}  // namespace mp::test
