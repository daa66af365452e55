// The uploader's delivery end to end: encoder -> uploader -> a real influxd (1.6), and its
// behaviour per server answer against a scripted HTTP server. Short backoffs. The points come
// from PointsFeed, which serves encoded readings as the journals would (tests of the journal
// feed itself: tests/unit/test_upload_journal.cpp); the servers are real.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "meterpipe.pb.h"
#include "tests/integration/influx_harness.h"
#include "tests/integration/points_feed.h"
#include "tests/integration/scripted_http.h"
#include "upload/influx.h"
#include "upload/journal_feed.h"
#include "upload/line_protocol.h"
#include "upload/targets.h"
#include "upload/uploader.h"

namespace fs = std::filesystem;
using namespace mp::upload;
using mp::test::HttpRequest;
using mp::test::InfluxHarness;
using mp::test::PointsFeed;
using mp::test::ScriptedHttpServer;
using mp::test::ScriptedResponse;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kBase = 1700000000000000000;  // 2023-11-14T22:13:20Z
constexpr int64_t kSec = 1000000000;

meterpipe::Reading reading(int i) {
  meterpipe::Reading r;
  r.set_meter("home");
  r.set_protocol("dsmr");
  r.set_receive_time_ns(kBase + int64_t(i) * kSec);
  r.set_clock_synced(true);
  auto add = [&](const char* name, double v) {
    auto* x = r.add_values();
    x->set_name(name);
    x->set_number(v);
  };
  add("energy_import_kwh", 12345.678 + i * 0.001);
  add("power_net_w", i * 1.5 - 300);
  add("voltage_l1_v", 229.9 + (i % 7) * 0.1);
  add("tariff", 1 + i % 2);
  auto* t = r.add_values();
  t->set_name("dsmr_0-0:96.13.0");
  t->set_text("msg \"" + std::to_string(i) + "\" C:\\x");
  return r;
}

// Encodes readings [from, to) into the feed.
void spool_readings(PointsFeed& sp, int from, int to) {
  for (int i = from; i < to; ++i) {
    auto res = encode(reading(i), {});
    REQUIRE(res.ok());
    for (auto& p : res.points) sp.add_line(p.line, p.time_ns);
  }
}

struct Stats : UploaderStats {
  uint64_t points_received = 0;  // read from the feed
};

// An Uploader to InfluxDB on its own thread, as upload/worker_upload.cpp runs it.
class Sender {
 public:
  Sender(PointsFeed& feed, InfluxConfig cfg, UploaderOptions opt)
      : feed_(feed), target_(std::move(cfg)), up_(feed, target_, opt) {}
  ~Sender() { stop(); }
  std::string check() const { return target_.check(); }
  void start() {
    thread_ = std::thread([this] { up_.run(); });
  }
  void notify() {}  // the uploader looks at its feed every idle_ms
  void stop() {
    up_.stop();
    if (thread_.joinable()) thread_.join();
  }
  Stats stats() const {
    Stats s;
    static_cast<UploaderStats&>(s) = up_.stats();
    s.points_received = feed_.read_count();
    return s;
  }

 private:
  PointsFeed& feed_;
  InfluxTarget target_;
  Uploader up_;
  std::thread thread_;
};

std::string lines(int from, int to) {
  std::string s;
  for (int i = from; i < to; ++i) s += encode(reading(i), {}).points.at(0).line + "\n";
  return s;
}

