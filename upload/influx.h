// InfluxDB write client (libcurl, one reused easy handle) and the pure retry policy.
//
// Targets:
//   v1: POST <url>/write?db=<db>[&rp=<rp>]&precision=<p>   (user/password as HTTP basic auth)
//   v2: POST <url>/api/v2/write?org=<org>&bucket=<bucket>&precision=<p>
//       with "Authorization: Token <token>" (InfluxDB 2.x, Cloud, 3.x)
// Secrets (password, token) are given by the caller (read from a *_file or *_env) and are
// never logged nor put in error texts or URLs.
//
// Result classes:
//   ok            2xx
//   bad_data      400, 413 and 422: the batch will never be accepted; drop it
//   config_error  401, 403, 404, a server certificate that does not verify, an unreadable
//                 ca_file: keep the data, tell the user (once a minute)
//   retry         429, 5xx, other statuses, timeouts, connection errors
//   aborted       abort() was called during the request (shutdown)
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "upload/line_protocol.h"

namespace mp::upload {

struct InfluxConfig {
  enum class Api { v1, v2 };
  Api api = Api::v2;
  std::string url;  // base, e.g. "https://eu-central-1-1.aws.cloud2.influxdata.com"
  // v1
  std::string db;
  std::string rp;
  std::string user;
  std::string password;  // secret
  // v2
  std::string org;
  std::string bucket;
  std::string token;  // secret
  Precision precision = Precision::ns;
  bool verify_tls = true;
  std::string ca_file;  // empty = system CA store
  bool gzip = false;
  int gzip_level = 1;  // zlib level; 1 is fast and already shrinks line protocol ~10x
  long connect_timeout_ms = 5000;
  long request_timeout_ms = 30000;
  std::string user_agent = "meterpipe-upload";
};

enum class WriteClass { ok, bad_data, config_error, retry, aborted, too_large };
const char* write_class_name(WriteClass c);

struct WriteResult {
  WriteClass cls = WriteClass::retry;
  long http_status = 0;                   // 0 when no response
  std::string message;                    // server error text (at most 1 KiB) or curl error
  std::string first_bad_line;             // bad_data: the offending line when identifiable
  std::optional<int64_t> retry_after_ms;  // from a Retry-After header
};

// Maps an HTTP status to its class (no curl error).
WriteClass classify_status(long status);

// Retry-After: delay-seconds or an HTTP date (IMF-fixdate, RFC 850, asctime). Returns the
// delay in ms from `now_unix_s` (0 for a date in the past), nothing when unparsable.
std::optional<int64_t> parse_retry_after(std::string_view value, int64_t now_unix_s);

// Pulls the server's message out of an InfluxDB JSON error body ({"error":"..."} for 1.x,
// {"code":..,"message":"..."} for 2.x); the trimmed body itself otherwise; capped at 1 KiB.
std::string extract_error_message(std::string_view body);
// The first offending line: the text in "unable to parse '<line>': ..." when the message has
// it, else line N of `batch` when the message says "line N" (1-based), else "".
std::string find_bad_line(std::string_view message, std::string_view batch);

// Exponential backoff with jitter: base = initial * 2^(attempt) capped at `max`; the delay is
// drawn uniformly from [base/2, base] using `unit_random` in [0,1); a Retry-After (capped at
// 1 hour) is honoured as a lower bound. attempt 0 = first retry.
struct BackoffPolicy {
  int64_t initial_ms = 1000;
  int64_t max_ms = 300000;
  int64_t delay_ms(int attempt, std::optional<int64_t> retry_after_ms, double unit_random) const;
};

// gzip (RFC 1952) of `in`. False on a zlib failure.
bool gzip_compress(std::string_view in, std::string& out, int level = 1);

class InfluxClient {
 public:
  explicit InfluxClient(InfluxConfig cfg);
  ~InfluxClient();
  InfluxClient(const InfluxClient&) = delete;
  InfluxClient& operator=(const InfluxClient&) = delete;

  // Empty when the configuration can be used; otherwise what is wrong.
  std::string check() const;
  // The write URL (no secrets in it).
  const std::string& write_url() const { return url_; }

  // POSTs `body` (line protocol, lines ended by '\n'). Blocking; reuses the connection.
  WriteResult write(std::string_view body);

  // GET <url>/ping on a fresh connection (a cheap probe while writes back off): the HTTP
  // status, 0 when there was no answer within `timeout_ms` (or abort() was called).
  long ping(long timeout_ms = 2000);

  // Makes a running or next write() return `aborted` promptly (checked at least every
  // ~100 ms during the transfer). Thread safe. reset_abort() re-arms.
  void abort() { abort_ = true; }
  void reset_abort() { abort_ = false; }

 private:
  static int xferinfo(void* self, long long, long long, long long, long long);
  static size_t on_body(char* p, size_t size, size_t n, void* self);
  static size_t on_header(char* p, size_t size, size_t n, void* self);

  InfluxConfig cfg_;
  std::string url_;
  std::string ping_url_;
  void* curl_ = nullptr;          // CURL*
  void* headers_ = nullptr;       // curl_slist*
  void* headers_gzip_ = nullptr;  // curl_slist*
  std::atomic<bool> abort_{false};
  std::string resp_body_;
  std::string retry_after_;
  std::string gz_;
};

}  // namespace mp::upload
