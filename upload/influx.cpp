#include "upload/influx.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>
#include <vector>

#include "common/civil.h"
#include "common/lazy_curl.h"
#include "common/log.h"

namespace mp::upload {
namespace {

constexpr size_t kMaxMessage = 1024;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

int64_t to_int(std::string_view s) {
  int64_t v = 0;
  for (char c : s) {
    if (v > 100000000000LL) return v;  // saturate; callers bound it
    v = v * 10 + (c - '0');
  }
  return v;
}

// Extracts a JSON string value of `key` (first occurrence), unescaping the common escapes.
bool json_string_field(std::string_view body, std::string_view key, std::string& out) {
  std::string pat = "\"" + std::string(key) + "\"";
  size_t p = body.find(pat);
  if (p == std::string_view::npos) return false;
  p += pat.size();
  while (p < body.size() && (body[p] == ' ' || body[p] == ':' || body[p] == '\t')) ++p;
  if (p >= body.size() || body[p] != '"') return false;
  ++p;
  out.clear();
  while (p < body.size() && body[p] != '"') {
    char c = body[p];
    if (c == '\\' && p + 1 < body.size()) {
      char e = body[++p];
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'u':
          // Keep \uXXXX as is; messages are for humans.
          out += "\\u";
          break;
        default:
          out += e;
      }
    } else {
      out += c;
    }
    ++p;
  }
  return true;
}

// libcurl, loaded by the first client (common/lazy_curl.h); nullptr when it cannot be
const Curl* lib() {
  static const Curl* const k = [] {
    std::string error;
    const Curl* c = curl(error);
    if (!c) log::error("influx: %s", error.c_str());
    return c;
  }();
  return k;
}

}  // namespace

const char* write_class_name(WriteClass c) {
  switch (c) {
    case WriteClass::ok:
      return "ok";
    case WriteClass::bad_data:
      return "bad_data";
    case WriteClass::too_large:
      return "too_large";
    case WriteClass::config_error:
      return "config_error";
    case WriteClass::retry:
      return "retry";
    case WriteClass::aborted:
      return "aborted";
  }
  return "retry";
}

WriteClass classify_status(long status) {
  if (status >= 200 && status < 300) return WriteClass::ok;
  if (status == 413) return WriteClass::too_large;  // a proxy's body limit: send less, drop nothing
  if (status == 400 || status == 422) return WriteClass::bad_data;
  if (status == 401 || status == 403 || status == 404) return WriteClass::config_error;
  return WriteClass::retry;
}

std::optional<int64_t> parse_retry_after(std::string_view value, int64_t now_unix_s) {
  std::string_view v = trim(value);
  if (v.empty()) return std::nullopt;
  if (all_digits(v)) {
    int64_t s = std::min<int64_t>(to_int(v), 100000000);
    return s * 1000;
  }
  static const char* months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                 "jul", "aug", "sep", "oct", "nov", "dec"};
  int month = 0, day = -1, hh = -1, mm = -1, ss = -1;
  int64_t year = -1;
  bool two_digit_year = false;
  size_t i = 0;
  while (i < v.size()) {
    size_t j = i;
    while (j < v.size() && v[j] != ' ' && v[j] != ',' && v[j] != '-') ++j;
    std::string_view tok = v.substr(i, j - i);
    i = j + 1;
    if (tok.empty()) continue;
    if (tok.find(':') != std::string_view::npos) {
      if (tok.size() != 8 || tok[2] != ':' || tok[5] != ':' || !all_digits(tok.substr(0, 2)) ||
          !all_digits(tok.substr(3, 2)) || !all_digits(tok.substr(6, 2)))
        return std::nullopt;
      hh = static_cast<int>(to_int(tok.substr(0, 2)));
      mm = static_cast<int>(to_int(tok.substr(3, 2)));
      ss = static_cast<int>(to_int(tok.substr(6, 2)));
    } else if (all_digits(tok)) {
      if (tok.size() == 4) {
        year = to_int(tok);
      } else if (tok.size() <= 2 && day < 0) {
        day = static_cast<int>(to_int(tok));
      } else if (tok.size() == 2) {
        year = to_int(tok);
        two_digit_year = true;
      } else {
        return std::nullopt;
      }
    } else if (tok.size() == 3) {
      for (int k = 0; k < 12; ++k)
        if (iequals(tok, months[k])) month = k + 1;
    }
    // Weekday names and "GMT" are ignored.
  }
  if (two_digit_year) year += year >= 70 ? 1900 : 2000;
  if (month == 0 || day < 1 || day > 31 || year < 1970 || year > 9999 || hh < 0 || hh > 23 ||
      mm > 59 || ss > 60)
    return std::nullopt;
  int64_t t =
      days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 +
      hh * 3600 + mm * 60 + ss;
  return std::max<int64_t>(0, t - now_unix_s) * 1000;
}

