#include "tests/integration/scripted_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <cctype>
#include <cstring>

namespace mp::test {
namespace {

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
  }
  return "Status";
}

bool send_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    s.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

std::string HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (ieq(k, name)) return v;
  return {};
}

bool HttpRequest::has_header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (ieq(k, name)) return true;
  return false;
}

ScriptedHttpServer::~ScriptedHttpServer() { stop(); }

std::string ScriptedHttpServer::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

bool ScriptedHttpServer::start() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return false;
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
    return false;
  }
  port_ = ntohs(a.sin_port);
  stop_ = false;
  acceptor_ = std::thread([this] { accept_loop(); });
  return true;
}

void ScriptedHttpServer::stop() {
  stop_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> conns;
  {
    std::lock_guard lk(mu_);
    conns.swap(conns_);
  }
  for (auto& t : conns) t.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

void ScriptedHttpServer::push(ScriptedResponse r) {
  std::lock_guard lk(mu_);
  script_.push_back(std::move(r));
}

void ScriptedHttpServer::set_default(ScriptedResponse r) {
  std::lock_guard lk(mu_);
  default_ = std::move(r);
}

void ScriptedHttpServer::set_handler(std::function<ScriptedResponse(const HttpRequest&)> h) {
  std::lock_guard lk(mu_);
  handler_ = std::move(h);
}

std::vector<HttpRequest> ScriptedHttpServer::requests() const {
  std::lock_guard lk(mu_);
  return requests_;
}

size_t ScriptedHttpServer::request_count() const {
  std::lock_guard lk(mu_);
  return requests_.size();
}

ScriptedResponse ScriptedHttpServer::next_response(const HttpRequest& req) {
  std::lock_guard lk(mu_);
  requests_.push_back(req);
  if (handler_) return handler_(req);
  if (!script_.empty()) {
    ScriptedResponse r = std::move(script_.front());
    script_.pop_front();
    return r;
  }
  return default_;
}

void ScriptedHttpServer::accept_loop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard lk(mu_);
    conns_.emplace_back([this, fd] { serve(fd); });
  }
}

void ScriptedHttpServer::serve(int fd) {
  std::string buf;
  char tmp[65536];
  // Reads until `want` bytes are buffered or the peer/stop ends it.
  auto fill = [&](size_t want) {
    while (buf.size() < want) {
      if (stop_) return false;
      pollfd p{fd, POLLIN, 0};
      int pr = ::poll(&p, 1, 50);
      if (pr == 0) continue;
      if (pr < 0) return false;
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) return false;
      buf.append(tmp, static_cast<size_t>(n));
    }
    return true;
  };
  for (;;) {
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos)
      if (!fill(buf.size() + 1)) goto done;
    {
      HttpRequest req;
      std::string_view head(buf.data(), end);
      size_t le = head.find("\r\n");
      std::string_view first = head.substr(0, le);
      size_t s1 = first.find(' '), s2 = first.rfind(' ');
      if (s1 == std::string_view::npos || s2 == s1) goto done;
      req.method = std::string(first.substr(0, s1));
      req.target = std::string(first.substr(s1 + 1, s2 - s1 - 1));
      size_t pos = le == std::string_view::npos ? head.size() : le + 2;
      while (pos < head.size()) {
        size_t e = head.find("\r\n", pos);
        if (e == std::string_view::npos) e = head.size();
        std::string_view line = head.substr(pos, e - pos);
        size_t c = line.find(':');
        if (c != std::string_view::npos) {
          std::string_view v = line.substr(c + 1);
          while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
          req.headers.emplace_back(std::string(line.substr(0, c)), std::string(v));
        }
        pos = e + 2;
      }
      size_t body_len = 0;
      std::string cl = req.header("Content-Length");
      if (!cl.empty()) body_len = std::stoul(cl);
      if (!fill(end + 4 + body_len)) goto done;
      req.body = buf.substr(end + 4, body_len);
      buf.erase(0, end + 4 + body_len);

      ScriptedResponse r = next_response(req);
      if (r.hang) {
        while (!stop_) {
          pollfd p{fd, POLLIN, 0};
          if (::poll(&p, 1, 50) > 0) {
            ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
            if (n <= 0) break;  // client gave up
          }
        }
        goto done;
      }
      std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
      for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
      out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n\r\n";
      out += r.body;
      if (!send_all(fd, out)) goto done;
    }
  }
done:
  ::close(fd);
}

bool gunzip(std::string_view in, std::string& out) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return false;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  out.clear();
  char buf[65536];
  int rc;
  do {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      return false;
    }
    out.append(buf, sizeof buf - zs.avail_out);
  } while (rc != Z_STREAM_END && (zs.avail_in > 0 || zs.avail_out == 0));
  inflateEnd(&zs);
  return rc == Z_STREAM_END;
}

}  // namespace mp::test
