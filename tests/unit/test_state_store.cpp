// Persisted engine state: text round trip, atomic save, load errors.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "actuate/rules.h"
#include "actuate/state_store.h"
#include "tests/harness/temp_dir.h"

using namespace mp::actuate;

namespace {

struct TempDir : mp::test::TempDir {
  TempDir() : mp::test::TempDir("mpstate") {}
};

std::string slurp(const std::string& file) {
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

EngineState sample() {
  EngineState s;
  RelayState a;
  a.name = "boiler";
  a.on = true;
  a.last_switch_ns = 1717405260000000000;
  a.switches_ns = {1717403000000000000, 1717405260000000000};
  a.override_mode = Override::on;
  a.override_expires_ns = 1717410000000000000;
  a.above_since_ns = 1717405299000000000;
  a.shed_quarter_ns = 1717405200000000000;
  RelayState b;
  b.name = "pool pump #2";
  b.below_since_ns = -5;
  s.relays = {a, b};
  s.meters = {{"main", 1717405299000000000}};
  return s;
}

}  // namespace

TEST_CASE("state text: exact format and round trip") {
  std::string text = serialize_state(sample());
  CHECK(text ==
        "meterpipe-actuate-state 1\n"
        "relay boiler on=1 last_switch=1717405260000000000 "
        "switches=1717403000000000000,1717405260000000000 override=on "
        "override_expires=1717410000000000000 below_since=- above_since=1717405299000000000 "
        "shed_quarter=1717405200000000000\n"
        "relay pool%20pump%20%232 on=0 last_switch=0 switches=- override=auto "
        "override_expires=0 below_since=-5 above_since=- shed_quarter=-\n"
        "meter main last_data=1717405299000000000\n");
  EngineState back;
  std::string err;
  REQUIRE(parse_state(text, back, err));
  CHECK(back == sample());
  CHECK(back.saved_ns == 0);  // a file without the saved line (older version): unknown

  EngineState stamped = sample();
  stamped.saved_ns = 1717405300000000000;
  stamped.clean = true;
  text = serialize_state(stamped);
  const std::string tail = "\nsaved 1717405300000000000 clean=1\n";
  CHECK(text.substr(text.size() - tail.size()) == tail);
  REQUIRE(parse_state(text, back, err));
  CHECK(back == stamped);
  stamped.clean = false;
  REQUIRE(parse_state(serialize_state(stamped), back, err));
  CHECK(back == stamped);
  CHECK_FALSE(parse_state("meterpipe-actuate-state 1\nsaved x clean=1\n", back, err));
  CHECK(err == "line 2: bad time for saved: x");
  CHECK_FALSE(parse_state("meterpipe-actuate-state 1\nsaved 5 clean=yes\n", back, err));
  CHECK(err == "line 2: bad value for saved: clean=yes");
}

TEST_CASE("state text: corrupt input is an error with a line number, never a crash") {
  EngineState out;
  std::string err;
  CHECK_FALSE(parse_state("", out, err));
  CHECK(err == "not a meterpipe actuate state file (bad first line)");
  CHECK_FALSE(parse_state("meterpipe-actuate-state 1\nrelay x on=2\n", out, err));
  CHECK(err == "line 2: bad value for on: 2");
  CHECK_FALSE(parse_state("meterpipe-actuate-state 1\nrelay x switches=1,,z\n", out, err));
  CHECK(err == "line 2: bad value for switches: 1,,z");
  CHECK_FALSE(parse_state("meterpipe-actuate-state 1\nrelay %4\n", out, err));
  CHECK(err == "line 2: bad name");
  CHECK_FALSE(parse_state("meterpipe-actuate-state 1\nrelay x last_switch=99999999999999999999\n",
                          out, err));
  CHECK(err == "line 2: bad value for last_switch: 99999999999999999999");
  CHECK_FALSE(parse_state("meterpipe-actuate-state 1\nrelay x on\n", out, err));
  CHECK(err == "line 2: expected key=value: on");
  // Unknown keys and kinds of line are skipped (a newer version wrote them).
  REQUIRE(parse_state("meterpipe-actuate-state 1\nrelay x on=1 future=7\nthing y\n", out, err));
  REQUIRE(out.relays.size() == 1);
  CHECK(out.relays[0].on);
  // Every prefix of a valid file either parses or fails cleanly.
  std::string text = serialize_state(sample());
  for (size_t n = 0; n <= text.size(); ++n) {
    EngineState s;
    std::string e;
    if (!parse_state(text.substr(0, n), s, e)) CHECK_FALSE(e.empty());
  }
}

TEST_CASE("save_state writes atomically and load_state reads it back") {
  TempDir dir;
  std::string file = dir.path + "/actuate.state";
  EngineState s;
  std::string err;
  CHECK(load_state(file, s, err) == LoadResult::missing);

  REQUIRE(save_state(file, sample(), err));
  CHECK(access((file + ".tmp").c_str(), F_OK) != 0);  // the temp file was renamed
  CHECK(slurp(file) == serialize_state(sample()));
  REQUIRE(load_state(file, s, err) == LoadResult::ok);
  CHECK(s == sample());

  // Overwrite: the file holds the new state entirely.
  EngineState small;
  small.meters = {{"m", 1}};
  REQUIRE(save_state(file, small, err));
  CHECK(slurp(file) == "meterpipe-actuate-state 1\nmeter m last_data=1\n");

  std::ofstream(file) << "garbage\n";
  CHECK(load_state(file, s, err) == LoadResult::error);
  CHECK(err == file + ": not a meterpipe actuate state file (bad first line)");

  CHECK_FALSE(save_state(dir.path + "/no/such/dir/state", small, err));
  CHECK(err == "cannot create " + dir.path + "/no/such/dir/state.tmp: No such file or directory");
}

TEST_CASE("engine state survives save and load") {
  RelaySpec r;
  r.name = "boiler";
  r.meter = "main";
  r.output = "b";
  r.on_delay_s = 0;
  Engine e(SiteSpec{}, {r});
  mp::Reading rd;
  rd.meter = "main";
  rd.values.push_back({"power_net_w", -2000, "", false, "W", "", 0, ""});
  const int64_t t = int64_t{1717405200} * kNsPerSec;
  for (auto& d : e.step(t, {}, &rd)) e.confirm(d.relay, true, t);          // unknown -> off
  for (auto& d : e.step(t + 1, {}, &rd)) e.confirm(d.relay, true, t + 1);  // surplus -> on
  REQUIRE(e.state("boiler"));
  e.set_override("boiler", Override::on, t + 3600 * kNsPerSec);

  TempDir dir;
  std::string err;
  REQUIRE(save_state(dir.path + "/s", e.export_state(), err));
  EngineState loaded;
  REQUIRE(load_state(dir.path + "/s", loaded, err) == LoadResult::ok);
  Engine again(SiteSpec{}, {r});
  again.import_state(loaded);
  CHECK(again.export_state() == e.export_state());
  CHECK(again.state("boiler"));
  auto st = again.status(t + 2);
  CHECK(st[0].override_mode == Override::on);
  CHECK(st[0].switches_last_hour == 1);
  CHECK(again.step(t + 2, {}, nullptr).empty());  // fresh enough, state known: no switch
}
