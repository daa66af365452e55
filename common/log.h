// One line per event on stderr: "<worker>: <level>: <message>".
// Under the supervisor (MP_SUPERVISED=1) the worker name is left out: the supervisor adds
// it when it forwards the line. Under systemd (JOURNAL_STREAM set) a "<N>" syslog priority
// prefix lets journald keep the level. Never pass secrets to these functions.
#pragma once

#include <string>
#include <string_view>

namespace mp::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void init(std::string_view worker, Level min = Level::info);
void set_level(Level min);
Level level();
bool parse_level(std::string_view text, Level& out);
bool enabled(Level l);

void write(Level l, std::string_view message);

[[gnu::format(printf, 1, 2)]] void debug(const char* fmt, ...);
[[gnu::format(printf, 1, 2)]] void info(const char* fmt, ...);
[[gnu::format(printf, 1, 2)]] void warn(const char* fmt, ...);
[[gnu::format(printf, 1, 2)]] void error(const char* fmt, ...);

}  // namespace mp::log