std::string extract_error_message(std::string_view body) {
  std::string msg;
  if (!json_string_field(body, "error", msg) && !json_string_field(body, "message", msg))
    msg = std::string(trim(body));
  if (msg.size() > kMaxMessage) msg.resize(kMaxMessage);
  return msg;
}

std::string find_bad_line(std::string_view message, std::string_view batch) {
  constexpr std::string_view kParse = "unable to parse '";
  size_t p = message.find(kParse);
  if (p != std::string_view::npos) {
    p += kParse.size();
    size_t e = message.find("': ", p);
    if (e == std::string_view::npos) e = message.rfind('\'');
    if (e != std::string_view::npos && e >= p) return std::string(message.substr(p, e - p));
  }
  // "... line 3 ..." (1-based), as InfluxDB 2.x reports partial writes.
  for (size_t l = message.find("line "); l != std::string_view::npos;
       l = message.find("line ", l + 1)) {
    size_t q = l + 5;
    size_t e = q;
    while (e < message.size() && std::isdigit(static_cast<unsigned char>(message[e]))) ++e;
    if (e == q || e - q >= 9) continue;
    int64_t n = to_int(message.substr(q, e - q));
    size_t start = 0;
    for (int64_t k = 1; k < n && start != std::string_view::npos; ++k) {
      start = batch.find('\n', start);
      if (start != std::string_view::npos) ++start;
    }
    if (n >= 1 && start != std::string_view::npos && start < batch.size()) {
      size_t end = batch.find('\n', start);
      return std::string(batch.substr(start, end == std::string_view::npos ? end : end - start));
    }
    break;
  }
  return {};
}

int64_t BackoffPolicy::delay_ms(int attempt, std::optional<int64_t> retry_after_ms,
                                double unit_random) const {
  int64_t base = std::max<int64_t>(initial_ms, 1);
  for (int i = 0; i < attempt && base < max_ms; ++i) base *= 2;
  base = std::min(base, max_ms);
  double r = std::clamp(unit_random, 0.0, 1.0);
  int64_t d = base / 2 + static_cast<int64_t>(r * static_cast<double>(base - base / 2));
  d = std::min(d, base);
  if (retry_after_ms) d = std::max(d, std::min<int64_t>(*retry_after_ms, 3600000));
  return d;
}

bool gzip_compress(std::string_view in, std::string& out, int level) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  out.resize(deflateBound(&zs, static_cast<uLong>(in.size())) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return rc == Z_STREAM_END;
}

