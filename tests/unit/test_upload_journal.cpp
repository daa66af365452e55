// Upload from the journals: raw frames decoded and encoded as process + the old uploader did,
// relay events, cursors, and the daily files never getting a line twice after a crash.
#include <doctest/doctest.h>
#include <poll.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "config/config.h"
#include "journal/journal.h"
#include "meterpipe.pb.h"
#include "process/decoder.h"
#include "process/journal_feed.h"
#include "protocols/simulate/dsmr_sim.h"
#include "tests/harness/temp_dir.h"
#include "upload/journal_feed.h"
#include "upload/targets.h"
#include "upload/uploader.h"

using mp::upload::JournalFeed;
using mp::upload::Point;

namespace {

// The reason an open() in these tests failed (shown by REQUIRE_MESSAGE).
std::string open_error;

constexpr int64_t kT0 = 1764979200LL * 1000000000LL;  // 2025-12-06T00:00:00Z

mp::config::Config config_in(const std::string& state_dir) {
  auto r = mp::config::load_string("[general]\nstate_dir = \"" + state_dir +
                                       "\"\n[[meter]]\nname = \"home\"\nsource = \"simulate\"\n",
                                   "t.toml");
  REQUIRE(r.errors.empty());
  return *r.config;
}

std::string raw_envelope(int i, mp::dsmr::SimState& sim) {
  meterpipe::Envelope env;
  auto* raw = env.mutable_raw();
  raw->set_source("home");
  raw->set_protocol("dsmr");
  raw->set_data(mp::dsmr::make_telegram(kT0 + int64_t(i) * 10 * 1000000000LL, sim));
  raw->set_receive_time_ns(kT0 + int64_t(i) * 10 * 1000000000LL);
  raw->set_clock_synced(true);
  return env.SerializeAsString();
}

std::string relay_envelope(int i) {
  meterpipe::Envelope env;
  env.set_send_time_ns(kT0 + i);
  auto* ev = env.mutable_relay();
  ev->set_relay("boiler");
  ev->set_new_state(i % 2);
  ev->set_ok(true);
  ev->set_mode("auto");
  ev->set_reason("test " + std::to_string(i));
  return env.SerializeAsString();
}

// Writes `n` raw frames (and `relays` relay events) into the journals of `cfg`.
void write_journals(const mp::config::Config& cfg, int from, int n, int relays = 0) {
  mp::dsmr::SimState sim;
  sim.seed = 7;
  mp::journal::Writer raw, rel;
  mp::journal::WriterOptions o;
  o.commit_ms = 1;
  o.compress = true;  // as the workers write them
  o.dir = cfg.general.state_dir + "/journal/acquire";
  REQUIRE_MESSAGE(raw.open(o, open_error), open_error);
  for (int i = 0; i < from + n; ++i) {
    std::string e = raw_envelope(i, sim);  // the simulator's counters depend on every step
    if (i >= from) raw.append(e);
  }
  o.dir = cfg.general.state_dir + "/journal/actuate";
  REQUIRE_MESSAGE(rel.open(o, open_error), open_error);
  for (int i = 0; i < relays; ++i) rel.append(relay_envelope(i));
}

std::vector<std::string> file_lines(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream f(e.path());
    std::string l;
    while (std::getline(f, l)) out.push_back(l);
  }
  return out;
}

// Runs an uploader over the journals of `cfg` into files until `n` lines are there.
void upload_to_files(const mp::config::Config& cfg, size_t n) {
  JournalFeed feed(cfg, {});
  feed.add_source(cfg.general.state_dir + "/journal/acquire", JournalFeed::Kind::raw_frames);
  feed.add_source(cfg.general.state_dir + "/journal/actuate", JournalFeed::Kind::relay_events);
  std::mutex mu;
  mp::upload::FileTarget files(mu);
  REQUIRE_MESSAGE(files.open(cfg.upload.data_dir, open_error), open_error);
  mp::upload::UploaderOptions o;
  o.batch_age_ms = 0;
  o.cursor_save_ms = 0;
  mp::upload::Uploader up(feed, files, o);
  std::thread t([&] { up.run(); });
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (up.stats().points_sent < n && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  up.stop();
  t.join();
}

}  // namespace

