// The history database in serve (read-only, history/export.h): answered on civetweb's request
// threads without the live state's lock, so a long query never holds up the bus loop.
//
//   GET /api/history/{meter}?from=DATE[&to=DATE][&resolution=minute|hour|day|month]
//       rows of the history database as JSON (with `from`; without it the in-memory route of
//       serve/api.h answers, the live seconds and minutes)
//   GET /api/export/{meter}.csv?from=DATE[&to=DATE][&resolution=...]
//       the same rows as CSV (the columns of `meterpipe export`)
// DATE is a local date YYYY-MM-DD (`to` included, default `from`); resolution default day.
// Errors: JSON {"error": ...}: 400 for a bad parameter, 404 for a meter without history,
// 503 when the database cannot be opened (its message says why).
#pragma once

#include "config/config.h"
#include "serve/api.h"

namespace mp::serve::history_api {

// Once, before the HTTP threads start: the database file and the tariffs of the config.
void configure(const config::Config& cfg);
// True when `req` is one of the routes above (`out` is then its answer).
bool handle(const Request& req, Response& out);

}  // namespace mp::serve::history_api
