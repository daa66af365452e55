// Persisted state of the rules engine (Engine::export_state / import_state), so that a
// restart neither flaps a relay nor resets min-on/min-off, switch budgets, overrides and
// running timers. A small line-based text file:
//
//   meterpipe-actuate-state 1
//   relay boiler on=1 last_switch=1717405260000000000 switches=1717405260000000000
//         override=auto override_expires=0 below_since=- above_since=- shed_quarter=-
//   meter main last_data=1717405299000000000
//   saved 1717405300000000000 clean=1
//
// (one line per relay/meter; names are percent-encoded; times are ns since the epoch;
// "-" = none; unknown keys are ignored so that newer files load in older versions).
#pragma once

#include <string>
#include <string_view>

#include "actuate/rules.h"

namespace mp::actuate {

std::string serialize_state(const EngineState& s);
// False with a reason ("line 3: bad value for on: x") when the text is not a state file.
bool parse_state(std::string_view text, EngineState& out, std::string& error);

// Writes atomically: `path`.tmp, fsync, rename over `path`, fsync of the directory. A crash
// leaves either the old or the new file, never a partial one.
bool save_state(const std::string& path, const EngineState& s, std::string& error);

enum class LoadResult { ok, missing, error };
// missing: no file (first start). error: unreadable or corrupt (error says why; the caller
// should log it and start without state, i.e. with fail-safe states).
LoadResult load_state(const std::string& path, EngineState& out, std::string& error);

}  // namespace mp::actuate
