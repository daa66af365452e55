#include "actuate/outputs.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <gpiod.hpp>
#include <thread>

#include "common/lazy_curl.h"
#include "common/log.h"

extern char** environ;

namespace mp::actuate {
namespace {

int64_t to_ms(double s) {
  if (!(s > 0)) return 1;
  if (s > 86400) return int64_t{86400} * 1000;
  return std::max<int64_t>(1, static_cast<int64_t>(s * 1000 + 0.5));
}

}  // namespace

std::string redact_url(const std::string& url) {
  size_t scheme = url.find("://");
  size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  size_t end = url.find_first_of("?#", start);
  std::string base = url.substr(0, end);
  size_t path = base.find('/', start);
  size_t at = base.rfind('@', path == std::string::npos ? std::string::npos : path);
  if (at != std::string::npos && at >= start) base.erase(start, at + 1 - start);
  return base;
}

// ---- CommandOutput ----

CommandOutput::CommandOutput(std::vector<std::string> on_argv, std::vector<std::string> off_argv,
                             double timeout_s)
    : on_(std::move(on_argv)), off_(std::move(off_argv)), timeout_ms_(to_ms(timeout_s)) {}

std::string CommandOutput::describe() const {
  // program names only: arguments often hold credentials (curl -u user:password ...)
  auto prog = [](const std::vector<std::string>& v) { return v.empty() ? std::string() : v[0]; };
  return "command on: " + prog(on_) + " ... off: " + prog(off_) + " ...";
}

SwitchResult CommandOutput::set(bool on) {
  const auto& argv = on ? on_ : off_;
  if (argv.empty() || argv[0].empty())
    return {false, std::string("no command configured to switch ") + (on ? "on" : "off")};
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  // fork + exec rather than posix_spawn: the child must die with us (PR_SET_PDEATHSIG), or a
  // killed actuate would leave a late "on" running after its successor decided otherwise.
  // Everything the child needs is prepared before fork (only async-signal-safe calls after).
  std::string path = argv[0];
  if (path.find('/') == std::string::npos) {
    const char* env_path = std::getenv("PATH");
    std::string dirs = env_path ? env_path : "/usr/local/bin:/usr/bin:/bin";
    size_t start = 0;
    while (start <= dirs.size()) {
      size_t end = dirs.find(':', start);
      if (end == std::string::npos) end = dirs.size();
      std::string cand = dirs.substr(start, end - start) + "/" + argv[0];
      if (::access(cand.c_str(), X_OK) == 0) {
        path = cand;
        break;
      }
      start = end + 1;
    }
  }
  if (::access(path.c_str(), X_OK) != 0)
    return {false, "cannot run '" + argv[0] + "': " + std::strerror(errno)};
  char** envp = environ;
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return {false, "cannot run '" + argv[0] + "': " + std::strerror(errno)};
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);  // own group: a timeout kills the command and what it started
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
    // stdin and stdout to /dev/null (a Shelly's JSON reply is no log line); stderr stays:
    // an error the command prints shows in the worker's log
    int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 1);
    }
    ::close_range(3, ~0U, 0);
    ::execve(path.c_str(), args.data(), envp);
    ::_exit(127);
  }
  ::setpgid(pid, pid);

  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  auto nap = std::chrono::milliseconds(1);
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      int e = errno;
      ::kill(-pid, SIGKILL);
      return {false, "cannot wait for '" + argv[0] + "': " + std::strerror(e)};
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(-pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return {false,
              "'" + argv[0] + "' timed out after " + std::to_string(timeout_ms_) + " ms (killed)",
              true};
    }
    std::this_thread::sleep_for(nap);
    if (nap < std::chrono::milliseconds(20)) nap *= 2;
  }
  if (WIFEXITED(status)) {
    if (WEXITSTATUS(status) == 0) return {true, ""};
    return {false,
            "'" + argv[0] + "' failed with exit code " + std::to_string(WEXITSTATUS(status))};
  }
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    return {
        false,
        "'" + argv[0] + "' killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")",
        true};
  }
  return {false, "'" + argv[0] + "' ended abnormally"};
}

// ---- HttpOutput ----

namespace {
size_t discard(char*, size_t size, size_t n, void*) { return size * n; }
}  // namespace

HttpOutput::HttpOutput(HttpRequest on, HttpRequest off, double timeout_s)
    : on_(std::move(on)), off_(std::move(off)), timeout_ms_(to_ms(timeout_s)) {
  std::string error;
  if (!curl(error)) log::error("%s", error.c_str());  // each switch then fails with it
}

std::string HttpOutput::describe() const {
  return "http on: " + on_.method + " " + redact_url(on_.url) + " off: " + off_.method + " " +
         redact_url(off_.url);
}

