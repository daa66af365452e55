// Starts a real InfluxDB 1.x (Debian influxd) for tests: everything in a temp dir, HTTP and RPC
// bound to free 127.0.0.1 ports, reporting/monitoring/logging off. Can be stopped and started
// again on the same ports and data (outage tests). Queries go through its HTTP API.
//
//   mp::test::InfluxHarness db;
//   REQUIRE(db.start());
//   REQUIRE(db.create_db("t"));
//   ... write to db.url() + "/write?db=t" ...
//   CHECK(db.query_count("t", "SELECT count(power_net_w) FROM electricity") == 1000);
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mp::test {

class InfluxHarness {
 public:
  InfluxHarness() = default;
  ~InfluxHarness();  // stops influxd and removes the temp dir
  InfluxHarness(const InfluxHarness&) = delete;
  InfluxHarness& operator=(const InfluxHarness&) = delete;

  // Starts influxd and waits (up to 15 s) for /ping to answer 204. The first start creates
  // the temp dir and picks the ports; later starts reuse both. `error` gets the reason and
  // the tail of influxd's log on failure.
  bool start(std::string* error = nullptr);
  // SIGTERM, then waits for the child (SIGKILL after 5 s).
  void stop();
  bool running() const { return pid_ > 0; }

  int http_port() const { return http_port_; }
  std::string url() const;  // "http://127.0.0.1:<port>"
  const std::string& dir() const { return dir_; }

  bool create_db(const std::string& db);
  // GET /query?db=..&q=..&epoch=ns; the JSON body, "" on error.
  std::string query(const std::string& db, const std::string& q);
  // Rows of the first series of the first result; each value as text (strings unquoted,
  // null as "null").
  std::vector<std::vector<std::string>> query_rows(const std::string& db, const std::string& q);
  // The first non-time value of the first row as an integer (count queries); 0 when the query
  // returned no series (nothing stored), -1 on error.
  int64_t query_count(const std::string& db, const std::string& q);

  // POST helper (tests that write directly): returns the HTTP status, 0 on failure.
  long post(const std::string& path_and_query, const std::string& body,
            std::string* response = nullptr);

 private:
  std::string dir_;
  int http_port_ = 0;
  int rpc_port_ = 0;
  pid_t pid_ = -1;
};

// A free TCP port on 127.0.0.1 (bound and released; tiny race accepted in tests).
int free_port();

}  // namespace mp::test
