#include "config/history_config.h"

#include <algorithm>
#include <cstdio>

#include "config/checker.h"
#include "config/history_config_read.h"

namespace mp::config {

namespace {

// A TOML local date (valid_from = 2026-01-01) or the same as a string ("2026-01-01").
bool read_date(Checker::Scope& s, const std::string& k, std::string& out) {
  const toml::node* n = s.node(k);
  if (!n) {
    s.missing(k, " (the first day these prices apply, like 2026-01-01)");
    return false;
  }
  int y = 0, m = 0, d = 0;
  if (const auto* date = n->as_date()) {
    y = date->get().year;
    m = date->get().month;
    d = date->get().day;
  } else if (const auto* str = n->as_string()) {
    char tail = 0;
    if (std::sscanf(str->get().c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3) y = 0;
  } else {
    s.type_error(*n, k, "a date (like 2026-01-01)");
    return false;
  }
  if (y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1 || d > 31) {
    s.error_key(k, "not a date like 2026-01-01");
    return false;
  }
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", y, m, d);
  out = buf;
  return true;
}

void read_tariff(Checker& c, const toml::table& t, const std::string& path, Tariff& out) {
  auto s = c.scope(t, path);
  out.line = int(t.source().begin.line);
  read_date(s, "valid_from", out.valid_from);
  if (s.str("currency", out.currency) &&
      (out.currency.empty() || out.currency.size() > 8 ||
       out.currency.find_first_of(",\"\n\r") != std::string::npos))
    s.error_key("currency", "1..8 characters without commas or quotes (like \"EUR\")");
  constexpr double kMax = 1e6;
  s.number("import_t1_per_kwh", out.import_t1_per_kwh, -kMax, kMax);
  s.number("import_t2_per_kwh", out.import_t2_per_kwh, -kMax, kMax);
  s.number("export_t1_per_kwh", out.export_t1_per_kwh, -kMax, kMax);
  s.number("export_t2_per_kwh", out.export_t2_per_kwh, -kMax, kMax);
  s.number("gas_per_m3", out.gas_per_m3, -kMax, kMax);
  s.number("fixed_per_day", out.fixed_per_day, -kMax, kMax);
  s.number("capacity_per_kw_month", out.capacity_per_kw_month, 0, kMax);
  s.number("capacity_min_kw", out.capacity_min_kw, 0, kMax);
  s.finish();
}

}  // namespace

void read_history(const toml::table* t, const std::string& file, History& h,
                  std::vector<Error>& errors) {
  if (!t) return;
  Checker c(file, errors);
  auto s = c.scope(*t, "history");
  s.boolean("enabled", h.enabled);
  if (s.str("db_file", h.db_file) && h.db_file.empty()) s.error_key("db_file", "must not be empty");
  s.integer("keep_minutes_days", h.keep_minutes_days, 1, 100000);
  s.finish();
}

void read_tariffs(const toml::node* n, const std::string& file, std::vector<Tariff>& out,
                  std::vector<Error>& errors) {
  if (!n) return;
  Checker c(file, errors);
  const toml::array* a = n->as_array();
  if (!a || !a->is_array_of_tables()) {
    c.error_at(n->source(), "tariff", "must be an array of tables ([[tariff]])");
    return;
  }
  for (size_t i = 0; i < a->size(); ++i) {
    Tariff t;
    read_tariff(c, *a->get(i)->as_table(), "tariff[" + std::to_string(i) + "]", t);
    out.push_back(std::move(t));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Tariff& x, const Tariff& y) { return x.valid_from < y.valid_from; });
  for (size_t i = 1; i < out.size(); ++i)
    if (!out[i].valid_from.empty() && out[i].valid_from == out[i - 1].valid_from)
      errors.push_back(Error{file, out[i].line, 1, "tariff.valid_from",
                             "two [[tariff]] tables are valid from " + out[i].valid_from});
}

}  // namespace mp::config