template <class F>
bool wait_until(F f, double seconds) {
  auto end = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (Clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return f();
}

UploaderOptions fast_options(size_t batch = 100) {
  UploaderOptions o;
  o.idle_ms = 5;
  o.probe_ms = 600000;  // no /ping probes (the scripted server counts every request)
  o.batch_points = batch;
  o.batch_age_ms = 20;
  o.backoff.initial_ms = 20;
  o.backoff.max_ms = 100;
  o.random_seed = 42;
  return o;
}

InfluxConfig v1_config(const std::string& url, const std::string& db) {
  InfluxConfig c;
  c.api = InfluxConfig::Api::v1;
  c.url = url;
  c.db = db;
  c.request_timeout_ms = 5000;
  return c;
}

InfluxConfig v2_config(const std::string& url) {
  InfluxConfig c;
  c.api = InfluxConfig::Api::v2;
  c.url = url;
  c.org = "o";
  c.bucket = "b";
  c.token = "t";
  c.request_timeout_ms = 5000;
  return c;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

// ---- pure parts -----------------------------------------------------------------------------

TEST_CASE("status classes") {
  CHECK(classify_status(204) == WriteClass::ok);
  CHECK(classify_status(200) == WriteClass::ok);
  CHECK(classify_status(400) == WriteClass::bad_data);
  CHECK(classify_status(422) == WriteClass::bad_data);
  CHECK(classify_status(401) == WriteClass::config_error);
  CHECK(classify_status(403) == WriteClass::config_error);
  CHECK(classify_status(404) == WriteClass::config_error);
  CHECK(classify_status(429) == WriteClass::retry);
  CHECK(classify_status(413) == WriteClass::too_large);
  CHECK(classify_status(500) == WriteClass::retry);
  CHECK(classify_status(503) == WriteClass::retry);
  CHECK(classify_status(302) == WriteClass::retry);
}

TEST_CASE("Retry-After parsing") {
  const int64_t now = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
  CHECK(parse_retry_after("120", now) == 120000);
  CHECK(parse_retry_after(" 0 ", now) == 0);
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now) == 10000);
  CHECK(parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now) == 60000);
  CHECK(parse_retry_after("Sun Nov  6 08:49:57 1994", now) == 20000);
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now) == 0);  // past
  CHECK_FALSE(parse_retry_after("", now));
  CHECK_FALSE(parse_retry_after("soon", now));
  CHECK_FALSE(parse_retry_after("-5", now));
  CHECK_FALSE(parse_retry_after("1.5", now));
  CHECK_FALSE(parse_retry_after("Sun, 06 Xyz 1994 08:49:47 GMT", now));
  CHECK_FALSE(parse_retry_after("Sun, 06 Nov 1994 25:49:47 GMT", now));
  CHECK(parse_retry_after("99999999999999999999", now) == int64_t(100000000) * 1000);
}

TEST_CASE("backoff: exponential, jittered, capped, Retry-After as lower bound") {
  BackoffPolicy b;  // 1 s .. 5 min
  CHECK(b.delay_ms(0, std::nullopt, 0.0) == 500);
  CHECK(b.delay_ms(0, std::nullopt, 0.999999) == 999);
  CHECK(b.delay_ms(1, std::nullopt, 0.0) == 1000);
  CHECK(b.delay_ms(3, std::nullopt, 0.5) == 6000);
  CHECK(b.delay_ms(8, std::nullopt, 0.0) == 128000);
  CHECK(b.delay_ms(9, std::nullopt, 0.99999) <= 300000);
  CHECK(b.delay_ms(9, std::nullopt, 0.0) == 150000);
  CHECK(b.delay_ms(1000, std::nullopt, 0.0) == 150000);  // no overflow
  CHECK(b.delay_ms(0, 30000, 0.0) == 30000);
  CHECK(b.delay_ms(5, 1000, 0.0) == 16000);  // backoff larger than Retry-After
  CHECK(b.delay_ms(0, int64_t(86400000), 0.0) == 3600000);
}

TEST_CASE("server error messages and the offending line") {
  CHECK(extract_error_message(R"({"error":"unable to parse 'x y': bad \"q\""})") ==
        "unable to parse 'x y': bad \"q\"");
  CHECK(extract_error_message(R"({"code":"invalid","message":"failed: line 2"})") ==
        "failed: line 2");
  CHECK(extract_error_message("  plain text\n") == "plain text");
  CHECK(extract_error_message(std::string(5000, 'x')).size() == 1024);
  CHECK(find_bad_line("unable to parse 'bad line here': missing fields", "a\nb\n") ==
        "bad line here");
  CHECK(find_bad_line("failed to parse line protocol: errors encountered on line(s): line 2: x",
                      "a 1\nb 2\nc 3\n") == "b 2");
  CHECK(find_bad_line("line 9: x", "a\nb\n") == "");
  CHECK(find_bad_line("nothing", "a\n") == "");
}

