// HTTP routing of the serve worker (pure): request in, response out. The civetweb wiring
// (serve/worker_http.cpp) only copies the request in and the response out.
//
//   GET /                          the live page (and its assets under /static/)
//   GET /api/last                  latest reading of every meter
//   GET /api/last/{meter}          latest reading of one meter
//   GET /api/minuteavg/{meter}     average of every numeric value over the last 60 s
//   GET /api/history/{meter}?minutes=N[&series=power_net_w][&resolution=1|60]
//   GET /api/relays                relay states and the reason of their last switch
//   GET /api/status                uptime, worker health, per-meter counters and rates
//   GET /metrics                   Prometheus text exposition
//   /ws                            WebSocket (handled by civetweb; a plain GET gets 426)
// Errors are JSON {"error": "...", ...}: unknown meter 404, bad parameter 400 naming it,
// unknown path 404, other methods 405.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "serve/state.h"

namespace mp::serve {

struct Asset {
  std::string_view path;  // "/static/app.js"; "/" is the page
  std::string_view content_type;
  std::string_view data;
};

struct Request {
  std::string method;  // "GET", "HEAD", ...
  std::string path;    // URL-decoded path without the query
  std::string query;   // raw query string (still %-encoded), "" when none
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

struct ApiContext {
  const State& state;
  const ServeInfo& self;
  int64_t now_wall_ns = 0;
  int64_t now_mono_ns = 0;
  const std::vector<Asset>* assets = nullptr;
};

// Decodes %XX (and '+' as space when `plus` is set); false on a malformed escape or a NUL.
bool url_decode(std::string_view in, std::string& out, bool plus);
// "a=1&b=x%20y" -> {{"a","1"},{"b","x y"}}; the first of repeated keys wins.
// nullopt on malformed encoding.
std::optional<std::map<std::string, std::string>> parse_query(std::string_view q);
// Strict decimal integer in [lo, hi]; false otherwise (no sign games, no trailing junk).
bool parse_int(std::string_view s, long lo, long hi, long& out);

Response handle(const Request& req, const ApiContext& ctx);

Response json_error(int status, const std::string& message,
                    const std::vector<std::pair<std::string, std::string>>& extra = {});

}  // namespace mp::serve
