#include "common/log.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace mp::log {
namespace {
std::string g_worker = "meterpipe";
Level g_min = Level::info;
bool g_supervised = false;
bool g_journal = false;
std::mutex g_mutex;

const char* name_of(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}
int syslog_prio(Level l) {
  switch (l) {
    case Level::debug: return 7;
    case Level::info: return 6;
    case Level::warn: return 4;
    case Level::error: return 3;
  }
  return 6;
}

void vwrite(Level l, const char* fmt, va_list ap) {
  if (!enabled(l)) return;
  char buf[1024];
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  if (n < 0) return;
  write(l, std::string_view(buf, static_cast<size_t>(n) < sizeof buf ? n : sizeof buf - 1));
}
}  // namespace

void init(std::string_view worker, Level min) {
  g_worker = std::string(worker);
  g_min = min;
  const char* s = std::getenv("MP_SUPERVISED");
  g_supervised = s && *s == '1';
  g_journal = !g_supervised && std::getenv("JOURNAL_STREAM") != nullptr;
  if (const char* lv = std::getenv("MP_LOG_LEVEL")) parse_level(lv, g_min);
}

void set_level(Level min) { g_min = min; }
Level level() { return g_min; }
bool enabled(Level l) { return static_cast<int>(l) >= static_cast<int>(g_min); }

bool parse_level(std::string_view t, Level& out) {
  if (t == "debug") out = Level::debug;
  else if (t == "info") out = Level::info;
  else if (t == "warn" || t == "warning") out = Level::warn;
  else if (t == "error") out = Level::error;
  else return false;
  return true;
}

void write(Level l, std::string_view message) {
  if (!enabled(l)) return;
  std::string line;
  line.reserve(message.size() + 48);
  if (g_journal) {
    line += '<';
    line += static_cast<char>('0' + syslog_prio(l));
    line += '>';
  }
  if (!g_supervised) {
    line += g_worker;
    line += ": ";
  }
  line += name_of(l);
  line += ": ";
  // one event, one line: fold any newline in the message
  for (char c : message) line += (c == '\n' || c == '\r') ? ' ' : c;
  line += '\n';
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

#define MP_LOG_FN(NAME, LEVEL)        \
  void NAME(const char* fmt, ...) {   \
    if (!enabled(LEVEL)) return;      \
    va_list ap;                       \
    va_start(ap, fmt);                \
    vwrite(LEVEL, fmt, ap);           \
    va_end(ap);                       \
  }
MP_LOG_FN(debug, Level::debug)
MP_LOG_FN(info, Level::info)
MP_LOG_FN(warn, Level::warn)
MP_LOG_FN(error, Level::error)
#undef MP_LOG_FN

}  // namespace mp::log