TEST_CASE("gzip round trip") {
  std::string in = lines(0, 50), gz, out;
  REQUIRE(gzip_compress(in, gz));
  CHECK(gz.size() < in.size() / 3);
  REQUIRE(mp::test::gunzip(gz, out));
  CHECK(out == in);
}

// ---- real influxd -------------------------------------------------------------------------

TEST_CASE("1000 readings through encoder, spool and sender arrive with equal values") {
  InfluxHarness db;
  std::string err;
  REQUIRE_MESSAGE(db.start(&err), err);
  REQUIRE(db.create_db("t"));
  PointsFeed sp;
  Sender s(sp, v1_config(db.url(), "t"), fast_options(100));
  REQUIRE(s.check() == "");
  s.start();
  spool_readings(sp, 0, 1000);
  s.notify();
  REQUIRE(wait_until([&] { return s.stats().points_sent == 1000; }, 30));
  s.stop();
  auto st = s.stats();
  CHECK(st.points_received == 1000);
  CHECK(st.points_sent == 1000);
  CHECK(st.points_pending == 0);
  CHECK(st.dropped_bad_data == 0);
  CHECK(st.last_error == "");
  CHECK(db.query_count("t", "SELECT count(power_net_w) FROM electricity") == 1000);
  auto rows = db.query_rows("t",
                            "SELECT energy_import_kwh, power_net_w, tariff, voltage_l1_v, "
                            "\"dsmr_0-0:96.13.0\" FROM electricity WHERE meter = 'home'");
  REQUIRE(rows.size() == 1000);
  for (int i = 0; i < 1000; ++i) {
    INFO("point " << i);
    const auto& row = rows[i];
    REQUIRE(row.size() == 6);
    CHECK(std::strtoll(row[0].c_str(), nullptr, 10) == kBase + i * kSec);
    CHECK(std::strtod(row[1].c_str(), nullptr) == 12345.678 + i * 0.001);
    CHECK(std::strtod(row[2].c_str(), nullptr) == i * 1.5 - 300);
    CHECK(row[3] == std::to_string(1 + i % 2));
    CHECK(std::strtod(row[4].c_str(), nullptr) == 229.9 + (i % 7) * 0.1);
    CHECK(row[5] == "msg \"" + std::to_string(i) + "\" C:\\x");
  }
}

TEST_CASE("nasty names survive the trip through a real influxd") {
  InfluxHarness db;
  std::string err;
  REQUIRE_MESSAGE(db.start(&err), err);
  REQUIRE(db.create_db("t"));
  meterpipe::Reading r;
  r.set_meter("my meter,1=a\\b \xe2\x82\xac");
  r.set_receive_time_ns(kBase);
  auto* v = r.add_values();
  v->set_name("odd field,x=y z");
  v->set_number(1e21);
  v = r.add_values();
  v->set_name("note");
  v->set_text("q\"uote\\back, =");
  LineProtocolOptions o;
  o.measurement = "elec tricity,x";
  auto res = encode(r, o);
  REQUIRE(res.ok());
  std::string resp;
  REQUIRE(db.post("/write?db=t&precision=ns", res.points[0].line + "\n", &resp) == 204);
  auto tags = db.query_rows("t", "SHOW TAG VALUES FROM \"elec tricity,x\" WITH KEY = \"meter\"");
  REQUIRE(tags.size() == 1);
  CHECK(tags[0][1] == "my meter,1=a\\b \xe2\x82\xac");
  auto rows = db.query_rows("t", "SELECT \"odd field,x=y z\", note FROM \"elec tricity,x\"");
  REQUIRE(rows.size() == 1);
  CHECK(std::strtod(rows[0][1].c_str(), nullptr) == 1e21);
  CHECK(rows[0][2] == "q\"uote\\back, =");
}