SwitchResult HttpOutput::set(bool on) {
  const HttpRequest& rq = on ? on_ : off_;
  std::string what = rq.method + " " + redact_url(rq.url);
  if (rq.url.empty())
    return {false, std::string("no URL configured to switch ") + (on ? "on" : "off")};
  std::string error;
  const Curl* k = curl(error);
  if (!k) return {false, what + ": " + error};
  CURL* c = k->easy_init();
  if (!c) return {false, what + ": cannot initialise libcurl"};
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  for (const auto& h : rq.headers) headers = k->slist_append(headers, h.c_str());
  k->easy_setopt(c, CURLOPT_URL, rq.url.c_str());
  k->easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  k->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  k->easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms_));
  k->easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout_ms_));
  k->easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  k->easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  if (headers) k->easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  if (rq.method == "GET") {
    k->easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    if (rq.method != "POST") k->easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq.method.c_str());
    if (rq.method == "HEAD") {
      k->easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else {
      k->easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(rq.body.size()));
      k->easy_setopt(c, CURLOPT_POSTFIELDS, rq.body.c_str());
    }
  }
  CURLcode rc = k->easy_perform(c);
  long code = 0, sent = 0;
  k->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  k->easy_getinfo(c, CURLINFO_REQUEST_SIZE, &sent);
  k->easy_cleanup(c);
  k->slist_free_all(headers);
  // A request that went out without a complete answer may have switched the device; one
  // that never left (no connection, DNS, TLS) cannot have.
  if (rc != CURLE_OK)
    return {false, what + ": " + (errbuf[0] ? std::string(errbuf) : k->easy_strerror(rc)),
            sent > 0};
  if (code < 200 || code > 299) return {false, what + ": HTTP " + std::to_string(code)};
  return {true, ""};
}

// ---- SimOutput ----

SimOutput::SimOutput(std::string name) : name_(std::move(name)) {}

SwitchResult SimOutput::set(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  if (fail_ > 0) {
    --fail_;
    mp::log::info("sim output %s: %s (simulated failure)", name_.c_str(), on ? "on" : "off");
    return {false, "simulated failure"};
  }
  history_.push_back(on);
  // debug: the worker logs every switch with its reason at info already
  mp::log::debug("sim output %s: %s", name_.c_str(), on ? "on" : "off");
  return {true, ""};
}

std::string SimOutput::describe() const { return "sim " + name_; }

std::vector<bool> SimOutput::history() const {
  std::lock_guard<std::mutex> lock(mu_);
  return history_;
}

void SimOutput::fail_next(int n) {
  std::lock_guard<std::mutex> lock(mu_);
  fail_ = std::max(0, n);
}

// ---- GpiodOutput ----

struct GpiodOutput::Impl {
  gpiod::chip chip;
  gpiod::line line;
  bool requested = false;
};

GpiodOutput::GpiodOutput(std::string chip, unsigned line, bool active_low)
    : chip_(std::move(chip)), line_(line), active_low_(active_low) {}

GpiodOutput::~GpiodOutput() {
  if (impl_ && impl_->requested) {
    try {
      impl_->line.release();
    } catch (...) {
    }
  }
}

std::string GpiodOutput::describe() const {
  return "gpio chip '" + chip_ + "' line " + std::to_string(line_) +
         (active_low_ ? " (active low)" : "");
}

bool GpiodOutput::open(std::string& error) {
  if (impl_) return true;
  auto impl = std::make_unique<Impl>();
  try {
    impl->chip.open(chip_, gpiod::chip::OPEN_LOOKUP);
  } catch (const std::exception& e) {
    error =
        "cannot open GPIO chip '" + chip_ + "' for line " + std::to_string(line_) + ": " + e.what();
    return false;
  }
  try {
    impl->line = impl->chip.get_line(line_);
  } catch (const std::exception& e) {
    error = "GPIO chip '" + chip_ + "' has no line " + std::to_string(line_) + ": " + e.what();
    return false;
  }
  impl_ = std::move(impl);
  return true;
}

SwitchResult GpiodOutput::set(bool on) {
  std::string error;
  if (!open(error)) return {false, error};
  try {
    if (!impl_->requested) {
      gpiod::line_request rq;
      rq.consumer = "meterpipe";
      rq.request_type = gpiod::line_request::DIRECTION_OUTPUT;
      if (active_low_) rq.flags = gpiod::line_request::FLAG_ACTIVE_LOW;
      impl_->line.request(rq, on ? 1 : 0);
      impl_->requested = true;
    } else {
      impl_->line.set_value(on ? 1 : 0);
    }
  } catch (const std::exception& e) {
    std::string msg =
        "cannot set GPIO chip '" + chip_ + "' line " + std::to_string(line_) + ": " + e.what();
    impl_.reset();  // open again next time
    return {false, msg};
  }
  return {true, ""};
}

}  // namespace mp::actuate
