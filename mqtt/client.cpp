#include "mqtt/client.h"

#include <mosquitto.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "common/clock.h"
#include "common/log.h"

namespace mp::mqtt {
namespace {

constexpr int64_t kConnectTimeoutNs = 10'000'000'000LL;
constexpr size_t kMaxIncoming = 1000;

void notify(int fd) {
  if (fd < 0) return;
  const uint64_t one = 1;
  (void)!::write(fd, &one, sizeof one);
}

void drain_eventfd(int fd) {
  uint64_t v;
  while (::read(fd, &v, sizeof v) > 0) {
  }
}

}  // namespace

Client::Client(ClientOptions opt, Outbox& out, Worker& w) : opt_(std::move(opt)), out_(out), w_(w) {
  where_ =
      std::string(opt_.tls ? "mqtts://" : "mqtt://") + opt_.host + ":" + std::to_string(opt_.port);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  out_.set_wake_fd(wake_fd_);
}

Client::~Client() {
  stop();
  out_.set_wake_fd(-1);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Client::start() {
  static std::once_flag init;
  std::call_once(init, [] { mosquitto_lib_init(); });
  slot_ = w_.add_thread(opt_.thread_name);
  thread_ = std::thread(&Client::run, this);
}

void Client::request_stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

void Client::stop() {
  if (!thread_.joinable()) return;
  request_stop();
  thread_.join();
}

std::vector<Incoming> Client::take_incoming() {
  std::lock_guard<std::mutex> l(in_mutex_);
  std::vector<Incoming> out;
  out.swap(incoming_);
  return out;
}

void Client::run() {
  w_.info(key("broker"), "connecting to " + where_);
  while (!stop_) {
    w_.progress(slot_);
    if (open_session()) session();
    if (connected_) goodbye();
    close_client();
    if (!stop_) wait_backoff();
  }
}

bool Client::open_session() {
  refused_ = false;
  had_connack_ = false;
  refusal_.clear();
  last_lib_error_.clear();
  session_sent_ = session_done_ = 0;
  m_ = mosquitto_new(opt_.client_id.c_str(), true, this);
  if (!m_) {
    fail("cannot create an MQTT client (out of memory?)");
    return false;
  }
  mosquitto_int_option(m_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  // QoS 1: as many unacknowledged messages on the wire as our own cap (libmosquitto's
  // default of 20 would hold the rest back until PUBACKs come)
  mosquitto_max_inflight_messages_set(m_, unsigned(opt_.max_inflight));
  mosquitto_connect_callback_set(m_, &Client::on_connect);
  mosquitto_disconnect_callback_set(m_, &Client::on_disconnect);
  mosquitto_publish_callback_set(m_, &Client::on_publish);
  mosquitto_message_callback_set(m_, &Client::on_message);
  mosquitto_log_callback_set(m_, &Client::on_log);
  mosquitto_will_set(m_, opt_.will_topic.c_str(), int(opt_.will_payload.size()),
                     opt_.will_payload.data(), 1, true);
  if (!opt_.username.empty())
    mosquitto_username_pw_set(m_, opt_.username.c_str(),
                              opt_.password.empty() ? nullptr : opt_.password.c_str());
  if (opt_.tls) {
    int rc;
    if (opt_.ca_file.empty()) {
      rc = mosquitto_int_option(m_, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
      if (rc == MOSQ_ERR_SUCCESS && !opt_.cert_file.empty())
        rc = mosquitto_tls_set(m_, nullptr, "/etc/ssl/certs", opt_.cert_file.c_str(),
                               opt_.key_file.c_str(), nullptr);
    } else {
      rc = mosquitto_tls_set(m_, opt_.ca_file.c_str(), nullptr,
                             opt_.cert_file.empty() ? nullptr : opt_.cert_file.c_str(),
                             opt_.key_file.empty() ? nullptr : opt_.key_file.c_str(), nullptr);
    }
    if (rc == MOSQ_ERR_SUCCESS && !opt_.tls_verify) {
      rc = mosquitto_tls_opts_set(m_, 0 /* SSL_VERIFY_NONE */, nullptr, nullptr);
      if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_tls_insecure_set(m_, true);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
      fail("TLS setup failed: " + rc_text(rc, errno));
      return false;
    }
  }
  errno = 0;
  const int rc = mosquitto_connect_async(m_, opt_.host.c_str(), opt_.port, opt_.keepalive_s);
  const int err = errno;
  if (rc != MOSQ_ERR_SUCCESS) {
    fail(rc_text(rc, err), rc == MOSQ_ERR_ERRNO && err == ECONNREFUSED);
    return false;
  }
  return true;
}

void Client::session() {
  const int64_t started = clock::mono_ns();
  while (!stop_) {
    w_.progress(slot_);
    const int sock = mosquitto_socket(m_);
    if (sock < 0) {
      fail(last_lib_error_.empty() ? "connection closed" : last_lib_error_);
      return;
    }
    pollfd fds[2] = {{sock, short(POLLIN | (mosquitto_want_write(m_) ? POLLOUT : 0)), 0},
                     {wake_fd_, POLLIN, 0}};
    // TLS may hold decrypted bytes the socket no longer shows: read at least every 100 ms
    const int n = ::poll(fds, 2, opt_.tls ? 100 : 1000);
    if (n < 0 && errno != EINTR) {
      fail(std::string("poll: ") + std::strerror(errno));
      return;
    }
    if (fds[1].revents) drain_eventfd(wake_fd_);
    int rc = MOSQ_ERR_SUCCESS, err = 0;
    if (opt_.tls || (fds[0].revents & (POLLIN | POLLERR | POLLHUP))) {
      errno = 0;
      rc = mosquitto_loop_read(m_, 1);
      err = errno;
    }
    if (rc == MOSQ_ERR_SUCCESS && !refused_ && mosquitto_want_write(m_)) {
      errno = 0;
      rc = mosquitto_loop_write(m_, 1);
      err = errno;
    }
    if (rc == MOSQ_ERR_SUCCESS && !refused_) rc = mosquitto_loop_misc(m_);
    if (refused_) {
      fail("broker refused the connection: " + refusal_);
      return;
    }
    if (rc != MOSQ_ERR_SUCCESS) {
      // the TCP connect of a non-blocking socket fails here (ECONNREFUSED), not in connect
      fail(rc_text(rc, err), !had_connack_ && err == ECONNREFUSED);
      return;
    }
    if (!connected_ && clock::mono_ns() - started > kConnectTimeoutNs) {
      fail("no answer within 10 s");
      return;
    }
    if (connected_) drain_outbox();
    w_.gauge(key("inflight"), double(session_sent_ - session_done_));
  }
}

void Client::drain_outbox() {
  // in batches under one lock of the Outbox, up to the in-flight cap
  while (session_sent_ - session_done_ < opt_.max_inflight) {
    batch_.clear();
    if (!out_.pop_batch(
            batch_, std::min<uint64_t>(64, opt_.max_inflight - (session_sent_ - session_done_))))
      return;
    for (size_t i = 0; i < batch_.size(); ++i) {
      OutMessage& msg = batch_[i];
      ++session_sent_;  // before: a QoS 0 message may be reported written inside the call
      const int rc = mosquitto_publish(m_, nullptr, msg.topic.c_str(), int(msg.payload.size()),
                                       msg.payload.data(), opt_.qos, msg.retain);
      if (rc != MOSQ_ERR_SUCCESS) {
        --session_sent_;
        // sent again after the reconnect, in their order
        for (size_t k = batch_.size(); k-- > i;) out_.push_front(std::move(batch_[k]));
        return;
      }
      published_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void Client::goodbye() {
  // "offline" ourselves: a clean DISCONNECT makes the broker drop the Will
  ++session_sent_;
  if (mosquitto_publish(m_, nullptr, opt_.will_topic.c_str(), int(opt_.goodbye_payload.size()),
                        opt_.goodbye_payload.data(), 1, true) != MOSQ_ERR_SUCCESS)
    --session_sent_;
  await_acks(clock::mono_ns() + 1'000'000'000LL);
  mosquitto_disconnect(m_);
  // DISCONNECT gets its own time: a slow broker that used the second above must still get
  // it, or it publishes the Will
  const int64_t until = clock::mono_ns() + 300'000'000LL;
  flush_writes(until);
  await_broker_close(until);
  connected_ = false;
  out_.set_connected(false);
}

void Client::await_acks(int64_t until) {
  // libmosquitto closes the socket as soon as it has written DISCONNECT. An acknowledgement
  // still unread then (of the goodbye, or of a message sent just before the stop) makes the
  // kernel answer with a TCP reset, and a broker that gets the reset before it has read
  // DISCONNECT publishes the Will ("lost") after the goodbye (seen with mosquitto 2.0.11 in
  // half the stops soon after a connect). So every message of the session is acknowledged
  // first.
  while (mosquitto_socket(m_) >= 0 && session_done_ < session_sent_) {
    const int64_t left_ms = (until - clock::mono_ns()) / 1'000'000;
    if (left_ms <= 0) break;
    const bool want_write = mosquitto_want_write(m_);
    pollfd p{mosquitto_socket(m_), short(POLLIN | (want_write ? POLLOUT : 0)), 0};
    const int n = ::poll(&p, 1, int(std::min<int64_t>(left_ms, 100)));
    if (n < 0 && errno != EINTR) break;
    if (want_write && mosquitto_loop_write(m_, 1) != MOSQ_ERR_SUCCESS) break;
    if ((n > 0 || opt_.tls) && mosquitto_loop_read(m_, 1) != MOSQ_ERR_SUCCESS) break;
  }
}

void Client::flush_writes(int64_t until) {
  while (mosquitto_socket(m_) >= 0 && mosquitto_want_write(m_) && clock::mono_ns() < until) {
    pollfd p{mosquitto_socket(m_), POLLOUT, 0};
    ::poll(&p, 1, 100);
    if (mosquitto_loop_write(m_, 1) != MOSQ_ERR_SUCCESS) break;
  }
}

void Client::await_broker_close(int64_t until) {
  // The broker closes the connection once it has read DISCONNECT. Should the socket still be
  // open here, closing ours first with bytes unread would send a reset (see await_acks):
  // read (and discard) until the broker's end of stream.
  while (mosquitto_socket(m_) >= 0) {
    const int64_t left_ms = (until - clock::mono_ns()) / 1'000'000;
    if (left_ms <= 0) break;
    pollfd p{mosquitto_socket(m_), POLLIN, 0};
    const int n = ::poll(&p, 1, int(std::min<int64_t>(left_ms, 100)));
    if (n < 0 && errno != EINTR) break;
    if ((n > 0 || opt_.tls) && mosquitto_loop_read(m_, 1) != MOSQ_ERR_SUCCESS) break;
  }
}

void Client::close_client() {
  if (!m_) return;
  mosquitto_destroy(m_);
  m_ = nullptr;
  connected_ = false;
  out_.set_connected(false);
}

void Client::fail(const std::string& reason, bool refused_tcp) {
  const bool was_connected = had_connack_;
  had_connack_ = false;
  connected_ = false;
  out_.set_connected(false);
  ++failures_;
  // a lost connection is retried at once (after the current delay, 1 s after a CONNACK)
  quick_retry_ = refused_tcp;
  const double delay = quick_retry_ ? opt_.refused_retry_s : backoff_s_;
  w_.count(key(was_connected ? "disconnects" : "connect_failures"));
  w_.info(key("broker_error"), reason);
  w_.gauge(key("retry_s"), delay);
  const std::string what =
      was_connected ? "connection to " + where_ + " lost: " : "cannot connect to " + where_ + ": ";
  uint64_t suppressed = 0;
  const bool changed = reason != last_reason_;
  const bool due = limiter_.allow(reason, clock::mono_ns(), suppressed);
  if (changed || due) {
    failure_logged_ = true;
    log::warn(
        "%s%s (retrying in %.0f s%s)%s", what.c_str(), reason.c_str(), delay,
        quick_retry_
            ? " while it refuses connections"
            : (", then at most every " + std::to_string(int(opt_.max_backoff_s)) + " s").c_str(),
        suppressed ? (" (" + std::to_string(suppressed) + " more since)").c_str() : "");
  }
  last_reason_ = reason;
  w_.info(key("broker"), "down: " + reason);
}

void Client::wait_backoff() {
  const double delay = quick_retry_ ? opt_.refused_retry_s : backoff_s_;
  const int64_t until = clock::mono_ns() + int64_t(delay * 1e9);
  while (!stop_ && clock::mono_ns() < until) {
    w_.progress(slot_);
    pollfd p{wake_fd_, POLLIN, 0};
    const int64_t left_ms = (until - clock::mono_ns()) / 1000000;
    ::poll(&p, 1, int(std::min<int64_t>(std::max<int64_t>(left_ms, 1), 1000)));
    drain_eventfd(wake_fd_);  // pushes while down only coalesce in the Outbox
  }
  if (!quick_retry_) backoff_s_ = std::min(backoff_s_ * 2, opt_.max_backoff_s);
}

std::string Client::rc_text(int rc, int err) const {
  std::string s;
  if (rc == MOSQ_ERR_ERRNO)
    s = err ? std::strerror(err) : "system error";
  else
    s = mosquitto_strerror(rc);
  if ((rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_ERRNO || rc == MOSQ_ERR_CONN_LOST) &&
      !last_lib_error_.empty() && last_lib_error_ != s)
    s += " (" + last_lib_error_ + ")";
  return s;
}

void Client::on_connect(mosquitto* m, void* obj, int rc) {
  auto* c = static_cast<Client*>(obj);
  if (rc != 0) {
    c->refused_ = true;
    c->refusal_ = mosquitto_connack_string(rc);
    return;
  }
  for (const auto& s : c->opt_.subscriptions) mosquitto_subscribe(m, nullptr, s.c_str(), 1);
  const std::string& online = c->opt_.online_payload;
  ++c->session_sent_;
  mosquitto_publish(m, nullptr, c->opt_.will_topic.c_str(), int(online.size()), online.data(), 1,
                    true);
  c->connected_ = true;
  c->had_connack_ = true;
  c->out_.set_connected(true);
  c->backoff_s_ = 1;
  c->quick_retry_ = false;
  c->generation_.fetch_add(1);
  c->w_.count(c->key("connects"));
  c->w_.info(c->key("broker"), "connected to " + c->where_);
  c->w_.info(c->key("broker_error"), "");
  c->w_.gauge(c->key("retry_s"), 0);
  // a broker that keeps dropping us (another client with the same id takes the session
  // over) must not fill the log: "connected" follows a logged failure, else once a minute
  uint64_t suppressed = 0;
  if (c->limiter_.allow("connected", clock::mono_ns(), suppressed) || c->failure_logged_)
    log::info("connected to %s as %s", c->where_.c_str(), c->opt_.client_id.c_str());
  c->failure_logged_ = false;
  notify(c->opt_.notify_fd);
}

void Client::on_disconnect(mosquitto*, void* obj, int) {
  static_cast<Client*>(obj)->connected_ = false;
}

void Client::on_publish(mosquitto*, void* obj, int) {
  auto* c = static_cast<Client*>(obj);
  if (c->session_done_ < c->session_sent_) ++c->session_done_;
}

void Client::on_message(mosquitto*, void* obj, const mosquitto_message* msg) {
  auto* c = static_cast<Client*>(obj);
  Incoming in;
  in.topic = msg->topic ? msg->topic : "";
  if (msg->payload && msg->payloadlen > 0)
    in.payload.assign(static_cast<const char*>(msg->payload), size_t(msg->payloadlen));
  {
    std::lock_guard<std::mutex> l(c->in_mutex_);
    if (c->incoming_.size() >= kMaxIncoming) {
      c->incoming_dropped_.fetch_add(1);
      return;
    }
    c->incoming_.push_back(std::move(in));
  }
  notify(c->opt_.notify_fd);
}

void Client::on_log(mosquitto*, void* obj, int level, const char* text) {
  if ((level & MOSQ_LOG_ERR) && text) static_cast<Client*>(obj)->last_lib_error_ = text;
}

}  // namespace mp::mqtt
