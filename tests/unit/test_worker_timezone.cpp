// The worker harness (bus/worker.h) puts every worker in general.timezone, whatever the
// system's zone: upload, which decodes M-Bus meters' local times too, used to convert them
// in the system's zone (its main set no TZ, unlike process and history).
#include <doctest/doctest.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "bus/worker.h"
#include "tests/harness/temp_dir.h"

TEST_CASE("worker harness: local times are those of general.timezone") {
  setenv("TZ", "UTC", 1);  // a Pi left in UTC
  tzset();
  mp::test::TempDir d("mpwtz");
  std::filesystem::create_directories(d.path + "/run");
  const std::string cfg = d.path + "/meterpipe.toml";
  std::ofstream(cfg) << "[general]\nrun_dir = \"" << d.path << "/run\"\nstate_dir = \"" << d.path
                     << "/state\"\ntimezone = \"Asia/Tokyo\"\n\n[[meter]]\nname = \"home\"\n"
                        "source = \"simulate\"\n";
  std::string path = cfg;
  char a0[] = "meterpipe-upload", a1[] = "--config";
  char* argv[] = {a0, a1, path.data(), nullptr};
  mp::Worker w(3, argv, "upload");
  CHECK(w.cfg().general.timezone == "Asia/Tokyo");
  // 2026-01-01 00:00 on a wall clock in Tokyo (+9) is 2025-12-31 15:00 UTC
  struct tm tm {};
  tm.tm_year = 2026 - 1900;
  tm.tm_mday = 1;
  tm.tm_isdst = -1;
  CHECK(mktime(&tm) == 1767225600 - 9 * 3600);
}
