// Outputs: commands run for real, HTTP against a server on 127.0.0.1 in this file.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "actuate/outputs.h"
#include "tests/harness/temp_dir.h"

using namespace mp::actuate;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct TempDir : mp::test::TempDir {
  TempDir() : mp::test::TempDir("mpoutputs") {}
  std::string write_script(const std::string& name, const std::string& body) {
    std::string file = path + "/" + name;
    std::ofstream(file) << "#!/bin/sh\n" << body;
    chmod(file.c_str(), 0755);
    return file;
  }
  std::string read(const std::string& name) const {
    std::ifstream in(path + "/" + name);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
};

// A minimal HTTP/1.1 server on 127.0.0.1: one request per connection.
struct HttpServer {
  int fd = -1;
  int port = 0;
  std::atomic<bool> stop{false};
  std::atomic<int> status{200};
  std::atomic<int> delay_ms{0};
  std::mutex mu;
  std::vector<std::string> requests;  // "METHOD /target|header-line|body"
  std::thread th;

  HttpServer() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 8) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    th = std::thread([this] { loop(); });
  }
  ~HttpServer() {
    stop = true;
    th.join();
    ::close(fd);
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
  std::vector<std::string> got() {
    std::lock_guard<std::mutex> lock(mu);
    return requests;
  }
  void loop() {
    while (!stop) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      serve(c);
      ::close(c);
    }
  }
  void serve(int c) {
    std::string in;
    char buf[2048];
    size_t head_end = std::string::npos;
    size_t want = 0;
    auto deadline = Clock::now() + std::chrono::seconds(2);
    while (Clock::now() < deadline && !stop) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      in.append(buf, static_cast<size_t>(n));
      if (head_end == std::string::npos && (head_end = in.find("\r\n\r\n")) != std::string::npos) {
        size_t cl = in.find("Content-Length: ");
        want = cl != std::string::npos && cl < head_end
                   ? std::strtoul(in.c_str() + cl + 16, nullptr, 10)
                   : 0;
      }
      if (head_end != std::string::npos && in.size() >= head_end + 4 + want) break;
    }
    if (head_end == std::string::npos) return;
    std::string first = in.substr(0, in.find("\r\n"));
    std::string target = first.substr(0, first.rfind(' '));
    std::string xhdr;
    size_t x = in.find("X-Test: ");
    if (x != std::string::npos && x < head_end) xhdr = in.substr(x, in.find("\r\n", x) - x);
    {
      std::lock_guard<std::mutex> lock(mu);
      requests.push_back(target + "|" + xhdr + "|" + in.substr(head_end + 4, want));
    }
    for (int waited = 0; waited < delay_ms && !stop; waited += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::string resp = "HTTP/1.1 " + std::to_string(status.load()) +
                       " X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    (void)::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
  }
};

bool no_children_left() { return ::waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD; }

}  // namespace

TEST_CASE("CommandOutput runs the on and off argv without a shell") {
  TempDir dir;
  std::string script =
      dir.write_script("relay.sh", "echo \"$*\" >> \"$(dirname \"$0\")/calls.log\"\n");
  CommandOutput out({script, "on", "a b"}, {script, "off", "$HOME;x"}, 2);
  SwitchResult r = out.set(true);
  CHECK(r.ok);
  CHECK(r.error.empty());
  CHECK(out.set(false).ok);
  CHECK(out.set(true).ok);
  // Arguments arrive verbatim: no word splitting, no expansion.
  CHECK(dir.read("calls.log") == "on a b\noff $HOME;x\non a b\n");
  // the description (logged) names the programs only: arguments may hold credentials
  CHECK(out.describe() == "command on: " + script + " ... off: " + script + " ...");
  CHECK(no_children_left());
}

TEST_CASE("CommandOutput failures: exit code, signal, missing program, empty argv") {
  TempDir dir;
  std::string fail = dir.write_script("fail.sh", "exit 3\n");
  SwitchResult r = CommandOutput({fail}, {"true"}).set(true);
  CHECK_FALSE(r.ok);
  CHECK(r.error == "'" + fail + "' failed with exit code 3");
  CHECK_FALSE(r.uncertain);                              // the command said it did not switch
  CHECK(CommandOutput({fail}, {"true"}).set(false).ok);  // PATH lookup of "true"

  r = CommandOutput({"sh", "-c", "kill -TERM $$"}, {}).set(true);
  CHECK_FALSE(r.ok);
  CHECK(r.error == "'sh' killed by signal 15 (Terminated)");
  CHECK(r.uncertain);  // it may have switched before it was killed

  r = CommandOutput({"/nonexistent/relay-tool"}, {}).set(true);
  CHECK_FALSE(r.ok);
  CHECK(r.error == "cannot run '/nonexistent/relay-tool': No such file or directory");
  CHECK_FALSE(r.uncertain);

  r = CommandOutput({"true"}, {}).set(false);
  CHECK_FALSE(r.ok);
  CHECK(r.error == "no command configured to switch off");
  CHECK(no_children_left());
}