TEST_CASE("influxd stopped mid-stream and started again: every point arrives, none twice") {
  InfluxHarness db;
  std::string err;
  REQUIRE_MESSAGE(db.start(&err), err);
  REQUIRE(db.create_db("t"));
  PointsFeed sp;
  Sender s(sp, v1_config(db.url(), "t"), fast_options(50));
  s.start();
  spool_readings(sp, 0, 200);
  s.notify();
  REQUIRE(wait_until([&] { return s.stats().points_sent == 200; }, 20));
  db.stop();
  for (int i = 200; i < 600; i += 20) {  // the meter keeps sending during the outage
    spool_readings(sp, i, i + 20);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(wait_until([&] { return s.stats().retries >= 3; }, 10));
  CHECK(s.stats().points_sent == 200);  // the rest waits in the feed (the journals)
  CHECK(s.stats().last_error.find("onnect") != std::string::npos);  // connection refused
  REQUIRE_MESSAGE(db.start(&err), err);
  REQUIRE(wait_until([&] { return s.stats().points_sent == 600; }, 20));
  s.stop();
  auto st = s.stats();
  CHECK(st.points_sent == 600);  // each point accepted exactly once
  CHECK(st.dropped_bad_data == 0);
  CHECK(db.query_count("t", "SELECT count(power_net_w) FROM electricity") == 600);
}

TEST_CASE("a long backoff on an unanswered server is cut short by the /ping probe") {
  InfluxHarness db;
  std::string err;
  REQUIRE_MESSAGE(db.start(&err), err);
  REQUIRE(db.create_db("t"));
  PointsFeed sp;
  UploaderOptions o = fast_options(10);
  o.backoff.initial_ms = 60000;  // a retry without the probe would wait 30..60 s
  o.backoff.max_ms = 60000;
  o.probe_ms = 100;
  Sender s(sp, v1_config(db.url(), "t"), o);
  s.start();
  spool_readings(sp, 0, 10);
  REQUIRE(wait_until([&] { return s.stats().points_sent == 10; }, 20));
  db.stop();
  spool_readings(sp, 10, 20);
  REQUIRE(wait_until([&] { return s.stats().retries == 1; }, 20));
  REQUIRE(wait_until([&] { return s.stats().probes >= 2; }, 20));  // refused meanwhile
  REQUIRE_MESSAGE(db.start(&err), err);
  // the backoff alone would wait at least 30 s
  REQUIRE(wait_until([&] { return s.stats().points_sent == 20; }, 25));
  CHECK(s.stats().retries == 1);
  s.stop();
  CHECK(db.query_count("t", "SELECT count(power_net_w) FROM electricity") == 20);
}

TEST_CASE("real influxd: malformed line gives 400, the batch is dropped, others delivered") {
  InfluxHarness db;
  std::string err;
  REQUIRE_MESSAGE(db.start(&err), err);
  REQUIRE(db.create_db("t"));
  PointsFeed sp;
  spool_readings(sp, 0, 10);
  sp.add_line("electricity,meter=home broken", kBase);
  spool_readings(sp, 10, 29);
  Sender s(sp, v1_config(db.url(), "t"), fast_options(10));
  s.start();
  REQUIRE(wait_until([&] { return s.stats().points_sent + s.stats().dropped_bad_data == 30; }, 20));
  s.stop();
  auto st = s.stats();
  CHECK(st.points_sent == 20);
  CHECK(st.dropped_bad_data == 10);
  CHECK(st.batches_dropped_bad_data == 1);
  CHECK(st.last_http_status == 204);
  // InfluxDB 1.x writes the parseable points of a refused batch (partial write): 9 of the
  // dropped batch's 10 lines are stored anyway, the broken one is not.
  CHECK(db.query_count("t", "SELECT count(power_net_w) FROM electricity") == 29);
}

TEST_CASE("real influxd: unknown database is a config error and nothing is dropped") {
  InfluxHarness db;
  std::string err;
  REQUIRE_MESSAGE(db.start(&err), err);
  PointsFeed sp;
  spool_readings(sp, 0, 30);
  Sender s(sp, v1_config(db.url(), "late"), fast_options(10));
  s.start();
  REQUIRE(wait_until([&] { return s.stats().retries >= 2; }, 10));
  CHECK(s.stats().config_error);
  CHECK(s.stats().last_http_status == 404);
  CHECK(s.stats().points_sent == 0);
  REQUIRE(db.create_db("late"));
  REQUIRE(wait_until([&] { return s.stats().points_sent == 30; }, 10));
  s.stop();
  CHECK(s.stats().points_sent == 30);
  CHECK_FALSE(s.stats().config_error);
  CHECK(db.query_count("late", "SELECT count(power_net_w) FROM electricity") == 30);
}

// ---- scripted server ------------------------------------------------------------------------

TEST_CASE("v2 request: path, query, headers and body byte by byte") {
  ScriptedHttpServer srv;
  REQUIRE(srv.start());
  InfluxClient c(v2_config(srv.url()));
  REQUIRE(c.check() == "");
  std::string body = lines(0, 3);
  WriteResult r = c.write(body);
  CHECK(r.cls == WriteClass::ok);
  CHECK(r.http_status == 204);
  auto reqs = srv.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].method == "POST");
  CHECK(reqs[0].target == "/api/v2/write?org=o&bucket=b&precision=ns");
  CHECK(reqs[0].header("Authorization") == "Token t");
  CHECK(reqs[0].header("Content-Type") == "text/plain; charset=utf-8");
  CHECK(reqs[0].header("Content-Length") == std::to_string(body.size()));
  CHECK_FALSE(reqs[0].has_header("Expect"));
  CHECK_FALSE(reqs[0].has_header("Content-Encoding"));
  CHECK(reqs[0].body == body);
}

