#include "tests/integration/influx_harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace mp::test {
namespace {

size_t collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

// method "GET" or "POST"; returns HTTP status or 0.
long http(const std::string& url, const char* method, const std::string& body, std::string* out,
          long timeout_ms = 10000) {
  CURL* c = curl_easy_init();
  if (!c) return 0;
  std::string sink;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out ? out : &sink);
  curl_slist* h = curl_slist_append(nullptr, "Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  if (std::string(method) == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  long status = 0;
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return status;
}

std::string escape(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string tail_of(const std::string& path, size_t n = 2000) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  return s.size() > n ? s.substr(s.size() - n) : s;
}

// Parses one JSON scalar at `p` into text; advances p.
bool scalar(const std::string& j, size_t& p, std::string& out) {
  out.clear();
  if (p >= j.size()) return false;
  if (j[p] == '"') {
    ++p;
    while (p < j.size() && j[p] != '"') {
      if (j[p] == '\\' && p + 1 < j.size()) {
        ++p;
        char e = j[p];
        out += e == 'n' ? '\n' : e == 't' ? '\t' : e;
      } else {
        out += j[p];
      }
      ++p;
    }
    ++p;
    return true;
  }
  while (p < j.size() && j[p] != ',' && j[p] != ']') out += j[p++];
  return !out.empty();
}

}  // namespace

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

InfluxHarness::~InfluxHarness() {
  stop();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string InfluxHarness::url() const { return "http://127.0.0.1:" + std::to_string(http_port_); }

bool InfluxHarness::start(std::string* error) {
  auto fail = [&](const std::string& why) {
    if (error) *error = why;
    return false;
  };
  if (pid_ > 0) return true;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (dir_.empty()) {
    char tmpl[] = "/tmp/mp_influx_XXXXXX";
    if (!::mkdtemp(tmpl)) return fail("mkdtemp failed");
    dir_ = tmpl;
    http_port_ = free_port();
    rpc_port_ = free_port();
    while (rpc_port_ == http_port_) rpc_port_ = free_port();
    if (!http_port_ || !rpc_port_) return fail("no free port");
    std::ofstream cfg(dir_ + "/influxdb.conf");
    cfg << "reporting-enabled = false\n"
        << "bind-address = \"127.0.0.1:" << rpc_port_ << "\"\n"
        << "[meta]\n  dir = \"" << dir_ << "/meta\"\n"
        << "[data]\n  dir = \"" << dir_ << "/data\"\n  wal-dir = \"" << dir_ << "/wal\"\n"
        << "  query-log-enabled = false\n"
        << "[monitor]\n  store-enabled = false\n"
        << "[http]\n  bind-address = \"127.0.0.1:" << http_port_ << "\"\n"
        << "  log-enabled = false\n  pprof-enabled = false\n"
        << "[ifql]\n  enabled = false\n";
    if (!cfg) return fail("cannot write influxdb.conf");
  }
  std::string conf = dir_ + "/influxdb.conf";
  std::string logf = dir_ + "/influxd.log";
  pid_t pid = ::fork();
  if (pid < 0) return fail("fork failed");
  if (pid == 0) {
    int fd = ::open(logf.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::execlp("influxd", "influxd", "-config", conf.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  pid_ = pid;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return fail("influxd exited during start; log:\n" + tail_of(logf));
    }
    if (http(url() + "/ping", "GET", "", nullptr, 500) == 204) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop();
  return fail("influxd did not answer /ping within 15 s; log:\n" + tail_of(logf));
}

void InfluxHarness::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int status;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
}

long InfluxHarness::post(const std::string& path_and_query, const std::string& body,
                         std::string* response) {
  return http(url() + path_and_query, "POST", body, response);
}

bool InfluxHarness::create_db(const std::string& db) {
  std::string resp;
  long st = http(url() + "/query?q=" + escape("CREATE DATABASE \"" + db + "\""), "POST", "", &resp);
  return st == 200 && resp.find("\"error\"") == std::string::npos;
}

std::string InfluxHarness::query(const std::string& db, const std::string& q) {
  std::string resp;
  long st = http(url() + "/query?db=" + escape(db) + "&epoch=ns&q=" + escape(q), "GET", "", &resp);
  return st == 200 ? resp : std::string();
}

std::vector<std::vector<std::string>> InfluxHarness::query_rows(const std::string& db,
                                                                const std::string& q) {
  std::vector<std::vector<std::string>> rows;
  std::string j = query(db, q);
  size_t p = j.find("\"values\":[");
  if (p == std::string::npos) return rows;
  p += 10;
  while (p < j.size() && j[p] == '[') {
    ++p;
    std::vector<std::string> row;
    std::string v;
    while (p < j.size() && j[p] != ']') {
      if (!scalar(j, p, v)) return rows;
      row.push_back(v);
      if (p < j.size() && j[p] == ',') ++p;
    }
    ++p;  // ']'
    rows.push_back(std::move(row));
    if (p < j.size() && j[p] == ',') ++p;
  }
  return rows;
}

int64_t InfluxHarness::query_count(const std::string& db, const std::string& q) {
  std::string j = query(db, q);
  if (j.empty() || j.find("\"error\"") != std::string::npos) return -1;
  auto rows = query_rows(db, q);
  if (rows.empty()) return 0;
  if (rows[0].size() < 2) return -1;
  return std::strtoll(rows[0][1].c_str(), nullptr, 10);
}

}  // namespace mp::test