TEST_CASE("journal feed: a writer's commit wakes the feed, also of a journal made later") {
  mp::test::TempDir d("mpupj");
  auto cfg = config_in(d.path);
  const std::string dir = d.path + "/journal/acquire";
  JournalFeed feed(cfg, {});
  feed.add_source(dir, JournalFeed::Kind::raw_frames);
  CHECK_FALSE(feed.watch());  // no directory yet: the uploader looks again after a while
  mp::journal::Writer w;
  mp::journal::WriterOptions o;
  o.dir = dir;
  o.commit_ms = 1;
  REQUIRE_MESSAGE(w.open(o, open_error), open_error);
  REQUIRE(feed.watch());
  feed.drain_changes();
  pollfd p{feed.change_fd(), POLLIN, 0};
  CHECK(poll(&p, 1, 0) == 0);
  mp::dsmr::SimState sim;
  REQUIRE(w.append(raw_envelope(0, sim)));
  CHECK(poll(&p, 1, 20000) == 1);  // the commit's write
  feed.drain_changes();
  std::vector<Point> pts;
  CHECK(feed.read(pts, 10) > 0);
  CHECK(poll(&p, 1, 0) == 0);  // drained, nothing new
}

TEST_CASE("journal feed: the lines equal decode + encode of each frame; relay events too") {
  mp::test::TempDir d("mpupj");
  auto cfg = config_in(d.path);
  write_journals(cfg, 0, 20, 3);
  JournalFeed feed(cfg, {});
  feed.add_source(d.path + "/journal/acquire", JournalFeed::Kind::raw_frames);
  feed.add_source(d.path + "/journal/actuate", JournalFeed::Kind::relay_events);
  std::vector<Point> pts;
  feed.read(pts, 1000);
  // expected: the same frames through process's decoders and the encoder
  mp::process::Decoders dec(cfg);
  mp::dsmr::SimState sim;
  sim.seed = 7;
  std::multiset<std::string> want;
  for (int i = 0; i < 20; ++i) {
    meterpipe::Envelope env;
    REQUIRE(env.ParseFromString(raw_envelope(i, sim)));
    meterpipe::Reading r;
    std::string err;
    REQUIRE(dec.decode(env.raw(), r, err) == mp::process::Status::reading);
    for (auto& p : mp::upload::encode(r, {}).points) want.insert(p.line);
  }
  for (int i = 0; i < 3; ++i) {
    meterpipe::Envelope env;
    REQUIRE(env.ParseFromString(relay_envelope(i)));
    want.insert(mp::upload::encode_relay(env, mp::upload::Precision::ns));
  }
  std::multiset<std::string> got;
  for (auto& p : pts) got.insert(p.line);
  CHECK(got.size() >= 23);
  CHECK(got == want);
  CHECK(feed.stats().decode_errors == 0);
  // the marks are past every record; saved, a new feed starts there with nothing to read
  REQUIRE(feed.save(feed.marks()));
  JournalFeed again(cfg, {});
  again.add_source(d.path + "/journal/acquire", JournalFeed::Kind::raw_frames);
  again.add_source(d.path + "/journal/actuate", JournalFeed::Kind::relay_events);
  std::vector<Point> none;
  CHECK(again.read(none, 1000) == 0);
}

TEST_CASE("journal feed: a half-decoded Modbus poll holds the clean mark back") {
  mp::test::TempDir d("mpupj");
  auto r = mp::config::load_string(
      "[general]\nstate_dir = \"" + d.path +
          "\"\n[[meter]]\nname = \"m\"\nprotocol = \"modbus\"\nsource = \"tcp\"\nhost = "
          "\"127.0.0.1\"\nport = 502\ntype = \"sdm120\"\n",
      "t.toml");
  REQUIRE(r.errors.empty());
  const auto& cfg = *r.config;
  mp::journal::Writer w;
  mp::journal::WriterOptions o;
  o.commit_ms = 1;
  o.dir = d.path + "/journal/acquire";
  REQUIRE_MESSAGE(w.open(o, open_error), open_error);
  auto block = [](bool last) {
    meterpipe::Envelope env;
    auto* raw = env.mutable_raw();
    raw->set_source("m");
    raw->set_protocol("modbus");
    raw->set_device_type("sdm120");
    raw->set_function_code(4);
    raw->set_start_address(0);
    raw->set_data(std::string(4, '\0'));
    raw->set_last_of_poll(last);
    raw->set_receive_time_ns(kT0);
    return env.SerializeAsString();
  };
  w.append(block(true));
  w.append(block(false));
  w.close();
  JournalFeed feed(cfg, {});
  feed.add_source(o.dir, JournalFeed::Kind::raw_frames);
  std::vector<Point> pts;
  feed.read(pts, 100);
  const auto m = feed.marks();
  REQUIRE(m.size() == 1);
  // after the first (complete) poll, before the half one
  CHECK(m[0] == mp::journal::Position{1, 8 + 8 + block(true).size()});
}

