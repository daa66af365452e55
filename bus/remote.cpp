#include "bus/remote.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <zmq_addon.hpp>

#include "common/clock.h"
#include "common/curve_keys.h"
#include "common/fs.h"
#include "common/log.h"

namespace mp::bus {

namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr const char* kZapDomain = "meterpipe";
constexpr int64_t kMinute = 60'000'000'000LL;
constexpr int kRejectLinesPerMinute = 20;  // log lines for rejected keys, all keys together
constexpr size_t kMaxRemembered = 4096;    // keys remembered for rate-limiting log lines

void wipe(std::string& s) {
  std::fill(s.begin(), s.end(), '\0');
  s.clear();
}

std::string z85_encode(const void* data, size_t size) {
  std::string out(size / 4 * 5 + 1, '\0');
  if (!zmq_z85_encode(out.data(), static_cast<const uint8_t*>(data), size)) return {};
  out.resize(size / 4 * 5);
  return out;
}

int poll_ms(zmq::pollitem_t* items, size_t n, int timeout_ms) {
  try {
    return zmq::poll(items, n, std::chrono::milliseconds(timeout_ms));
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return 0;  // a signal (SIGTERM): the caller looks at its flag
    throw;
  }
}

}  // namespace

bool curve_keypair(std::string& public_key, std::string& secret_key) {
  char pub[41] = {}, sec[41] = {};
  if (zmq_curve_keypair(pub, sec) != 0) return false;
  public_key.assign(pub, 40);
  secret_key.assign(sec, 40);
  std::memset(sec, 0, sizeof sec);
  return true;
}

bool curve_public_key(const std::string& secret_key, std::string& public_key) {
  if (secret_key.size() != 40) return false;
  char pub[41] = {};
  if (zmq_curve_public(pub, secret_key.c_str()) != 0) return false;
  public_key.assign(pub, 40);
  return true;
}

// ---------------------------------------------------------------------------------------
RemoteForwarder::RemoteForwarder(Options opt)
    : opt_(std::move(opt)),
      ctx_(1),
      zap_(ctx_, zmq::socket_type::rep),
      xsub_(ctx_, zmq::socket_type::xsub),
      xpub_(ctx_, zmq::socket_type::xpub) {
  // 1. The authentication handler, before anything can connect over TCP (without a
  //    handler bound, libzmq lets every CURVE client in).
  zap_.set(zmq::sockopt::linger, 0);
  try {
    zap_.bind(kZapEndpoint);
  } catch (const zmq::error_t& e) {
    wipe(opt_.secret_key);
    throw std::runtime_error(std::string("cannot bind ") + kZapEndpoint + ": " + e.what());
  }
  load_keys(true);

  // 2. The local publishers.
  xsub_.set(zmq::sockopt::linger, 0);
  xsub_.set(zmq::sockopt::rcvhwm, 100000);
  xsub_.set(zmq::sockopt::reconnect_ivl, 100);
  xsub_.set(zmq::sockopt::reconnect_ivl_max, 1000);
  for (const auto& p : opt_.publishers) xsub_.connect(pub_endpoint(opt_.run_dir, p));

  // 3. The TCP side: CURVE server, authenticated through the handler above.
  xpub_.set(zmq::sockopt::linger, 0);
  xpub_.set(zmq::sockopt::sndhwm, opt_.sndhwm);
  xpub_.set(zmq::sockopt::maxmsgsize, int64_t(1024));  // clients send subscriptions only
  xpub_.set(zmq::sockopt::handshake_ivl, 5000);
  xpub_.set(zmq::sockopt::tcp_keepalive, 1);
  xpub_.set(zmq::sockopt::tcp_keepalive_idle, 60);
  xpub_.set(zmq::sockopt::zap_domain, kZapDomain);
  xpub_.set(zmq::sockopt::curve_server, true);
  const bool key_ok = keys::valid_z85_key(opt_.secret_key);
  if (key_ok) xpub_.set(zmq::sockopt::curve_secretkey, opt_.secret_key);
  wipe(opt_.secret_key);
  if (!key_ok) throw std::runtime_error("the server's secret key is not a Z85 CurveZMQ key");
  endpoint_ = "tcp://" + opt_.listen;
  try {
    xpub_.bind(endpoint_);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot bind " + endpoint_ + ": " + e.what());
  }
  endpoint_ = xpub_.get(zmq::sockopt::last_endpoint);
  bound_ = true;
}

RemoteForwarder::~RemoteForwarder() {
  // TCP side first: no handshake may be left waiting for the handler
  xpub_.close();
  xsub_.close();
  zap_.close();
}

