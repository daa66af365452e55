#include "serve/history_api.h"

#include "history/export.h"
#include "history/store.h"

namespace mp::serve::history_api {

namespace {

std::string g_db_file;
std::vector<config::Tariff> g_tariffs;

bool tail(const std::string& path, const std::string& prefix, std::string& rest) {
  if (path.rfind(prefix, 0) != 0 || path.size() == prefix.size()) return false;
  rest = path.substr(prefix.size());
  return rest.find('/') == std::string::npos;
}

Response answer(const std::string& meter, const std::map<std::string, std::string>& q, bool csv) {
  auto get = [&](const char* k, const std::string& def) {
    auto it = q.find(k);
    return it == q.end() ? def : it->second;
  };
  const std::string from = get("from", "");
  if (from.empty()) return json_error(400, "from is required (a date like 2026-11-01)");
  history::Resolution res;
  if (!history::parse_resolution(get("resolution", "day"), res))
    return json_error(
        400, "bad parameter",
        {{"parameter", "resolution"}, {"reason", "must be minute, hour, day or month"}});
  std::string err;
  auto store = history::Store::open(g_db_file, true, err);
  if (!store) return json_error(503, "history unavailable", {{"reason", err}});
  history::Table t;
  try {
    if (!history::query(*store, meter, from, get("to", from), res, g_tariffs, t, err))
      return json_error(err.rfind("no history", 0) == 0 ? 404 : 400, err);
  } catch (const history::DbError& e) {
    return json_error(503, "history unavailable", {{"reason", e.what()}});
  }
  Response r;
  if (csv) {
    r.content_type = "text/csv; charset=utf-8";
    r.body = history::to_csv(t);
    r.headers.emplace_back("Content-Disposition",
                           "attachment; filename=\"" + meter + "-" + from + ".csv\"");
  } else {
    r.body = history::to_json(t);
  }
  return r;
}

}  // namespace

void configure(const config::Config& cfg) {
  g_db_file = cfg.history.db_file;
  g_tariffs = cfg.tariffs;
}

bool handle(const Request& req, Response& out) {
  std::string meter;
  bool csv = false;
  if (tail(req.path, "/api/export/", meter)) {
    if (meter.size() < 5 || meter.compare(meter.size() - 4, 4, ".csv") != 0) return false;
    meter.resize(meter.size() - 4);
    csv = true;
  } else if (!tail(req.path, "/api/history/", meter) ||
             req.query.find("from=") == std::string::npos) {
    return false;
  }
  if (req.method != "GET" && req.method != "HEAD") {
    out = json_error(405, "method not allowed");
    return true;
  }
  const auto q = parse_query(req.query);
  if (!q) {
    out = json_error(400, "malformed query string");
    return true;
  }
  if (!q->count("from")) return false;
  out = answer(meter, *q, csv);
  return true;
}

}  // namespace mp::serve::history_api
