#include "acquire/tcp_source.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

#include "common/clock.h"
#include "common/log.h"
#include "common/wake.h"

namespace mp::acquire {
namespace {

constexpr int64_t kMs = 1000000;

int ms_until(int64_t now_ns, int64_t until_ns) {
  if (until_ns <= now_ns) return 0;
  int64_t ms = (until_ns - now_ns + kMs - 1) / kMs;
  return static_cast<int>(std::min<int64_t>(ms, 1 << 30));
}

std::string ms_text(int ms) {
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

std::string errno_text(int e) { return std::strerror(e); }

}  // namespace

// A running getaddrinfo_a request; heap-allocated because the resolver thread writes to it.
struct TcpSource::Lookup {
  gaicb cb{};
  addrinfo hints{};
  std::string host;
  std::string service;
};

int backoff_delay_ms(unsigned failures, int base_ms, int cap_ms) {
  if (base_ms < 1) base_ms = 1;
  if (cap_ms < base_ms) cap_ms = base_ms;
  int64_t d = base_ms;
  for (unsigned i = 1; i < failures && d < cap_ms; ++i) d *= 2;
  return static_cast<int>(std::min<int64_t>(d, cap_ms));
}

bool parse_host_port(std::string_view t, TcpSettings& s) {
  std::string_view host, port;
  if (!t.empty() && t.front() == '[') {
    size_t close = t.find(']');
    if (close == std::string_view::npos || close + 1 >= t.size() || t[close + 1] != ':')
      return false;
    host = t.substr(1, close - 1);
    port = t.substr(close + 2);
  } else {
    size_t colon = t.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = t.substr(0, colon);
    port = t.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return false;  // bare IPv6 needs [ ]
  }
  if (host.empty() || port.empty()) return false;
  int p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || end != port.data() + port.size() || p < 1 || p > 65535) return false;
  s.host = std::string(host);
  s.port = p;
  return true;
}

std::string validate(const TcpSettings& s) {
  if (s.host.empty()) return "tcp host is empty";
  if (s.port < 1 || s.port > 65535)
    return "tcp port " + std::to_string(s.port) + " is out of range";
  if (s.connect_timeout_ms < 1) return "connect timeout must be at least 1 ms";
  if (s.backoff_base_ms < 1) return "backoff base must be at least 1 ms";
  if (s.backoff_cap_ms < s.backoff_base_ms) return "backoff cap must not be below the base";
  if (s.idle_timeout_ms < 0) return "idle timeout must not be negative";
  if (s.write_timeout_ms < 1) return "write timeout must be at least 1 ms";
  if (s.keepalive_idle_s < 1 || s.keepalive_interval_s < 1 || s.keepalive_count < 1)
    return "keepalive idle, interval and count must be at least 1";
  return {};
}

TcpSource::TcpSource(TcpSettings settings) : settings_(std::move(settings)) {
  bool v6 = settings_.host.find(':') != std::string::npos;
  name_ = (v6 ? "[" + settings_.host + "]" : settings_.host) + ":" + std::to_string(settings_.port);
}

TcpSource::~TcpSource() {
  close_socket();
  drop_lookup();
  reap_abandoned();
  // Whatever is still abandoned is being written by the resolver thread: leaking those few
  // bytes is the only safe choice.
}

int TcpSource::next_attempt_in_ms() const {
  if (state_ != State::idle) return 0;
  return ms_until(clock::mono_ns(), next_attempt_ns_);
}

void TcpSource::close_socket() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void TcpSource::drop_lookup() {
  if (addrs_) {
    if (addrs_from_lookup_) {
      // Result of getaddrinfo_a: owned by lookup_->cb, freed below.
    } else {
      freeaddrinfo(addrs_);
    }
  }
  addrs_ = nullptr;
  next_addr_ = nullptr;
  addrs_from_lookup_ = false;
  if (!lookup_) return;
  if (gai_error(&lookup_->cb) == EAI_INPROGRESS) gai_cancel(&lookup_->cb);
  if (gai_error(&lookup_->cb) == EAI_INPROGRESS) {
    abandoned_.push_back(lookup_);
  } else {
    if (lookup_->cb.ar_result) freeaddrinfo(lookup_->cb.ar_result);
    delete lookup_;
  }
  lookup_ = nullptr;
}

void TcpSource::reap_abandoned() {
  auto done = [](Lookup* l) {
    if (gai_error(&l->cb) == EAI_INPROGRESS) return false;
    if (l->cb.ar_result) freeaddrinfo(l->cb.ar_result);
    delete l;
    return true;
  };
  abandoned_.erase(std::remove_if(abandoned_.begin(), abandoned_.end(), done), abandoned_.end());
}

void TcpSource::note_outage(const std::string& reason, int64_t now_ns) {
  last_error_ = reason;
  ++counters_.errors;
  if (in_outage_) {
    log::debug("tcp %s still unavailable: %s", name_.c_str(), reason.c_str());
    return;
  }
  in_outage_ = true;
  outage_start_ns_ = now_ns;
  ++counters_.outages;
  log::warn("tcp %s %s: %s; reconnecting with backoff %s -> %s", name_.c_str(),
            ever_connected_ ? "lost" : "cannot connect", reason.c_str(),
            ms_text(settings_.backoff_base_ms).c_str(), ms_text(settings_.backoff_cap_ms).c_str());
}

void TcpSource::attempt_failed(const std::string& reason) {
  close_socket();
  drop_lookup();
  state_ = State::idle;
  int64_t now = clock::mono_ns();
  ++failures_;
  next_attempt_ns_ = now + int64_t(backoff_delay_ms(failures_, settings_.backoff_base_ms,
                                                    settings_.backoff_cap_ms)) *
                               kMs;
  note_outage(reason, now);
}

void TcpSource::lose(const std::string& reason) {
  int64_t now = clock::mono_ns();
  if (now - connected_since_ns_ >= int64_t(settings_.stable_ms) * kMs) failures_ = 0;
  close_socket();
  state_ = State::idle;
  ++failures_;
  next_attempt_ns_ = now + int64_t(backoff_delay_ms(failures_, settings_.backoff_base_ms,
                                                    settings_.backoff_cap_ms)) *
                               kMs;
  note_outage(reason, now);
}

void TcpSource::start_attempt(int64_t now_ns) {
  reap_abandoned();
  drop_lookup();
  attempt_error_.clear();
  attempt_deadline_ns_ = now_ns + int64_t(settings_.connect_timeout_ms) * kMs;
  if (std::string bad = validate(settings_); !bad.empty()) {
    attempt_failed(bad);
    return;
  }
  log::debug("tcp %s: connecting", name_.c_str());
  std::string service = std::to_string(settings_.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (getaddrinfo(settings_.host.c_str(), service.c_str(), &hints, &res) == 0) {
    addrs_ = res;  // a literal address: no lookup needed
    addrs_from_lookup_ = false;
    next_addr_ = addrs_;
    state_ = State::connecting;
    connect_next_address(now_ns);
    return;
  }
  // A name: resolve in the background so read() keeps its timeout.
  auto* l = new Lookup;
  l->host = settings_.host;
  l->service = service;
  l->hints.ai_family = AF_UNSPEC;
  l->hints.ai_socktype = SOCK_STREAM;
  l->hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
  l->cb.ar_name = l->host.c_str();
  l->cb.ar_service = l->service.c_str();
  l->cb.ar_request = &l->hints;
  gaicb* list[1] = {&l->cb};
  int rc = getaddrinfo_a(GAI_NOWAIT, list, 1, nullptr);
  if (rc != 0) {
    delete l;
    attempt_failed(std::string("cannot start name resolution: ") + gai_strerror(rc));
    return;
  }
  lookup_ = l;
  state_ = State::resolving;
}

bool TcpSource::step_resolve(int64_t deadline_ns) {
  int64_t now = clock::mono_ns();
  int64_t until = std::min(deadline_ns, attempt_deadline_ns_);
  int rc = gai_error(&lookup_->cb);
  if (rc == EAI_INPROGRESS && until > now) {
    int64_t wait = until - now;
    timespec ts{time_t(wait / 1000000000), long(wait % 1000000000)};
    const gaicb* list[1] = {&lookup_->cb};
    int s = gai_suspend(list, 1, &ts);
    rc = gai_error(&lookup_->cb);
    if (rc == EAI_INPROGRESS && s == EAI_INTR) return false;  // a signal: let the caller see it
  }
  if (rc == EAI_INPROGRESS) {
    if (clock::mono_ns() >= attempt_deadline_ns_) {
      attempt_failed("cannot resolve " + settings_.host + ": timed out");
      return true;
    }
    return false;  // the caller's timeout ran out first
  }
  if (rc != 0) {
    attempt_failed("cannot resolve " + settings_.host + ": " + gai_strerror(rc));
    return true;
  }
  addrs_ = lookup_->cb.ar_result;
  addrs_from_lookup_ = true;
  next_addr_ = addrs_;
  state_ = State::connecting;
  connect_next_address(clock::mono_ns());
  return true;
}

// Starts a non-blocking connect to the next address; on immediate failure moves on; when no
// address is left the attempt fails.
void TcpSource::connect_next_address(int64_t now_ns) {
  close_socket();
  while (next_addr_) {
    addrinfo* a = next_addr_;
    next_addr_ = a->ai_next;
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      attempt_error_ = "socket: " + errno_text(errno);
      continue;
    }
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      fd_ = fd;
      on_connected(now_ns);
      return;
    }
    if (errno == EINPROGRESS || errno == EINTR) {
      fd_ = fd;
      return;  // step_connect() waits for it
    }
    attempt_error_ = errno_text(errno);
    ::close(fd);
  }
  attempt_failed(attempt_error_.empty() ? "no usable address" : attempt_error_);
}