InfluxClient::InfluxClient(InfluxConfig cfg) : cfg_(std::move(cfg)) {
  CURL* c = lib() ? lib()->easy_init() : nullptr;
  curl_ = c;
  std::string base = cfg_.url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  auto esc = [c](const std::string& s) {
    if (!c) return s;
    char* e = lib()->easy_escape(c, s.c_str(), static_cast<int>(s.size()));
    std::string r = e ? e : "";
    lib()->free(e);
    return r;
  };
  ping_url_ = base + "/ping";
  if (cfg_.api == InfluxConfig::Api::v1) {
    url_ = base + "/write?db=" + esc(cfg_.db);
    if (!cfg_.rp.empty()) url_ += "&rp=" + esc(cfg_.rp);
    // InfluxDB 1.x spells microseconds "u".
    url_ += "&precision=";
    url_ += cfg_.precision == Precision::us ? "u" : precision_name(cfg_.precision);
  } else {
    url_ = base + "/api/v2/write?org=" + esc(cfg_.org) + "&bucket=" + esc(cfg_.bucket) +
           "&precision=" + precision_name(cfg_.precision);
  }
  if (!c) return;

  curl_slist* h = nullptr;
  h = lib()->slist_append(h, "Content-Type: text/plain; charset=utf-8");
  h = lib()->slist_append(h, "Expect:");  // no 100-continue round trip for large batches
  if (cfg_.api == InfluxConfig::Api::v2 && !cfg_.token.empty())
    h = lib()->slist_append(h, ("Authorization: Token " + cfg_.token).c_str());
  curl_slist* hg = nullptr;
  for (curl_slist* p = h; p; p = p->next) hg = lib()->slist_append(hg, p->data);
  hg = lib()->slist_append(hg, "Content-Encoding: gzip");
  headers_ = h;
  headers_gzip_ = hg;

  lib()->easy_setopt(c, CURLOPT_URL, url_.c_str());
  lib()->easy_setopt(c, CURLOPT_POST, 1L);
  lib()->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  lib()->easy_setopt(c, CURLOPT_USERAGENT, cfg_.user_agent.c_str());
  lib()->easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, cfg_.connect_timeout_ms);
  lib()->easy_setopt(c, CURLOPT_TIMEOUT_MS, cfg_.request_timeout_ms);
  lib()->easy_setopt(c, CURLOPT_SSL_VERIFYPEER, cfg_.verify_tls ? 1L : 0L);
  lib()->easy_setopt(c, CURLOPT_SSL_VERIFYHOST, cfg_.verify_tls ? 2L : 0L);
  if (!cfg_.ca_file.empty()) lib()->easy_setopt(c, CURLOPT_CAINFO, cfg_.ca_file.c_str());
  if (cfg_.api == InfluxConfig::Api::v1 && !cfg_.user.empty()) {
    lib()->easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    lib()->easy_setopt(c, CURLOPT_USERNAME, cfg_.user.c_str());
    lib()->easy_setopt(c, CURLOPT_PASSWORD, cfg_.password.c_str());
  }
  lib()->easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  lib()->easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  lib()->easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  lib()->easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  lib()->easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &InfluxClient::xferinfo);
  lib()->easy_setopt(c, CURLOPT_XFERINFODATA, this);
  lib()->easy_setopt(c, CURLOPT_WRITEFUNCTION, &InfluxClient::on_body);
  lib()->easy_setopt(c, CURLOPT_WRITEDATA, this);
  lib()->easy_setopt(c, CURLOPT_HEADERFUNCTION, &InfluxClient::on_header);
  lib()->easy_setopt(c, CURLOPT_HEADERDATA, this);
}

InfluxClient::~InfluxClient() {
  if (lib()) {  // loaded already when there is anything to free
    if (curl_) lib()->easy_cleanup(static_cast<CURL*>(curl_));
    lib()->slist_free_all(static_cast<curl_slist*>(headers_));
    lib()->slist_free_all(static_cast<curl_slist*>(headers_gzip_));
  }
  // Scrub the secrets from memory we own.
  std::fill(cfg_.token.begin(), cfg_.token.end(), '\0');
  std::fill(cfg_.password.begin(), cfg_.password.end(), '\0');
}

std::string InfluxClient::check() const {
  if (!curl_) return "cannot initialise libcurl";
  if (cfg_.url.rfind("http://", 0) != 0 && cfg_.url.rfind("https://", 0) != 0)
    return "url must start with http:// or https://";
  if (cfg_.api == InfluxConfig::Api::v1 && cfg_.db.empty()) return "InfluxDB 1.x needs a db";
  if (cfg_.api == InfluxConfig::Api::v2 && (cfg_.org.empty() || cfg_.bucket.empty()))
    return "InfluxDB 2.x/3 needs an org and a bucket";
  if (cfg_.token.find_first_of("\r\n") != std::string::npos) return "token contains a newline";
  return {};
}

int InfluxClient::xferinfo(void* self, long long, long long, long long, long long) {
  return static_cast<InfluxClient*>(self)->abort_.load() ? 1 : 0;
}

size_t InfluxClient::on_body(char* p, size_t size, size_t n, void* self) {
  auto* me = static_cast<InfluxClient*>(self);
  size_t len = size * n;
  size_t room = me->resp_body_.size() < 64 * 1024 ? 64 * 1024 - me->resp_body_.size() : 0;
  me->resp_body_.append(p, std::min(len, room));
  return len;
}

