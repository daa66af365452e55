// libFuzzer target: `meterpipe history import` on arbitrary bytes (history/import_lp.h). Each
// line through the line-protocol parser, the whole text into a fresh in-memory history
// database (readings -> minutes -> days), then the database read back as `meterpipe export`
// and serve's /api/history do, with dates taken from the input (untrusted query strings).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>

#include "history/export.h"
#include "history/import_lp.h"
#include "history/store.h"

namespace {

constexpr int64_t kMaxSpanNs = 40LL * 86400 * 1'000'000'000;

// A "from"/"to" date for the query: the first line when it is short, else a fixed day.
std::string date_from(std::string_view text) {
  const size_t nl = text.find('\n');
  if (nl != std::string_view::npos && nl <= 12) return std::string(text.substr(0, nl));
  return "2026-11-20";
}

void read_back(mp::history::Store& s, const std::string& from) {
  std::string err;
  for (const auto& meter : s.meter_names())
    for (auto res : {mp::history::Resolution::minute, mp::history::Resolution::hour,
                     mp::history::Resolution::day, mp::history::Resolution::month}) {
      mp::history::Table t;
      if (!mp::history::query(s, meter, from, from, res, {}, t, err)) continue;
      mp::history::to_csv(t);
      mp::history::to_json(t);
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("TZ", "Europe/Amsterdam", 1);  // local days with DST, as in the product
  tzset();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    mp::history::LpPoint p;
    if (mp::history::parse_lp_line(text.substr(pos, end - pos), p)) {
      if (p.time_ns < 946'684'800'000'000'000LL || p.time_ns >= 4'102'444'800'000'000'000LL)
        std::abort();  // parse_lp_line takes 2000..2100 only
      lo = std::min(lo, p.time_ns);
      hi = std::max(hi, p.time_ns);
    }
    pos = end + 1;
  }
  // every day between the first and the last reading is written (an outage is split over
  // them): inputs spanning months take seconds each, which fuzzing cannot afford
  if (hi > lo && hi - lo > kMaxSpanNs) return 0;
  std::string err;
  auto s = mp::history::Store::open(":memory:", false, err);
  if (!s) std::abort();  // an in-memory database always opens
  mp::history::ImportStats st;
  mp::history::import_lp_text(*s, text, st);
  if (st.bad_lines > st.lines || st.minutes > st.readings) std::abort();
  read_back(*s, date_from(text));
  return 0;
}