bool TcpSource::step_connect(int64_t deadline_ns) {
  int64_t now = clock::mono_ns();
  int64_t until = std::min(deadline_ns, attempt_deadline_ns_);
  pollfd pfd{fd_, POLLOUT, 0};
  int r = ::poll(&pfd, 1, ms_until(now, until));
  if (r < 0) {
    if (errno == EINTR) return false;
    attempt_error_ = "poll: " + errno_text(errno);
    connect_next_address(clock::mono_ns());
    return true;
  }
  if (r == 0) {
    if (clock::mono_ns() >= attempt_deadline_ns_) {
      attempt_failed("connect timed out after " + ms_text(settings_.connect_timeout_ms));
      return true;
    }
    return false;  // the caller's timeout ran out first
  }
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    attempt_error_ = errno_text(err);
    connect_next_address(clock::mono_ns());
    return true;
  }
  on_connected(clock::mono_ns());
  return true;
}

void TcpSource::on_connected(int64_t now_ns) {
  int on = 1;
  (void)::setsockopt(fd_, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  (void)::setsockopt(fd_, IPPROTO_TCP, TCP_KEEPIDLE, &settings_.keepalive_idle_s, sizeof(int));
  (void)::setsockopt(fd_, IPPROTO_TCP, TCP_KEEPINTVL, &settings_.keepalive_interval_s, sizeof(int));
  (void)::setsockopt(fd_, IPPROTO_TCP, TCP_KEEPCNT, &settings_.keepalive_count, sizeof(int));
  drop_lookup();
  state_ = State::connected;
  connected_since_ns_ = now_ns;
  last_rx_ns_ = now_ns;
  if (in_outage_) {
    double secs = double(now_ns - outage_start_ns_) / 1e9;
    if (ever_connected_) {
      ++counters_.reconnects;
      log::info("tcp %s connected again after %.0f s", name_.c_str(), secs);
    } else {
      log::info("tcp %s connected after %.0f s", name_.c_str(), secs);
    }
  } else {
    log::info("tcp %s connected", name_.c_str());
  }
  in_outage_ = false;
  ever_connected_ = true;
}

size_t TcpSource::read(uint8_t* buf, size_t n, int timeout_ms) {
  if (!buf || n == 0) return 0;
  const int64_t deadline = clock::mono_ns() + int64_t(std::max(timeout_ms, 0)) * kMs;
  for (;;) {
    int64_t now = clock::mono_ns();
    switch (state_) {
      case State::idle:
        if (now >= next_attempt_ns_) {
          start_attempt(now);
          continue;
        }
        if (now >= deadline) return 0;
        if (!wake::sleep_until(std::min(deadline, next_attempt_ns_))) return 0;  // a stop
        continue;
      case State::resolving:
        if (!step_resolve(deadline)) return 0;
        continue;
      case State::connecting:
        if (!step_connect(deadline)) return 0;
        continue;
      case State::connected:
        break;
    }
    int64_t until = deadline;
    int64_t idle_at = 0;
    if (settings_.idle_timeout_ms > 0) {
      idle_at = last_rx_ns_ + int64_t(settings_.idle_timeout_ms) * kMs;
      if (now >= idle_at) {
        lose("no data for " + ms_text(settings_.idle_timeout_ms));
        continue;
      }
      until = std::min(until, idle_at);
    }
    pollfd pfd[2] = {{fd_, POLLIN, 0}, {wake::stop_fd(), POLLIN, 0}};
    int r = ::poll(pfd, pfd[1].fd >= 0 ? 2 : 1, ms_until(now, until));
    if (r < 0) {
      if (errno == EINTR) return 0;
      lose("poll: " + errno_text(errno));
      continue;
    }
    if (r == 0) {
      if (idle_at && clock::mono_ns() >= idle_at) continue;  // idle check above
      return 0;
    }
    if (!pfd[0].revents) return 0;  // the stop notice
    ssize_t k = ::recv(fd_, buf, n, MSG_DONTWAIT);
    if (k > 0) {
      last_rx_ns_ = clock::mono_ns();
      counters_.bytes_in += size_t(k);
      return size_t(k);
    }
    if (k == 0) {
      lose("peer closed the connection");
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      if (clock::mono_ns() >= deadline) return 0;
      continue;
    }
    lose(errno_text(errno));
  }
}

bool TcpSource::write(const uint8_t* data, size_t n) {
  if (state_ != State::connected) return false;
  if (n == 0) return true;
  if (!data) return false;
  const int64_t deadline = clock::mono_ns() + int64_t(settings_.write_timeout_ms) * kMs;
  size_t done = 0;
  while (done < n) {
    ssize_t k = ::send(fd_, data + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k > 0) {
      done += size_t(k);
      counters_.bytes_out += size_t(k);
      continue;
    }
    if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      lose("write failed: " + errno_text(errno));
      return false;
    }
    int64_t now = clock::mono_ns();
    if (now >= deadline) {
      ++counters_.errors;
      last_error_ =
          "write timed out after " + std::to_string(done) + " of " + std::to_string(n) + " bytes";
      log::warn("tcp %s: %s", name_.c_str(), last_error_.c_str());
      return false;
    }
    pollfd pfd{fd_, POLLOUT, 0};
    (void)::poll(&pfd, 1, ms_until(now, deadline));
  }
  return true;
}

void TcpSource::flush_input() {
  if (state_ != State::connected) return;
  uint8_t junk[4096];
  for (int i = 0; i < 256; ++i) {  // at most 1 MiB, so a flood cannot trap us here
    ssize_t k = ::recv(fd_, junk, sizeof junk, MSG_DONTWAIT);
    if (k > 0) continue;
    if (k == 0)
      lose("peer closed the connection");
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      lose(errno_text(errno));
    return;
  }
}

}  // namespace mp::acquire