RemoteForwarder::Stats RemoteForwarder::stats() const {
  Stats s;
  s.accepted = accepted_.load();
  s.rejected = rejected_.load();
  s.forwarded = forwarded_.load();
  s.subscriptions = subscriptions_.load();
  s.keys = keys_count_.load();
  s.key_reloads = key_reloads_.load();
  s.disconnects = disconnects_.load();
  return s;
}

RemoteForwarder::Signature RemoteForwarder::file_signature() const {
  Signature s;
  struct stat st {};
  if (::stat(opt_.authorized_keys_file.c_str(), &st) != 0) return s;
  s.ok = true;
  s.ino = uint64_t(st.st_ino);
  s.size = uint64_t(st.st_size);
  s.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  return s;
}

void RemoteForwarder::load_keys(bool initial) {
  const std::string& f = opt_.authorized_keys_file;
  keys_sig_ = file_signature();
  std::map<std::string, std::string> fresh;
  std::string text, err;
  if (!fs::read_file(f, text, err)) {
    // fail closed: a file that cannot be read lets nobody in
    log::error("authorized_keys_file: %s: no remote client is let in until it can be read",
               err.c_str());
  } else {
    std::vector<keys::Problem> problems;
    for (auto& k : keys::parse_authorized_keys(text, problems))
      fresh.emplace(std::move(k.key), std::move(k.name));
    for (const auto& p : problems)
      log::error("%s:%d: %s (line ignored)", f.c_str(), p.line, p.message.c_str());
  }
  bool removed = false;
  for (const auto& [k, _] : keys_) removed |= !fresh.count(k);
  keys_ = std::move(fresh);
  keys_count_ = keys_.size();
  if (initial) return;
  ++key_reloads_;
  log::info("%s changed: %zu authorized key%s", f.c_str(), keys_.size(),
            keys_.size() == 1 ? "" : "s");
  if (removed) close_connections();
}

bool RemoteForwarder::bind_tcp() {
  try {
    xpub_.bind(endpoint_);
    bound_ = true;
    return true;
  } catch (const zmq::error_t&) {
    return false;
  }
}

// A key left the file: close every connection (the listener and what it accepted), then
// listen again. Listed clients reconnect within a second and are authenticated anew.
void RemoteForwarder::close_connections() {
  if (!bound_) return;
  try {
    xpub_.unbind(endpoint_);
  } catch (const zmq::error_t& e) {
    log::warn("cannot close %s: %s", endpoint_.c_str(), e.what());
    return;
  }
  bound_ = false;
  ++disconnects_;
  // the listener closes in ZeroMQ's I/O thread: the port is free a moment later
  for (int i = 0; i < 100 && !bind_tcp(); ++i) usleep(10000);
  if (bound_)
    log::info(
        "an authorized key was removed: closed every remote connection (listed clients "
        "reconnect)");
  else
    log::warn(
        "an authorized key was removed: closed every remote connection; cannot listen "
        "on %s again yet (retrying)",
        endpoint_.c_str());
}

void RemoteForwarder::log_accepted(const std::string& key, const std::string& name,
                                   const std::string& addr) {
  const int64_t now = clock::mono_ns();
  if (accept_logged_.size() > kMaxRemembered) accept_logged_.clear();
  auto [it, fresh] = accept_logged_.emplace(key, now);
  if (!fresh && now - it->second < kMinute) return;
  it->second = now;
  const std::string who = name.empty() ? "key " + keys::key_hint(key)
                                       : "\"" + name + "\" (key " + keys::key_hint(key) + ")";
  log::info("remote client %s connected from %s", who.c_str(), addr.c_str());
}

// One line per key and minute, and at most kRejectLinesPerMinute lines a minute in all (a
// scanner trying fresh keys must not flood the log).
void RemoteForwarder::log_rejected(const std::string& key, const std::string& addr) {
  const int64_t now = clock::mono_ns();
  if (reject_logged_.size() > kMaxRemembered) reject_logged_.clear();
  Held& h = reject_logged_[key];
  if (h.last != 0 && now - h.last < kMinute) {
    ++h.held;
    return;
  }
  if (now - reject_window_ >= kMinute) {
    reject_window_ = now;
    reject_lines_ = 0;
  }
  if (reject_lines_ >= kRejectLinesPerMinute) {
    ++reject_unlogged_;
    return;
  }
  ++reject_lines_;
  std::string more;
  if (h.held) more += " (" + std::to_string(h.held) + " more from this key since the last report)";
  if (reject_unlogged_)
    more += " (" + std::to_string(reject_unlogged_) + " other rejections not logged)";
  h.last = now;
  h.held = 0;
  reject_unlogged_ = 0;
  log::warn("rejected remote client key %s from %s: not in %s%s", keys::key_hint(key).c_str(),
            addr.c_str(), opt_.authorized_keys_file.c_str(), more.c_str());
}

