// A tiny HTTP/1.1 server on 127.0.0.1 for tests: answers each request with the next scripted
// response (or a handler's choice, or the default), records every request byte for byte, and
// can hang (accept and never answer) to test client timeouts. Keep-alive connections are
// served until the client closes them or stop() is called.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace mp::test {

struct HttpRequest {
  std::string method;
  std::string target;                                        // path and query, as sent
  std::vector<std::pair<std::string, std::string>> headers;  // in order, as sent
  std::string body;                                          // raw (not decompressed)
  // First header of that name (case-insensitive), "" when absent.
  std::string header(std::string_view name) const;
  bool has_header(std::string_view name) const;
};

struct ScriptedResponse {
  int status = 204;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool hang = false;  // read the request, never answer
};

class ScriptedHttpServer {
 public:
  ScriptedHttpServer() = default;
  ~ScriptedHttpServer();
  ScriptedHttpServer(const ScriptedHttpServer&) = delete;
  ScriptedHttpServer& operator=(const ScriptedHttpServer&) = delete;

  // Binds 127.0.0.1 on a free port. False when it cannot.
  bool start();
  void stop();
  int port() const { return port_; }
  std::string url() const;  // "http://127.0.0.1:<port>"

  // Responses used in order, one per request; then the default (204, empty).
  void push(ScriptedResponse r);
  void set_default(ScriptedResponse r);
  // When set, decides every response (the queue and default are ignored).
  void set_handler(std::function<ScriptedResponse(const HttpRequest&)> h);

  std::vector<HttpRequest> requests() const;
  size_t request_count() const;

 private:
  void accept_loop();
  void serve(int fd);
  ScriptedResponse next_response(const HttpRequest& req);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::thread> conns_;
  std::deque<ScriptedResponse> script_;
  ScriptedResponse default_;
  std::function<ScriptedResponse(const HttpRequest&)> handler_;
  std::vector<HttpRequest> requests_;
};

// gunzip of a gzip body; false when it is not valid gzip.
bool gunzip(std::string_view in, std::string& out);

}  // namespace mp::test