TEST_CASE("process journal feed: a start position, one past every segment, a record cap") {
  // history's way in: the position its database holds (history/worker_history.cpp)
  mp::test::TempDir d("mpupj");
  auto cfg = config_in(d.path);
  write_journals(cfg, 0, 5);
  const std::string dir = d.path + "/journal/acquire";
  const auto segs = mp::journal::list_segments(dir);
  REQUIRE_FALSE(segs.empty());
  using Feed = mp::process::JournalFeed;
  std::vector<int64_t> times;
  const Feed::Take take = [&](const Feed::Item& item) -> size_t {
    REQUIRE(item.reading);
    times.push_back(int64_t(item.reading->meter_time_ns()));
    return 1;
  };
  mp::journal::Position after_two;
  {
    Feed feed(cfg, "history");
    feed.add_source(dir, Feed::Kind::raw_frames);
    CHECK(feed.read(take, 2) == 2);
    after_two = feed.marks()[0];
    CHECK(feed.read(take, 100, 1) == 1);  // at most one record
    CHECK(feed.stats().records == 3);
  }
  times.clear();
  {
    Feed feed(cfg, "history");
    feed.add_source(dir, Feed::Kind::raw_frames, &after_two);
    CHECK(feed.read(take, 100) == 3);  // readings 3, 4, 5
  }
  REQUIRE(times.size() == 3);
  CHECK(times[0] < times[1]);
  const std::vector<int64_t> last_three = times;
  times.clear();
  {
    // a database restored beside a new journal: its position is past every segment there
    const mp::journal::Position ahead{segs.back() + 1000, 8};
    Feed feed(cfg, "history");
    feed.add_source(dir, Feed::Kind::raw_frames, &ahead);
    CHECK(feed.read(take, 100) == 5);  // from the oldest record, not waiting for good
  }
  REQUIRE(times.size() == 5);
  CHECK(std::vector<int64_t>(times.begin() + 2, times.end()) == last_three);
}

TEST_CASE("daily files from the journals: a crash before the cursor save adds no line twice") {
  mp::test::TempDir d("mpupj");
  auto cfg = config_in(d.path);
  write_journals(cfg, 0, 30, 4);
  upload_to_files(cfg, 34);
  auto lines = file_lines(cfg.upload.data_dir);
  REQUIRE(lines.size() == 34);
  // a crash between the appends and the cursor save: as if the cursors were never saved
  std::filesystem::remove(d.path + "/journal/acquire/cursor.upload");
  std::filesystem::remove(d.path + "/journal/actuate/cursor.upload");
  // more frames arrive; the restarted uploader reads everything from the start again
  write_journals(cfg, 30, 10);
  upload_to_files(cfg, 44);
  lines = file_lines(cfg.upload.data_dir);
  std::set<std::string> distinct(lines.begin(), lines.end());
  CHECK(lines.size() == 44);
  CHECK(distinct.size() == 44);
  mp::journal::Position p;
  CHECK(mp::journal::load_cursor(d.path + "/journal/acquire", "upload", p));
}

TEST_CASE("uploader: a started batch waits for its age; a local target gets it at stop") {
  for (const bool at_stop : {false, true}) {
    CAPTURE(at_stop);
    mp::test::TempDir d("mpupa");
    auto cfg = config_in(d.path);
    cfg.upload.data_dir = d.path + "/data";
    write_journals(cfg, 0, 3);
    JournalFeed feed(cfg, {});
    feed.add_source(cfg.general.state_dir + "/journal/acquire", JournalFeed::Kind::raw_frames);
    std::mutex mu;
    mp::upload::FileTarget files(mu);
    REQUIRE_MESSAGE(files.open(cfg.upload.data_dir, open_error), open_error);
    mp::upload::UploaderOptions o;
    o.batch_age_ms = 3600 * 1000;  // never due within the test
    o.deliver_at_stop = at_stop;
    mp::upload::Uploader up(feed, files, o);
    std::thread t([&] { up.run(); });
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (up.stats().points_pending < 3 && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK(up.stats().points_pending == 3);
    // more frames while the batch waits: not read before the batch is due (or the stop)
    write_journals(cfg, 3, 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(up.stats().points_pending == 3);
    CHECK(up.stats().points_sent == 0);
    up.stop();
    t.join();
    // at stop: with deliver_at_stop the batch and what came meanwhile are in the files (and
    // the cursors past them); else everything waits in the journal for the next start
    CHECK(file_lines(cfg.upload.data_dir).size() == (at_stop ? 5u : 0u));
    CHECK(up.stats().points_sent == (at_stop ? 5u : 0u));
  }
}
