#include "cli/history_cmd.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <vector>

#include "config/config.h"
#include "history/export.h"
#include "history/import_lp.h"

namespace mp::cli {

namespace {

struct ExportArgs {
  std::string config = "/etc/meterpipe/meterpipe.toml";
  std::string meter, from, to, resolution = "day", db;
  bool csv = false, json = false;
};

// The config (errors printed) with TZ set to its time zone; nullopt on errors.
std::optional<config::Config> load_config(const std::string& file) {
  config::LoadOptions lo;
  lo.check_key_files = false;
  auto r = config::load_file(file, lo);
  if (!r.config) {
    for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
    return std::nullopt;
  }
  if (!r.config->general.timezone.empty()) setenv("TZ", r.config->general.timezone.c_str(), 1);
  return std::move(r.config);
}

int cmd_export(const ExportArgs& a) {
  const auto loaded = load_config(a.config);
  if (!loaded) return 2;
  const auto& cfg = *loaded;
  history::Resolution res;
  if (!history::parse_resolution(a.resolution, res)) {
    std::fprintf(stderr, "export: --resolution must be minute, hour, day or month\n");
    return 2;
  }
  const std::string db = a.db.empty() ? cfg.history.db_file : a.db;
  std::string err;
  auto store = history::Store::open(db, true, err);
  if (!store) {
    std::fprintf(stderr, "export: %s\n", err.c_str());
    return 1;
  }
  history::Table t;
  try {
    if (!history::query(*store, a.meter, a.from, a.to.empty() ? a.from : a.to, res, cfg.tariffs, t,
                        err)) {
      std::fprintf(stderr, "export: %s\n", err.c_str());
      return 2;
    }
  } catch (const history::DbError& e) {
    std::fprintf(stderr, "export: %s\n", e.what());
    return 1;
  }
  const std::string out = a.json ? history::to_json(t) + "\n" : history::to_csv(t);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

struct ImportArgs {
  std::string config = "/etc/meterpipe/meterpipe.toml";
  std::string db;
  std::vector<std::string> files;
};

int cmd_import(const ImportArgs& a) {
  const auto cfg = load_config(a.config);
  if (!cfg) return 2;
  const std::string db = a.db.empty() ? cfg->history.db_file : a.db;
  std::string err;
  auto store = history::Store::open(db, false, err);
  if (!store) {
    std::fprintf(stderr, "history import: %s\n", err.c_str());
    return 1;
  }
  int failed = 0;
  for (const auto& f : a.files) {
    history::ImportStats st;
    try {
      if (!history::import_lp_file(*store, f, st, err)) {
        std::fprintf(stderr, "history import: %s\n", err.c_str());
        ++failed;
        continue;
      }
    } catch (const history::DbError& e) {
      std::fprintf(stderr, "history import: %s: %s\n", f.c_str(), e.what());
      return 1;
    }
    std::printf("%s: %lld lines (%lld unreadable), %lld readings, %lld minutes, %lld days\n",
                f.c_str(), (long long)st.lines, (long long)st.bad_lines, (long long)st.readings,
                (long long)st.minutes, (long long)st.days);
  }
  return failed ? 1 : 0;
}

}  // namespace

void add_history_commands(CLI::App& app, std::vector<protocols::CliCommand>& out) {
  auto args = std::make_shared<ExportArgs>();
  auto* ex = app.add_subcommand(
      "export", "A meter's history (minute, hour, day or month rows) as CSV or JSON");
  ex->add_option("-c,--config", args->config, "Config file")->default_val(args->config);
  ex->add_option("--meter", args->meter, "Meter name")->required();
  ex->add_option("--from", args->from, "First local date, YYYY-MM-DD")->required();
  ex->add_option("--to", args->to, "Last local date, YYYY-MM-DD (included; default: --from)");
  ex->add_option("--resolution", args->resolution, "minute | hour | day | month")
      ->default_val("day");
  ex->add_option("--db", args->db, "History database (default: history.db_file of the config)");
  auto* csv = ex->add_flag("--csv", args->csv, "CSV with a header row (the default)");
  ex->add_flag("--json", args->json, "JSON")->excludes(csv);
  out.push_back(protocols::CliCommand{ex, [args] { return cmd_export(*args); }});

  auto iargs = std::make_shared<ImportArgs>();
  auto* hist = app.add_subcommand("history", "The history database");
  hist->require_subcommand(1);
  auto* imp = hist->add_subcommand(
      "import", "Load daily line-protocol files (.lp, .lp.gz of [upload] target = \"file\")");
  imp->add_option("-c,--config", iargs->config, "Config file")->default_val(iargs->config);
  imp->add_option("--db", iargs->db, "History database (default: history.db_file of the config)");
  imp->add_option("FILES", iargs->files, "Files to load")->required();
  out.push_back(protocols::CliCommand{imp, [iargs] { return cmd_import(*iargs); }});
}

}  // namespace mp::cli