size_t InfluxClient::on_header(char* p, size_t size, size_t n, void* self) {
  auto* me = static_cast<InfluxClient*>(self);
  size_t len = size * n;
  std::string_view h(p, len);
  if (h.rfind("HTTP/", 0) == 0) me->retry_after_.clear();  // a new response (e.g. after 100)
  size_t colon = h.find(':');
  if (colon != std::string_view::npos && iequals(h.substr(0, colon), "retry-after"))
    me->retry_after_ = std::string(trim(h.substr(colon + 1)));
  return len;
}

long InfluxClient::ping(long timeout_ms) {
  if (abort_ || !lib()) return 0;
  CURL* c = lib()->easy_init();
  if (!c) return 0;
  lib()->easy_setopt(c, CURLOPT_URL, ping_url_.c_str());
  lib()->easy_setopt(c, CURLOPT_HTTPGET, 1L);
  lib()->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  lib()->easy_setopt(c, CURLOPT_USERAGENT, cfg_.user_agent.c_str());
  lib()->easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  lib()->easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  lib()->easy_setopt(c, CURLOPT_SSL_VERIFYPEER, cfg_.verify_tls ? 1L : 0L);
  lib()->easy_setopt(c, CURLOPT_SSL_VERIFYHOST, cfg_.verify_tls ? 2L : 0L);
  if (!cfg_.ca_file.empty()) lib()->easy_setopt(c, CURLOPT_CAINFO, cfg_.ca_file.c_str());
  lib()->easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  lib()->easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  lib()->easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &InfluxClient::xferinfo);
  lib()->easy_setopt(c, CURLOPT_XFERINFODATA, this);
  lib()->easy_setopt(
      c, CURLOPT_WRITEFUNCTION,
      +[](char*, size_t size, size_t n, void*) -> size_t { return size * n; });
  long status = 0;
  if (lib()->easy_perform(c) == CURLE_OK) lib()->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  lib()->easy_cleanup(c);
  return status;
}

WriteResult InfluxClient::write(std::string_view body) {
  WriteResult res;
  CURL* c = static_cast<CURL*>(curl_);
  if (!c) {
    res.message = "libcurl not initialised";
    return res;
  }
  if (abort_) {
    res.cls = WriteClass::aborted;
    res.message = "aborted";
    return res;
  }
  resp_body_.clear();
  retry_after_.clear();
  std::string_view payload = body;
  bool gz = cfg_.gzip && gzip_compress(body, gz_, cfg_.gzip_level);
  if (gz) payload = gz_;
  lib()->easy_setopt(c, CURLOPT_HTTPHEADER,
                     static_cast<curl_slist*>(gz ? headers_gzip_ : headers_));
  lib()->easy_setopt(c, CURLOPT_POSTFIELDS, payload.data());
  lib()->easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload.size()));
  char errbuf[CURL_ERROR_SIZE] = {0};
  lib()->easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode rc = lib()->easy_perform(c);
  lib()->easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
  if (rc != CURLE_OK) {
    res.cls = rc == CURLE_ABORTED_BY_CALLBACK ? WriteClass::aborted : WriteClass::retry;
    res.message = errbuf[0] ? errbuf : lib()->easy_strerror(rc);
    // A certificate that does not verify will not verify on the next try either: a
    // configuration error (data kept, told once a minute), with what to change.
    if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
        rc == CURLE_SSL_ISSUER_ERROR || rc == CURLE_SSL_CRL_BADFILE) {
      res.cls = WriteClass::config_error;
      res.message += rc == CURLE_SSL_CACERT_BADFILE
                         ? " (upload.ca_file must be a readable PEM file of the CA)"
                         : " (TLS: set upload.ca_file to the CA that signed the server's "
                           "certificate, or use the host name the certificate is for in "
                           "upload.url)";
    }
    return res;
  }
  long status = 0;
  lib()->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  res.http_status = status;
  res.cls = classify_status(status);
  if (res.cls != WriteClass::ok) {
    res.message = extract_error_message(resp_body_);
    if (res.message.empty()) res.message = "HTTP " + std::to_string(status);
    if (res.cls == WriteClass::bad_data) res.first_bad_line = find_bad_line(res.message, body);
    if (!retry_after_.empty())
      res.retry_after_ms = parse_retry_after(retry_after_, static_cast<int64_t>(time(nullptr)));
  }
  return res;
}

}  // namespace mp::upload
