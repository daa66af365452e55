// `meterpipe export`: a meter's history (minutes, hours, days, months) from the history
// database as CSV or JSON (history/export.h), read-only while meterpipe runs.
#pragma once

#include <CLI/CLI.hpp>
#include <vector>

#include "protocols/protocol.h"

namespace mp::cli {

void add_history_commands(CLI::App& app, std::vector<protocols::CliCommand>& out);

}  // namespace mp::cli