TEST_CASE("v1 request: db, rp, precision in the query; user/password as basic auth") {
  ScriptedHttpServer srv;
  REQUIRE(srv.start());
  InfluxConfig cfg = v1_config(srv.url() + "/", "my db");
  cfg.rp = "autogen";
  cfg.user = "u";
  cfg.password = "p@ss";
  cfg.precision = Precision::us;
  InfluxClient c(cfg);
  CHECK(c.write_url() == srv.url() + "/write?db=my%20db&rp=autogen&precision=u");
  CHECK(c.write_url().find("p@ss") == std::string::npos);
  CHECK(c.write("x f=1 1\n").cls == WriteClass::ok);
  auto reqs = srv.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].target == "/write?db=my%20db&rp=autogen&precision=u");
  CHECK(reqs[0].header("Authorization") == "Basic dTpwQHNz");  // base64("u:p@ss")
  CHECK(reqs[0].body == "x f=1 1\n");
}

TEST_CASE("gzip body decompresses to the exact lines") {
  ScriptedHttpServer srv;
  REQUIRE(srv.start());
  InfluxConfig cfg = v2_config(srv.url());
  cfg.gzip = true;
  InfluxClient c(cfg);
  std::string body = lines(0, 200);
  CHECK(c.write(body).cls == WriteClass::ok);
  auto reqs = srv.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].header("Content-Encoding") == "gzip");
  CHECK(reqs[0].body.size() < body.size() / 3);
  std::string out;
  REQUIRE(mp::test::gunzip(reqs[0].body, out));
  CHECK(out == body);
}

TEST_CASE("429 with Retry-After is honoured, then delivered once") {
  ScriptedHttpServer srv;
  REQUIRE(srv.start());
  srv.push({429, {{"Retry-After", "1"}}, R"({"code":"too many requests","message":"slow down"})"});
  PointsFeed sp;
  spool_readings(sp, 0, 10);
  Sender s(sp, v2_config(srv.url()), fast_options(10));
  auto t0 = Clock::now();
  s.start();
  REQUIRE(wait_until([&] { return s.stats().points_sent == 10; }, 10));
  double took = seconds_since(t0);
  s.stop();
  CHECK(took >= 1.0);  // backoff alone would have been 20 ms
  auto reqs = srv.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].body == lines(0, 10));
  CHECK(reqs[1].body == lines(0, 10));
  CHECK(s.stats().retries == 1);
  CHECK(s.stats().points_retried == 10);
}