TEST_CASE("CommandOutput kills and reaps a command that times out") {
  auto t0 = Clock::now();
  SwitchResult r = CommandOutput({"sleep", "10"}, {}, 0.2).set(true);
  double took = ms_since(t0);
  CHECK_FALSE(r.ok);
  CHECK(r.error == "'sleep' timed out after 200 ms (killed)");
  CHECK(r.uncertain);
  CHECK(took >= 200);
  CHECK(took < 1000);
  CHECK(no_children_left());

  // A shell whose own child sleeps: the whole process group goes.
  TempDir dir;
  std::string script =
      dir.write_script("slow.sh", "sleep 10\necho done > \"$(dirname \"$0\")/x\"\n");
  t0 = Clock::now();
  r = CommandOutput({script}, {}, 0.2).set(true);
  CHECK_FALSE(r.ok);
  CHECK(ms_since(t0) < 1000);
  CHECK(no_children_left());
}

TEST_CASE("HttpOutput sends the request of each state") {
  HttpServer srv;
  HttpRequest on{srv.url("/relay/0?turn=on"),
                 "POST",
                 "{\"on\":true}",
                 {"Content-Type: application/json", "X-Test: 1"}};
  HttpRequest off{srv.url("/relay/0?turn=off"), "GET", "", {}};
  HttpOutput out(on, off, 2);
  CHECK(out.set(true).ok);
  CHECK(out.set(false).ok);
  HttpRequest put{srv.url("/state"), "PUT", "off", {}};
  CHECK(HttpOutput(put, put, 2).set(false).ok);
  std::vector<std::string> expect = {"POST /relay/0?turn=on|X-Test: 1|{\"on\":true}",
                                     "GET /relay/0?turn=off||", "PUT /state||off"};
  CHECK(srv.got() == expect);
  CHECK(out.describe() == "http on: POST http://127.0.0.1:" + std::to_string(srv.port) +
                              "/relay/0 off: GET http://127.0.0.1:" + std::to_string(srv.port) +
                              "/relay/0");
}

TEST_CASE("HttpOutput failures: 500, timeout, refused") {
  HttpServer srv;
  srv.status = 500;
  HttpRequest rq{srv.url("/x?token=secret"), "POST", "1", {}};
  SwitchResult r = HttpOutput(rq, rq, 2).set(true);
  CHECK_FALSE(r.ok);
  CHECK(r.error == "POST " + srv.url("/x") + ": HTTP 500");
  CHECK_FALSE(r.uncertain);  // the device answered that it failed
  CHECK(r.error.find("secret") == std::string::npos);

  srv.status = 204;
  CHECK(HttpOutput(rq, rq, 2).set(true).ok);

  srv.delay_ms = 3000;
  auto t0 = Clock::now();
  r = HttpOutput(rq, rq, 0.2).set(true);
  double took = ms_since(t0);
  CHECK_FALSE(r.ok);
  CHECK(r.error.rfind("POST " + srv.url("/x") + ": Operation timed out after", 0) == 0);
  CHECK(r.uncertain);  // the request went out: the device may have switched
  CHECK(took < 1000);

  // Nothing listens on this port any more.
  int port;
  {
    HttpServer gone;
    port = gone.port;
  }
  HttpRequest dead{"http://127.0.0.1:" + std::to_string(port) + "/", "POST", "", {}};
  r = HttpOutput(dead, dead, 1).set(false);
  CHECK_FALSE(r.ok);
  CHECK(r.error.rfind("POST http://127.0.0.1:" + std::to_string(port) + "/: ", 0) == 0);
  CHECK_FALSE(r.uncertain);  // no connection: nothing was sent
}

TEST_CASE("redact_url drops credentials and the query") {
  CHECK(redact_url("https://user:pw@host:8080/a/b?token=x#f") == "https://host:8080/a/b");
  CHECK(redact_url("http://host/p@q") == "http://host/p@q");
  CHECK(redact_url("http://u@host") == "http://host");
  CHECK(redact_url("") == "");
}

TEST_CASE("SimOutput records") {
  SimOutput s("pool");
  CHECK(s.set(true).ok);
  s.fail_next(1);
  SwitchResult r = s.set(false);
  CHECK_FALSE(r.ok);
  CHECK(r.error == "simulated failure");
  CHECK(s.set(false).ok);
  CHECK(s.history() == std::vector<bool>{true, false});
  CHECK(s.describe() == "sim pool");
}

TEST_CASE("GpiodOutput: a missing chip is a clear error naming chip and line") {
  GpiodOutput g("gpiochip-meterpipe-test", 17, true);
  CHECK(g.describe() == "gpio chip 'gpiochip-meterpipe-test' line 17 (active low)");
  std::string err;
  CHECK_FALSE(g.open(err));
  CHECK(err.rfind("cannot open GPIO chip 'gpiochip-meterpipe-test' for line 17: ", 0) == 0);
  SwitchResult r = g.set(true);
  CHECK_FALSE(r.ok);
  CHECK(r.error == err);
  GpiodOutput p("/dev/does-not-exist", 4);
  CHECK_FALSE(p.set(false).ok);
}