// RFC 27. Request: version "1.0", request id, domain, address, identity, mechanism,
// credentials (CURVE: the client's 32-byte public key). Reply: version, request id, status
// code, status text, user id, metadata.
void RemoteForwarder::handle_zap() {
  for (int i = 0; i < 100; ++i) {
    std::vector<zmq::message_t> req;
    zmq::recv_result_t r;
    try {
      r = zmq::recv_multipart(zap_, std::back_inserter(req), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t&) {
      return;
    }
    if (!r) return;
    std::string id = req.size() > 1 ? req[1].to_string() : std::string();
    std::string status = "400", text = "not authorized", user;
    const bool well_formed = req.size() >= 6 && req[0].to_string_view() == "1.0";
    const std::string addr = req.size() > 3 ? req[3].to_string() : std::string("?");
    if (!well_formed) {
      status = "500";
      text = "malformed request";
    } else if (req[5].to_string_view() == "CURVE" && req.size() >= 7 && req[6].size() == 32) {
      const std::string key = z85_encode(req[6].data(), req[6].size());
      auto it = keys_.find(key);
      if (it != keys_.end()) {
        status = "200";
        text = "OK";
        user = it->second.empty() ? key : it->second;
        ++accepted_;
        log_accepted(key, it->second, addr);
      } else {
        ++rejected_;
        log_rejected(key, addr);
      }
    } else {
      ++rejected_;  // only CURVE is offered; anything else is refused
    }
    std::vector<zmq::message_t> rep;
    rep.emplace_back(std::string_view("1.0"));
    rep.emplace_back(id.data(), id.size());
    rep.emplace_back(status.data(), status.size());
    rep.emplace_back(text.data(), text.size());
    rep.emplace_back(user.data(), user.size());
    rep.emplace_back();
    try {
      (void)zmq::send_multipart(zap_, rep, zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  }
}

void RemoteForwarder::poll(int timeout_ms) {
  zmq::pollitem_t items[] = {{static_cast<void*>(zap_), 0, ZMQ_POLLIN, 0},
                             {static_cast<void*>(xsub_), 0, ZMQ_POLLIN, 0},
                             {static_cast<void*>(xpub_), 0, ZMQ_POLLIN, 0}};
  const int64_t now0 = clock::mono_ns();
  int64_t wait = timeout_ms;
  if (next_keys_check_) wait = std::min<int64_t>(wait, (next_keys_check_ - now0) / 1000000 + 1);
  poll_ms(items, 3, int(std::max<int64_t>(0, wait)));

  handle_zap();

  // publishers -> remote clients, never blocking (XPUB drops at a client's HWM)
  for (int i = 0; i < 1000; ++i) {
    std::vector<zmq::message_t> parts;
    zmq::recv_result_t r;
    try {
      r = zmq::recv_multipart(xsub_, std::back_inserter(parts), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t&) {
      break;
    }
    if (!r) break;
    try {
      for (size_t p = 0; p < parts.size(); ++p)
        (void)xpub_.send(parts[p], p + 1 < parts.size()
                                       ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                                       : zmq::send_flags::dontwait);
      ++forwarded_;
    } catch (const zmq::error_t&) {
    }
  }

  // remote clients -> publishers: (un)subscriptions only
  for (int i = 0; i < 1000; ++i) {
    std::vector<zmq::message_t> parts;
    zmq::recv_result_t r;
    try {
      r = zmq::recv_multipart(xpub_, std::back_inserter(parts), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t&) {
      break;
    }
    if (!r) break;
    if (parts.size() != 1 || parts[0].size() == 0) continue;
    const auto kind = static_cast<const unsigned char*>(parts[0].data())[0];
    if (kind != 0 && kind != 1) continue;
    if (kind == 1)
      ++subscriptions_;
    else if (subscriptions_ > 0)
      --subscriptions_;
    try {
      (void)xsub_.send(parts[0], zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  }

  const int64_t now = clock::mono_ns();
  if (now >= next_keys_check_) {
    next_keys_check_ = now + int64_t(std::max(opt_.keys_check_ms, 10)) * 1000000;
    if (!(file_signature() == keys_sig_)) load_keys(false);
  }
  if (!bound_ && now >= next_bind_try_) {
    next_bind_try_ = now + 500000000LL;
    if (bind_tcp()) log::info("listening on %s again", endpoint_.c_str());
  }
}

// ---------------------------------------------------------------------------------------
RemoteSubscriber::RemoteSubscriber(Options opt)
    : opt_(std::move(opt)),
      sub_(context(), zmq::socket_type::sub),
      monitor_(context(), zmq::socket_type::pair) {
  for (const auto* k : {&opt_.server_key, &opt_.public_key, &opt_.secret_key})
    if (!keys::valid_z85_key(*k)) {
      wipe(opt_.secret_key);
      throw std::runtime_error("not a Z85 CurveZMQ key");
    }
  sub_.set(zmq::sockopt::linger, 0);
  sub_.set(zmq::sockopt::rcvhwm, opt_.rcvhwm);
  sub_.set(zmq::sockopt::reconnect_ivl, 500);
  sub_.set(zmq::sockopt::reconnect_ivl_max, 5000);
  sub_.set(zmq::sockopt::curve_serverkey, opt_.server_key);
  sub_.set(zmq::sockopt::curve_publickey, opt_.public_key);
  sub_.set(zmq::sockopt::curve_secretkey, opt_.secret_key);
  wipe(opt_.secret_key);
  if (opt_.prefixes.empty()) opt_.prefixes.push_back("");
  for (const auto& p : opt_.prefixes) sub_.set(zmq::sockopt::subscribe, p);
  // handshake results, to tell "refused" from "nothing published yet"
  const std::string mon =
      "inproc://meterpipe-remote-monitor-" + std::to_string(reinterpret_cast<uintptr_t>(this));
  if (zmq_socket_monitor(sub_.handle(), mon.c_str(),
                         ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                             ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_DISCONNECTED) != 0)
    throw std::runtime_error(std::string("cannot monitor the socket: ") + zmq_strerror(errno));
  monitor_.set(zmq::sockopt::linger, 0);
  monitor_.connect(mon);
  const std::string ep = "tcp://" + opt_.server;
  try {
    sub_.connect(ep);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot connect to " + ep + ": " + e.what());
  }
}

RemoteSubscriber::~RemoteSubscriber() {
  zmq_socket_monitor(sub_.handle(), nullptr, 0);
  monitor_.close();
  sub_.close();
}

void RemoteSubscriber::read_events() {
  while (true) {
    std::vector<zmq::message_t> ev;
    zmq::recv_result_t r;
    try {
      r = zmq::recv_multipart(monitor_, std::back_inserter(ev), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t&) {
      return;
    }
    if (!r) return;
    if (ev.empty() || ev[0].size() < 6) continue;
    uint16_t event = 0;
    int32_t value = 0;
    std::memcpy(&event, ev[0].data(), 2);
    std::memcpy(&value, static_cast<const char*>(ev[0].data()) + 2, 4);
    switch (event) {
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        connected_ = true;
        handshake_failures_ = 0;
        break;
      case ZMQ_EVENT_DISCONNECTED:
        connected_ = false;
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        failure_ = "the server refused this client's key (status " + std::to_string(value) +
                   "): its authorized_keys_file must list our public key";
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        // a wrong server key looks like this: the server cannot read our HELLO and hangs up
        if (++handshake_failures_ >= 3)
          failure_ =
              "the CurveZMQ handshake keeps failing: wrong --server-key, or no meterpipe "
              "remote endpoint (CURVE) there";
        break;
      default:
        break;
    }
  }
}

bool RemoteSubscriber::receive(Message& out, int timeout_ms) {
  const int64_t deadline = clock::mono_ns() + int64_t(timeout_ms) * 1000000;
  while (true) {
    std::vector<zmq::message_t> parts;
    zmq::recv_result_t r;
    try {
      r = zmq::recv_multipart(sub_, std::back_inserter(parts), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      return false;
    }
    if (r) {
      Message m;
      if (!parse_message(parts, m)) {
        ++decode_errors_;
        continue;
      }
      out = std::move(m);
      return true;
    }
    read_events();
    if (!failure_.empty()) return false;
    const int64_t left = deadline - clock::mono_ns();
    if (left <= 0) return false;
    zmq::pollitem_t items[] = {{static_cast<void*>(sub_), 0, ZMQ_POLLIN, 0},
                               {static_cast<void*>(monitor_), 0, ZMQ_POLLIN, 0}};
    if (poll_ms(items, 2, int((left + 999999) / 1000000)) == 0 && clock::mono_ns() < deadline)
      return false;  // interrupted by a signal
  }
}

}  // namespace mp::bus