TEST_CASE("413 (a proxy's body limit) halves the batch and drops nothing") {
  ScriptedHttpServer srv;
  REQUIRE(srv.start());
  srv.push({413, {}, "<html>413 Request Entity Too Large</html>"});
  srv.push({413, {}, "<html>413 Request Entity Too Large</html>"});
  PointsFeed sp;
  spool_readings(sp, 0, 10);
  Sender s(sp, v2_config(srv.url()), fast_options(10));
  s.start();
  REQUIRE(wait_until([&] { return s.stats().points_sent == 10; }, 10));
  s.stop();
  CHECK(s.stats().dropped_bad_data == 0);
  auto reqs = srv.requests();
  REQUIRE(reqs.size() >= 4);
  CHECK(reqs[0].body == lines(0, 10));  // 413
  CHECK(reqs[1].body == lines(0, 5));   // 413 again
  CHECK(reqs[2].body == lines(0, 2));   // accepted: from now on 2 points per batch
  std::string all;
  for (size_t i = 2; i < reqs.size(); ++i) all += reqs[i].body;
  CHECK(all == lines(0, 10));
}

TEST_CASE("503 is retried until accepted") {
  ScriptedHttpServer srv;
  REQUIRE(srv.start());
  srv.push({503, {}, "busy"});
  srv.push({503, {}, "busy"});
  PointsFeed sp;
  spool_readings(sp, 0, 10);
  Sender s(sp, v2_config(srv.url()), fast_options(10));
  s.start();
  REQUIRE(wait_until([&] { return s.stats().points_sent == 10; }, 10));
  s.stop();
  auto st = s.stats();
  CHECK(st.retries == 2);
  CHECK(st.dropped_bad_data == 0);
  CHECK(st.last_error == "HTTP 503: busy");
  CHECK(st.last_error_wall_ns > 0);
  auto reqs = srv.requests();
  REQUIRE(reqs.size() == 3);
  for (auto& q : reqs) CHECK(q.body == lines(0, 10));
}

TEST_CASE("400 drops only that batch; the others are delivered") {
  ScriptedHttpServer srv;
  REQUIRE(srv.start());
  int n = 0;
  srv.set_handler([&n](const HttpRequest&) {
    ScriptedResponse r;
    if (++n == 2) {
      r.status = 400;
      r.body = R"({"error":"unable to parse 'electricity,meter=home x': invalid field format"})";
    }
    return r;
  });
  PointsFeed sp;
  spool_readings(sp, 0, 30);
  Sender s(sp, v2_config(srv.url()), fast_options(10));
  s.start();
  REQUIRE(wait_until([&] { return s.stats().points_sent + s.stats().dropped_bad_data == 30; }, 10));
  s.stop();
  auto st = s.stats();
  CHECK(st.points_sent == 20);
  CHECK(st.dropped_bad_data == 10);
  CHECK(st.batches_dropped_bad_data == 1);
  CHECK(st.retries == 0);
  CHECK(st.last_error.find("HTTP 400: unable to parse") == 0);
  auto reqs = srv.requests();
  REQUIRE(reqs.size() == 3);
  CHECK(reqs[0].body == lines(0, 10));
  CHECK(reqs[1].body == lines(10, 20));
  CHECK(reqs[2].body == lines(20, 30));

  InfluxClient c(v2_config(srv.url()));
  n = 1;
  WriteResult r = c.write("a\nb\n");
  CHECK(r.cls == WriteClass::bad_data);
  CHECK(r.message == "unable to parse 'electricity,meter=home x': invalid field format");
  CHECK(r.first_bad_line == "electricity,meter=home x");
}

TEST_CASE("401 keeps the data until the server accepts it") {
  ScriptedHttpServer srv;
  REQUIRE(srv.start());
  for (int i = 0; i < 3; ++i) srv.push({401, {}, R"({"code":"unauthorized","message":"no"})"});
  PointsFeed sp;
  spool_readings(sp, 0, 10);
  Sender s(sp, v2_config(srv.url()), fast_options(10));
  s.start();
  REQUIRE(wait_until([&] { return s.stats().config_error; }, 5));
  CHECK(s.stats().last_error == "HTTP 401: no");
  REQUIRE(wait_until([&] { return s.stats().points_sent == 10; }, 10));
  s.stop();
  auto st = s.stats();
  CHECK(st.dropped_bad_data == 0);
  CHECK(st.retries == 3);
  CHECK_FALSE(st.config_error);
  auto reqs = srv.requests();
  REQUIRE(reqs.size() == 4);
  CHECK(reqs[3].body == lines(0, 10));
}

