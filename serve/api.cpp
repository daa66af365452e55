#include "serve/api.h"

#include "common/json.h"

namespace mp::serve {
namespace {

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Response ok_json(std::string body) {
  Response r;
  r.body = std::move(body);
  return r;
}

Response bad_param(const std::string& name, const std::string& why) {
  return json_error(400, "bad parameter " + name + ": " + why, {{"parameter", name}});
}

// "/api/last/home" with prefix "/api/last/" -> "home"; false when the rest is empty or has '/'
bool tail_of(const std::string& path, std::string_view prefix, std::string& rest) {
  if (path.compare(0, prefix.size(), prefix) != 0) return false;
  rest = path.substr(prefix.size());
  return !rest.empty() && rest.find('/') == std::string::npos;
}

const MeterState* find_meter(const ApiContext& ctx, const std::string& name, Response& err) {
  const MeterState* m = ctx.state.meter(name);
  if (!m) {
    err = json_error(404, "unknown meter", {{"meter", name}});
    return nullptr;
  }
  return m;
}

}  // namespace

bool url_decode(std::string_view in, std::string& out, bool plus) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int h = hex(in[i + 1]), l = hex(in[i + 2]);
      if (h < 0 || l < 0) return false;
      c = char(h * 16 + l);
      i += 2;
    } else if (c == '+' && plus) {
      c = ' ';
    }
    if (c == '\0') return false;
    out += c;
  }
  return true;
}

std::optional<std::map<std::string, std::string>> parse_query(std::string_view q) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos <= q.size()) {
    size_t amp = q.find('&', pos);
    if (amp == std::string_view::npos) amp = q.size();
    std::string_view part = q.substr(pos, amp - pos);
    pos = amp + 1;
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    std::string k, v;
    if (!url_decode(part.substr(0, eq), k, true)) return std::nullopt;
    if (eq != std::string_view::npos && !url_decode(part.substr(eq + 1), v, true))
      return std::nullopt;
    out.emplace(std::move(k), std::move(v));
  }
  return out;
}

bool parse_int(std::string_view s, long lo, long hi, long& out) {
  if (s.empty() || s.size() > 12) return false;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < lo || v > hi) return false;
  out = v;
  return true;
}

Response json_error(int status, const std::string& message,
                    const std::vector<std::pair<std::string, std::string>>& extra) {
  Response r;
  r.status = status;
  r.body = "{\"error\":" + json::quote(message) + ",\"status\":" + std::to_string(status);
  for (const auto& [k, v] : extra) r.body += "," + json::quote(k) + ":" + json::quote(v);
  r.body += "}";
  return r;
}

Response handle(const Request& req, const ApiContext& ctx) {
  if (req.method != "GET" && req.method != "HEAD") {
    Response r = json_error(405, "method not allowed", {{"method", req.method}});
    r.headers.push_back({"Allow", "GET, HEAD"});
    return r;
  }
  const std::string& path = req.path;
  if (path.empty() || path[0] != '/') return json_error(400, "bad path");
  if (ctx.assets) {
    for (const auto& a : *ctx.assets) {
      if (path == a.path || (a.path == "/" && path == "/index.html")) {
        Response r;
        r.content_type = std::string(a.content_type);
        r.body = std::string(a.data);
        r.headers.push_back({"Cache-Control", "no-cache"});
        return r;
      }
    }
  }
  if (path == "/ws") {
    Response r = json_error(426, "WebSocket upgrade required");
    r.headers.push_back({"Upgrade", "websocket"});
    return r;
  }
  if (path == "/metrics") {
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = ctx.state.metrics_text(ctx.self, ctx.now_wall_ns, ctx.now_mono_ns);
    return r;
  }
  if (path.compare(0, 5, "/api/") != 0 && path != "/api")
    return json_error(404, "not found", {{"path", path}});

  auto query = parse_query(req.query);
  if (!query) return json_error(400, "malformed query string", {{"parameter", "query"}});
  std::string name;
  Response err;
  if (path == "/api/last") return ok_json(ctx.state.all_last_json());
  if (tail_of(path, "/api/last/", name)) {
    const MeterState* m = find_meter(ctx, name, err);
    if (!m) return err;
    if (!m->have) return json_error(404, "no reading yet", {{"meter", name}});
    return ok_json(ctx.state.last_json(*m));
  }
  if (tail_of(path, "/api/minuteavg/", name)) {
    const MeterState* m = find_meter(ctx, name, err);
    if (!m) return err;
    return ok_json(ctx.state.minuteavg_json(*m, ctx.now_wall_ns));
  }
  if (tail_of(path, "/api/history/", name)) {
    const MeterState* m = find_meter(ctx, name, err);
    if (!m) return err;
    long minutes = 60, resolution = 0;
    if (auto it = query->find("minutes"); it != query->end()) {
      if (!parse_int(it->second, 1, long(SeriesHistory::kMinutes), minutes))
        return bad_param("minutes", "must be a whole number from 1 to 1440");
    }
    if (auto it = query->find("resolution"); it != query->end()) {
      if (it->second == "1" || it->second == "second" || it->second == "s")
        resolution = 1;
      else if (it->second == "60" || it->second == "minute" || it->second == "m")
        resolution = 60;
      else
        return bad_param("resolution", "must be 1 (seconds) or 60 (minute averages)");
    }
    if (resolution == 0) resolution = minutes <= 60 ? 1 : 60;
    if (resolution == 1 && minutes > 60)
      return bad_param("minutes", "at 1-second resolution at most 60 (the last hour)");
    std::string series = "power_net_w";
    if (auto it = query->find("series"); it != query->end()) {
      bool known = false;
      for (const auto& s : history_series()) known |= s == it->second;
      if (!known) {
        std::string list;
        for (const auto& s : history_series()) list += (list.empty() ? "" : ", ") + s;
        return bad_param("series", "must be one of " + list);
      }
      series = it->second;
    }
    return ok_json(
        ctx.state.history_json(*m, series, int(minutes), int(resolution), ctx.now_wall_ns));
  }
  if (path == "/api/relays") return ok_json(ctx.state.relays_json());
  if (path == "/api/status")
    return ok_json(ctx.state.status_json(ctx.self, ctx.now_wall_ns, ctx.now_mono_ns));
  return json_error(404, "not found", {{"path", path}});
}

}  // namespace mp::serve
