// Outputs: what actually switches a relay. The worker maps each relay to one output and
// reports set()'s result to the engine (Engine::confirm). set() blocks for at most the
// output's timeout; it never throws.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace mp::actuate {

struct SwitchResult {
  bool ok = false;
  std::string error;  // why it failed, in words ("exit code 3", "timeout after 200 ms", ...)
  // Failed, but the device may have switched all the same: the command timed out or was
  // killed, or the HTTP request went out and no complete answer came back.
  bool uncertain = false;
};

class Output {
 public:
  virtual ~Output() = default;
  virtual SwitchResult set(bool on) = 0;
  virtual std::string describe() const = 0;
};

// Runs a program (no shell) for on and for off: argv[0] is looked up in PATH when it has no
// '/'. The child gets stdin from /dev/null, inherits stdout/stderr, no other file
// descriptors, and its own process group; on timeout the whole group is killed (SIGKILL)
// and reaped. Exit status 0 = switched. Needs SIGCHLD not to be ignored (SIG_IGN).
class CommandOutput : public Output {
 public:
  CommandOutput(std::vector<std::string> on_argv, std::vector<std::string> off_argv,
                double timeout_s = 10);
  SwitchResult set(bool on) override;
  std::string describe() const override;

 private:
  std::vector<std::string> on_, off_;
  int64_t timeout_ms_;
};

struct HttpRequest {
  std::string url;
  std::string method = "POST";       // any method; GET sends no body
  std::string body;                  // sent as is (set a Content-Type header for it)
  std::vector<std::string> headers;  // "Name: value"
};

// One HTTP request per switch (libcurl). 2xx = switched. Errors and describe() show the URL
// without user info and query string (they may hold credentials).
class HttpOutput : public Output {
 public:
  HttpOutput(HttpRequest on, HttpRequest off, double timeout_s = 5);
  SwitchResult set(bool on) override;
  std::string describe() const override;

 private:
  HttpRequest on_, off_;
  int64_t timeout_ms_;
};

// Records and logs only (demo, tests, dry runs). fail_next makes the next n set() fail.
class SimOutput : public Output {
 public:
  explicit SimOutput(std::string name);
  SwitchResult set(bool on) override;
  std::string describe() const override;
  std::vector<bool> history() const;
  void fail_next(int n);

 private:
  std::string name_;
  mutable std::mutex mu_;
  std::vector<bool> history_;
  int fail_ = 0;
};

// A GPIO line through libgpiod 1.6 (chip by name "gpiochip0", label "pinctrl-bcm2711",
// number "0" or path "/dev/gpiochip0"). The line is requested as an output (consumer
// "meterpipe") on the first set(), with the wanted value, so nothing glitches at start, and
// held until destruction. open() may be called early to report a bad chip/line at start;
// set() opens by itself otherwise (and again after a failure).
class GpiodOutput : public Output {
 public:
  GpiodOutput(std::string chip, unsigned line, bool active_low = false);
  ~GpiodOutput() override;
  bool open(std::string& error);
  SwitchResult set(bool on) override;
  std::string describe() const override;

 private:
  struct Impl;
  std::string chip_;
  unsigned line_;
  bool active_low_;
  std::unique_ptr<Impl> impl_;
};

// "https://host:8080/path" from "https://user:pw@host:8080/path?token=x" (for logs).
std::string redact_url(const std::string& url);

}  // namespace mp::actuate
