#include "serve/worker_http.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "common/clock.h"
#include "common/log.h"
#include "serve/assets.h"
#include "serve/history_api.h"
#include "serve/worker_auth.h"

namespace mp::serve {

struct HttpServer::Client {
  const mg_connection* conn_c = nullptr;
  mg_connection* conn = nullptr;
  int fd = -1;  // its TCP socket, for shutdown() when dropped (-1 = not found)
  std::string peer;
  HttpIn cred;  // what the gate let it in with (serve/auth_gate.h); set before it is listed
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::shared_ptr<const std::string>> queue;
  bool closing = false;
  bool login_ended = false;  // its login ended: the writer sends a close frame and ends
  int64_t busy_since = 0;    // mono ns the current write started (0 = not writing)
  std::thread thread;
};

namespace {

std::mutex g_log_mutex;
std::string g_last_log;  // civetweb's last error message (for start failures)

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 303:
      return "See Other";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 409:
      return "Conflict";
    case 429:
      return "Too Many Requests";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 426:
      return "Upgrade Required";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

bool addr_port(const sockaddr_storage& ss, std::string& addr, int& port) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    port = ntohs(a->sin6_port);
  } else {
    return false;
  }
  addr = buf;
  return true;
}

// civetweb does not hand out a connection's socket; find it by its two endpoints.
int find_socket(const mg_request_info* ri) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  const std::string want = ri->remote_addr;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (!end || *end || end == e->d_name || fd == dirfd(d)) continue;
    struct stat st;
    if (fstat(int(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage peer{}, local{};
    socklen_t pl = sizeof peer, ll = sizeof local;
    if (getpeername(int(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (getsockname(int(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    std::string pa, la;
    int pp = 0, lp = 0;
    if (!addr_port(peer, pa, pp) || !addr_port(local, la, lp)) continue;
    if (pp != ri->remote_port || lp != ri->server_port) continue;
    const bool same =
        pa == want || pa.find(want) != std::string::npos || want.find(pa) != std::string::npos;
    if (!same) continue;
    found = int(fd);
    break;
  }
  closedir(d);
  return found;
}

}  // namespace

HttpServer::HttpServer(std::string listen, Shared& shared, Options opt)
    : listen_(std::move(listen)), shared_(shared), opt_(opt) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::set_gate(AuthGate* gate) {
  gate_ = gate;
  if (gate_) gate_->on_session_end([this] { end_lapsed_clients(); });
}

int HttpServer::on_log(const mg_connection*, const char* message) {
  std::lock_guard<std::mutex> lk(g_log_mutex);
  g_last_log = message ? message : "";
  log::debug("civetweb: %s", g_last_log.c_str());
  return 1;  // handled: civetweb prints nothing itself
}

int HttpServer::on_init_ssl(void* ssl_ctx, void* self_v) {
  auto* self = static_cast<HttpServer*>(self_v);
  return init_tls(ssl_ctx, TlsFiles{self->opt_.tls_cert_file, self->opt_.tls_key_file});
}

bool HttpServer::start(std::string& error) {
  const bool tls = !opt_.tls_cert_file.empty();
  if (tls) load_tls_shims();
  mg_init_library(MG_FEATURES_WEBSOCKET | (tls ? MG_FEATURES_SSL : 0));
  if (!mg_check_feature(MG_FEATURES_WEBSOCKET)) {
    error = "this civetweb library was built without WebSocket support";
    return false;
  }
  if (tls && !mg_check_feature(MG_FEATURES_SSL)) {
    error = "this civetweb library was built without TLS: put a reverse proxy in front instead";
    return false;
  }
  const std::string ports = listen_ + (tls ? "s" : "");
  // each WebSocket client holds a civetweb thread for its lifetime; 3 more answer requests
  const std::string threads = std::to_string(opt_.max_clients + 3);
  const char* options[] = {"listening_ports",
                           ports.c_str(),
                           "num_threads",
                           threads.c_str(),
                           "request_timeout_ms",
                           "10000",
                           "websocket_timeout_ms",
                           "30000",
                           "enable_websocket_ping_pong",
                           "yes",
                           "enable_keep_alive",
                           "no",
                           "max_request_size",
                           "8192",
                           "enable_directory_listing",
                           "no",
                           nullptr};
  mg_callbacks cb{};
  cb.log_message = &HttpServer::on_log;
  if (tls) cb.init_ssl = &HttpServer::on_init_ssl;
  {
    std::lock_guard<std::mutex> lk(g_log_mutex);
    g_last_log.clear();
  }
  ctx_ = mg_start(&cb, this, options);
  if (!ctx_) {
    std::lock_guard<std::mutex> lk(g_log_mutex);
    error = "cannot listen on " + listen_ + (g_last_log.empty() ? "" : ": " + g_last_log);
    return false;
  }
  mg_set_websocket_handler(ctx_, "/ws", &HttpServer::on_ws_connect, &HttpServer::on_ws_ready,
                           &HttpServer::on_ws_data, &HttpServer::on_ws_close, this);
  mg_set_request_handler(ctx_, "**", &HttpServer::on_request, this);
  return true;
}

void HttpServer::stop() {
  if (!ctx_) return;
  {
    // wake every writer and cut its socket so mg_stop does not wait on a stuck client
    std::lock_guard<std::mutex> lk(clients_mutex_);
    for (auto& [conn, c] : clients_) {
      std::lock_guard<std::mutex> cl(c->mutex);
      c->closing = true;
      if (c->fd >= 0) ::shutdown(c->fd, SHUT_RDWR);
      c->cv.notify_all();
    }
  }
  mg_stop(ctx_);  // runs the close handlers, which join the writers
  ctx_ = nullptr;
  std::lock_guard<std::mutex> lk(clients_mutex_);
  for (auto& [conn, c] : clients_)
    if (c->thread.joinable()) c->thread.join();
  clients_.clear();
}

size_t HttpServer::clients() const {
  std::lock_guard<std::mutex> lk(clients_mutex_);
  return clients_.size();
}

ServeInfo HttpServer::info_locked() const {
  ServeInfo i = shared_.info;
  i.uptime_s = double(clock::mono_ns() - shared_.start_mono_ns) / 1e9;
  i.ws_clients = clients();
  i.ws_dropped = dropped_.load();
  i.ws_messages = ws_messages_.load();
  i.http_requests = requests_.load();
  return i;
}

int HttpServer::on_request(mg_connection* conn, void* self_v) {
  auto* self = static_cast<HttpServer*>(self_v);
  ++self->requests_;
  Response r;
  bool head = false;
  try {
    HttpIn in;
    int bad = 400;
    std::optional<Response> gated;
    if (!read_http_in(conn, true, in, bad)) {
      r = json_error(bad, bad == 413 ? "request body too large" : "bad request");
    } else if (self->gate_ && (gated = self->gate_->check(in, clock::mono_ns()))) {
      r = std::move(*gated);
      head = in.method == "HEAD";
    } else {
      Request req{in.method, in.path, in.query};
      head = req.method == "HEAD";
      if (!history_api::handle(req, r)) {  // the database: outside the state lock
        if (self->shared_.take_heartbeats) self->shared_.take_heartbeats();
        std::lock_guard<std::mutex> lk(self->shared_.mutex);
        const ServeInfo info = self->info_locked();
        ApiContext ctx{self->shared_.state, info, clock::wall_ns(), clock::mono_ns(),
                       &web_assets()};
        r = handle(req, ctx);
      }
    }
  } catch (const std::exception& e) {
    log::warn("http: %s", e.what());
    r = json_error(500, "internal error");
  }
  if (r.status >= 400 && r.status < 500) ++self->client_errors_;
  std::string h = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) +
                  "\r\nContent-Type: " + r.content_type +
                  "\r\nContent-Length: " + std::to_string(r.body.size()) +
                  "\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n";
  bool cache_set = false;
  for (const auto& [k, v] : r.headers) {
    h += k + ": " + v + "\r\n";
    cache_set |= k == "Cache-Control";
  }
  if (!cache_set) h += "Cache-Control: no-store\r\n";
  h += "\r\n";
  mg_write(conn, h.data(), h.size());
  if (!head && !r.body.empty()) mg_write(conn, r.body.data(), r.body.size());
  return r.status;
}

int HttpServer::on_ws_connect(const mg_connection* conn, void* self_v) {
  auto* self = static_cast<HttpServer*>(self_v);
  HttpIn in;
  int bad = 400;
  if (self->gate_ && (!read_http_in(const_cast<mg_connection*>(conn), false, in, bad) ||
                      !self->gate_->websocket_allowed(in, clock::mono_ns()))) {
    ++self->client_errors_;
    return 1;  // refuse: not logged in (or a page of another site)
  }
  if (self->clients() >= self->opt_.max_clients) {
    log::warn("websocket: %zu clients already, refusing another", self->opt_.max_clients);
    return 1;  // refuse
  }
  return 0;
}

void HttpServer::on_ws_ready(mg_connection* conn, void* self_v) {
  auto* self = static_cast<HttpServer*>(self_v);
  auto c = std::make_shared<Client>();
  c->conn = conn;
  c->conn_c = conn;
  HttpIn in;
  int bad = 400;
  // the same answer as in on_ws_connect a moment ago; a logout in between is caught by the
  // next end_lapsed_clients
  if (self->gate_ && read_http_in(conn, false, in, bad))
    self->gate_->websocket_allowed(in, clock::mono_ns(), &c->cred);
  const mg_request_info* ri = mg_get_request_info(conn);
  if (ri) {
    c->fd = find_socket(ri);
    c->peer = std::string(ri->remote_addr) + ":" + std::to_string(ri->remote_port);
  }
  if (c->fd >= 0) {
    // a small send buffer makes a client that stops reading show up as a stalled write
    // within seconds instead of after megabytes
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &self->opt_.send_buffer,
               sizeof self->opt_.send_buffer);
  } else {
    log::warn("websocket %s: socket not found; a stuck client cannot be cut off", c->peer.c_str());
  }
  {
    std::lock_guard<std::mutex> lk(self->clients_mutex_);
    self->clients_[conn] = c;
  }
  c->thread = std::thread([self, c]() { self->writer(c); });
  log::info("websocket client %s connected", c->peer.c_str());
}

int HttpServer::on_ws_data(mg_connection*, int bits, char*, size_t, void*) {
  // clients have nothing to say; only a close frame matters (civetweb answers pings itself)
  if ((bits & 0x0f) == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE) return 0;
  return 1;
}

void HttpServer::on_ws_close(const mg_connection* conn, void* self_v) {
  auto* self = static_cast<HttpServer*>(self_v);
  std::shared_ptr<Client> c;
  {
    std::lock_guard<std::mutex> lk(self->clients_mutex_);
    auto it = self->clients_.find(conn);
    if (it == self->clients_.end()) return;
    c = it->second;
    self->clients_.erase(it);
  }
  {
    std::lock_guard<std::mutex> cl(c->mutex);
    c->closing = true;
    if (c->fd >= 0) ::shutdown(c->fd, SHUT_RDWR);  // ends a write stuck on this client
    c->cv.notify_all();
  }
  if (c->thread.joinable()) c->thread.join();
  log::info("websocket client %s disconnected", c->peer.c_str());
}

void HttpServer::drop(Client& c) {
  c.closing = true;
  if (c.fd >= 0) ::shutdown(c.fd, SHUT_RDWR);
  c.cv.notify_all();
  ++dropped_;
}

void HttpServer::end_lapsed_clients() {
  if (!gate_) return;
  std::vector<std::shared_ptr<Client>> all;
  {
    std::lock_guard<std::mutex> lk(clients_mutex_);
    for (auto& [conn, c] : clients_) all.push_back(c);
  }
  const int64_t now = clock::mono_ns();
  for (auto& c : all) {
    {
      std::lock_guard<std::mutex> cl(c->mutex);
      if (c->closing) continue;
      if (c->login_ended) {  // its close frame is on the way; cut off one stuck in writing it
        if (c->busy_since && now - c->busy_since > kCloseGraceNs) drop(*c);
        continue;
      }
    }
    if (gate_->websocket_still_allowed(c->cred, now)) continue;
    std::lock_guard<std::mutex> cl(c->mutex);
    if (c->closing || c->login_ended) continue;
    c->login_ended = true;
    c->queue.clear();
    c->cv.notify_all();
    log::info("websocket client %s: its login ended, closing it", c->peer.c_str());
  }
}

void HttpServer::send_close(Client& c, std::unique_lock<std::mutex>& lk) {
  static const char reason[] = "login ended: log in again";
  char frame[2 + sizeof reason - 1];
  frame[0] = char(kLoginEnded >> 8);
  frame[1] = char(kLoginEnded & 0xff);
  std::memcpy(frame + 2, reason, sizeof reason - 1);
  c.busy_since = clock::mono_ns();
  lk.unlock();
  mg_websocket_write(c.conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, frame, sizeof frame);
  lk.lock();
  c.busy_since = 0;
  // the client answers with its close frame and civetweb ends the connection
  // (on_ws_close); one that does not answer is cut off
  if (!c.cv.wait_for(lk, std::chrono::nanoseconds(kCloseGraceNs), [&] { return c.closing; })) {
    c.closing = true;
    if (c.fd >= 0) ::shutdown(c.fd, SHUT_RDWR);
  }
}

void HttpServer::writer(std::shared_ptr<Client> c) {
  std::unique_lock<std::mutex> lk(c->mutex);
  while (true) {
    c->cv.wait(lk, [&] { return c->closing || c->login_ended || !c->queue.empty(); });
    if (c->closing) break;
    if (c->login_ended) {
      send_close(*c, lk);
      break;
    }
    auto msg = std::move(c->queue.front());
    c->queue.pop_front();
    c->busy_since = clock::mono_ns();
    lk.unlock();
    const int n = mg_websocket_write(c->conn, MG_WEBSOCKET_OPCODE_TEXT, msg->data(), msg->size());
    lk.lock();
    c->busy_since = 0;
    if (n <= 0) {
      c->closing = true;
      if (c->fd >= 0) ::shutdown(c->fd, SHUT_RDWR);
      break;
    }
    ++ws_messages_;
  }
  c->queue.clear();
}

void HttpServer::broadcast(std::string msg) {
  if (msg.empty()) return;
  auto shared = std::make_shared<const std::string>(std::move(msg));
  const int64_t now = clock::mono_ns();
  std::lock_guard<std::mutex> lk(clients_mutex_);
  for (auto& [conn, c] : clients_) {
    std::lock_guard<std::mutex> cl(c->mutex);
    if (c->closing || c->login_ended) continue;
    const bool stalled = c->busy_since && now - c->busy_since > opt_.max_stall_ns;
    if (c->queue.size() >= opt_.max_queue || stalled) {
      log::warn("websocket client %s does not keep up (%zu queued%s): disconnecting",
                c->peer.c_str(), c->queue.size(), stalled ? ", write stalled" : "");
      drop(*c);
      continue;
    }
    c->queue.push_back(shared);
    c->cv.notify_one();
  }
}

}  // namespace mp::serve