TEST_CASE("a server that never answers: timeout, data stays spooled, delivered later") {
  ScriptedHttpServer srv;
  REQUIRE(srv.start());
  std::atomic<bool> hang{true};
  srv.set_handler([&hang](const HttpRequest&) {
    ScriptedResponse r;
    r.hang = hang.load();
    return r;
  });
  PointsFeed sp;
  spool_readings(sp, 0, 10);
  InfluxConfig cfg = v2_config(srv.url());
  cfg.request_timeout_ms = 300;
  Sender s(sp, cfg, fast_options(10));
  auto t0 = Clock::now();
  s.start();
  REQUIRE(wait_until([&] { return s.stats().retries >= 2; }, 10));
  CHECK(seconds_since(t0) >= 0.6);
  auto st = s.stats();
  CHECK(st.points_sent == 0);
  CHECK(st.points_pending == 10);
  CHECK(st.last_error.find("imed out") != std::string::npos);
  hang = false;
  REQUIRE(wait_until([&] { return s.stats().points_sent == 10; }, 10));
  s.stop();
  CHECK(s.stats().points_pending == 0);
}

TEST_CASE("stop is prompt during a hanging request and during a backoff sleep") {
  SUBCASE("hanging request with the default 30 s timeout") {
    ScriptedHttpServer srv;
    REQUIRE(srv.start());
    srv.set_default({204, {}, "", true});
    PointsFeed sp;
    spool_readings(sp, 0, 10);
    InfluxConfig cfg = v2_config(srv.url());
    cfg.request_timeout_ms = 30000;
    Sender s(sp, cfg, fast_options(10));
    s.start();
    REQUIRE(wait_until([&] { return srv.request_count() == 1; }, 5));
    auto t0 = Clock::now();
    s.stop();
    CHECK(seconds_since(t0) < 1.5);
    CHECK(s.stats().points_pending == 10);
    CHECK(sp.saved() == Feed::Marks{mp::journal::Position{}});  // no cursor moved past them
  }
  SUBCASE("backoff of a minute") {
    ScriptedHttpServer srv;
    REQUIRE(srv.start());
    srv.set_default({503, {{"Retry-After", "60"}}, "down"});
    PointsFeed sp;
    spool_readings(sp, 0, 10);
    Sender s(sp, v2_config(srv.url()), fast_options(10));
    s.start();
    REQUIRE(wait_until([&] { return s.stats().retries == 1; }, 5));
    auto t0 = Clock::now();
    s.stop();
    CHECK(seconds_since(t0) < 0.5);
    CHECK(srv.request_count() == 1);
    CHECK(s.stats().points_pending == 10);
  }
}

TEST_CASE("batching: by age when few points, by size at once, a backlog drains at once") {
  ScriptedHttpServer srv;
  REQUIRE(srv.start());
  PointsFeed sp;
  UploaderOptions o = fast_options(10);
  // The age limit is what the timing checks are bounded by (not the machine's speed): long
  // enough that draining 25 points takes far less even under ASan on a loaded machine.
  o.batch_age_ms = 2000;
  Sender s(sp, v2_config(srv.url()), o);
  s.start();
  auto t0 = Clock::now();
  spool_readings(sp, 0, 5);
  s.notify();
  REQUIRE(wait_until([&] { return srv.request_count() == 1; }, 10));
  CHECK(seconds_since(t0) >= 1.95);  // waited for the age limit
  REQUIRE(wait_until([&] { return s.stats().points_sent == 5; }, 10));
  t0 = Clock::now();
  spool_readings(sp, 5, 30);
  s.notify();
  REQUIRE(wait_until([&] { return s.stats().points_sent == 30; }, 10));
  // two full batches, then the remainder of the backlog at once: not after the age limit
  CHECK(seconds_since(t0) < 1.9);
  s.stop();
  auto reqs = srv.requests();
  REQUIRE(reqs.size() == 4);
  CHECK(reqs[0].body == lines(0, 5));
  CHECK(reqs[1].body == lines(5, 15));
  CHECK(reqs[2].body == lines(15, 25));
  CHECK(reqs[3].body == lines(25, 30));
}
