// Unit tests of the bus (bus/bus.h): real ZeroMQ over ipc:// in a temporary run_dir.
//
// ZeroMQ slow joiner: a SUB socket gets nothing published before its connection is up, so
// every test first waits until a probe message arrives (wait_connected) before relying on
// delivery.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bus/bus.h"
#include "supervisor/supervisor.h"
#include "tests/harness/temp_dir.h"

namespace {

using mp::bus::Message;
using mp::bus::Publisher;
using mp::bus::Subscriber;

struct TempDir : mp::test::TempDir {
  TempDir() : mp::test::TempDir("mpbus") {}
};

meterpipe::Envelope raw_env(size_t n = 16) {
  meterpipe::Envelope env;
  env.mutable_raw()->set_source("test");
  env.mutable_raw()->set_data(std::string(n, 'x'));
  return env;
}

uint64_t publish(Publisher& pub, const std::string& topic, size_t n = 16) {
  auto env = raw_env(n);
  return pub.publish(topic, env);
}

// Publishes `topic` every 20 ms until the subscriber receives one (at most 5 s), then drains
// what else is queued. Returns false if nothing ever came.
bool wait_connected(Publisher& pub, Subscriber& sub, const std::string& topic) {
  Message m;
  for (int i = 0; i < 250; ++i) {
    publish(pub, topic);
    if (sub.receive(m, 20)) {
      while (sub.receive(m, 100)) {
      }
      return true;
    }
  }
  return false;
}

// Receives until `timeout_ms` passes without a message.
std::vector<Message> drain(Subscriber& sub, int timeout_ms = 200) {
  std::vector<Message> out;
  Message m;
  while (sub.receive(m, timeout_ms)) out.push_back(std::move(m));
  return out;
}

std::vector<Message> only(const std::vector<Message>& v, const std::string& topic) {
  std::vector<Message> out;
  for (const auto& m : v)
    if (m.topic == topic) out.push_back(m);
  return out;
}

const Subscriber::TopicState& state_of(const Subscriber& sub, const std::string& publisher,
                                       const std::string& topic) {
  static const Subscriber::TopicState none{};
  auto it = sub.positions().find(Subscriber::Key{publisher, topic});
  return it == sub.positions().end() ? none : it->second;
}

}  // namespace

TEST_CASE("endpoints are ipc paths in run_dir") {
  CHECK(mp::bus::pub_endpoint("/tmp/r", "acquire") == "ipc:///tmp/r/acquire.pub");
  CHECK(mp::bus::replay_endpoint("/tmp/r", "acquire") == "ipc:///tmp/r/acquire.replay");
  CHECK(mp::bus::ctl_endpoint("/tmp/r", "supervisor") == "ipc:///tmp/r/supervisor.ctl");
  CHECK(mp::bus::topic_reading("home") == "reading/home");
  CHECK(mp::bus::topic_health("upload") == "health/upload");
}

TEST_CASE("publisher that cannot bind throws naming the endpoint") {
  TempDir d;
  const std::string bad = d.path + "/no/such/dir";
  try {
    Publisher p(bad, "acquire");
    FAIL("no exception");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("ipc://" + bad + "/acquire.pub") != std::string::npos);
  }
}

TEST_CASE("publisher stamps name, instance, per-topic seq and time") {
  TempDir d;
  Publisher pub(d.path, "acquire");
  CHECK(pub.instance_id() != 0);
  auto env = raw_env();
  const int64_t before = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  CHECK(pub.publish("raw/a", env) == 1);
  CHECK(env.publisher() == "acquire");
  CHECK(env.instance_id() == pub.instance_id());
  CHECK(env.seq() == 1);
  CHECK(env.send_time_ns() >= before);
  CHECK(env.send_time_ns() < before + 10'000'000'000LL);
  CHECK(publish(pub, "raw/a") == 2);
  CHECK(publish(pub, "raw/b") == 1);  // own counter per topic
  CHECK(publish(pub, "raw/a") == 3);
  CHECK(pub.published() == 4);
  CHECK(pub.send_failures() == 0);
  Publisher other(d.path, "process");
  CHECK(other.instance_id() != pub.instance_id());
}

TEST_CASE("prefix filtering: reading/ gets reading/a and reading/b only") {
  TempDir d;
  Publisher pub(d.path, "process");
  Subscriber sub(d.path, {"process"}, {"reading/"});
  REQUIRE(wait_connected(pub, sub, "reading/probe"));

  publish(pub, "raw/x");
  publish(pub, "reading/a");
  publish(pub, "health/y");
  publish(pub, "readingX");  // shares the bytes "reading" but not the prefix "reading/"
  publish(pub, "reading/b");
  publish(pub, "raw/x");
  publish(pub, "reading/a");
  auto got = drain(sub);
  REQUIRE(got.size() == 3);
  CHECK(got[0].topic == "reading/a");
  CHECK(got[0].env.seq() == 1);
  CHECK(got[1].topic == "reading/b");
  CHECK(got[1].env.seq() == 1);
  CHECK(got[2].topic == "reading/a");
  CHECK(got[2].env.seq() == 2);
  for (const auto& m : got) {
    CHECK(m.env.publisher() == "process");
    CHECK(m.env.instance_id() == pub.instance_id());
    CHECK_FALSE(m.replayed);
    CHECK(m.env.raw().data() == std::string(16, 'x'));
  }
  CHECK(sub.positions().count({"process", "raw/x"}) == 0);
  CHECK(sub.positions().count({"process", "health/y"}) == 0);
  CHECK(sub.lost() == 0);
  CHECK(sub.decode_errors() == 0);
}

TEST_CASE("several prefixes and several publishers") {
  TempDir d;
  Publisher acq(d.path, "acquire");
  Publisher proc(d.path, "process");
  Subscriber sub(d.path, {"acquire", "process"}, {"raw/", "health/"});
  REQUIRE(wait_connected(acq, sub, "raw/probe"));
  REQUIRE(wait_connected(proc, sub, "health/probe"));
  publish(acq, "raw/home");
  publish(proc, "reading/home");
  publish(proc, "health/process");
  publish(acq, "health/acquire");
  auto got = drain(sub);
  std::map<std::string, std::string> seen;  // topic -> publisher
  for (const auto& m : got) seen[m.topic] = m.env.publisher();
  CHECK(got.size() == 3);
  CHECK(seen == std::map<std::string, std::string>{{"raw/home", "acquire"},
                                                   {"health/process", "process"},
                                                   {"health/acquire", "acquire"}});
}

TEST_CASE("in-order stream: no gap, no loss, positions follow") {
  TempDir d;
  Publisher pub(d.path, "process");
  Subscriber sub(d.path, {"process"}, {"reading/"});
  REQUIRE(wait_connected(pub, sub, "reading/home"));
  const uint64_t first = state_of(sub, "process", "reading/home").last_seq;
  for (int i = 0; i < 50; ++i) publish(pub, "reading/home");
  auto got = drain(sub);
  REQUIRE(got.size() == 50);
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i].env.seq() == first + 1 + i);
  const auto& st = state_of(sub, "process", "reading/home");
  CHECK(st.instance == pub.instance_id());
  CHECK(st.last_seq == first + 50);
  CHECK(st.gaps == 0);
  CHECK(st.lost == 0);
  CHECK(st.restarts == 0);
  CHECK(sub.duplicates() == 0);
}

TEST_CASE("seq gap without replay is counted as lost") {
  TempDir d;
  Publisher pub(d.path, "process");
  Subscriber sub(d.path, {"process"}, {"reading/"});
  REQUIRE(wait_connected(pub, sub, "reading/home"));
  for (int i = 0; i < 20; ++i) publish(pub, "reading/home");
  drain(sub);
  const uint64_t cur = state_of(sub, "process", "reading/home").last_seq;
  REQUIRE(cur >= 21);
  // The subscriber believes it has seen only up to cur - 7: 7 messages are missing.
  sub.set_position("process", "reading/home", pub.instance_id(), cur - 7);
  publish(pub, "reading/home");  // seq cur + 1
  auto got = drain(sub);
  REQUIRE(got.size() == 1);
  CHECK(got[0].env.seq() == cur + 1);
  CHECK_FALSE(got[0].replayed);
  const auto& st = state_of(sub, "process", "reading/home");
  CHECK(st.gaps == 1);
  CHECK(st.lost == 7);
  CHECK(st.last_seq == cur + 1);
  CHECK(sub.lost() == 7);
  CHECK(sub.replayed() == 0);
  CHECK(pub.replay_requests() == 0);  // replay is off
}

TEST_CASE("seq gap with replay on is filled from the ring") {
  TempDir d;
  Publisher pub(d.path, "process");
  Subscriber::Options so;
  so.replay = true;
  so.first_contact_max = 0;  // these cases look at gaps after a first (probe) contact
  Subscriber sub(d.path, {"process"}, {"reading/"}, so);
  REQUIRE(wait_connected(pub, sub, "reading/home"));
  for (int i = 0; i < 20; ++i) publish(pub, "reading/home");
  drain(sub);
  const uint64_t cur = state_of(sub, "process", "reading/home").last_seq;
  sub.set_position("process", "reading/home", pub.instance_id(), cur - 7);
  publish(pub, "reading/home");
  auto got = drain(sub);
  REQUIRE(got.size() == 8);
  for (size_t i = 0; i < 8; ++i) {
    CHECK(got[i].env.seq() == cur - 6 + i);
    CHECK(got[i].replayed == (i < 7));
    CHECK(got[i].env.instance_id() == pub.instance_id());
  }
  const auto& st = state_of(sub, "process", "reading/home");
  CHECK(st.gaps == 1);
  CHECK(st.lost == 0);
  CHECK(sub.replayed() == 7);
  CHECK(pub.replay_requests() == 1);
}

TEST_CASE("restarted subscriber: replay fills a gap of 500 in order, no duplicate") {
  TempDir d;
  Publisher pub(d.path, "process");
  // Published while no subscriber runs (e.g. upload was restarting).
  for (int i = 0; i < 600; ++i) publish(pub, "reading/home", 200);
  Subscriber::Options so;
  so.replay = true;
  so.first_contact_max = 0;  // these cases look at gaps after a first (probe) contact
  Subscriber sub(d.path, {"process"}, {"reading/"}, so);
  // Position persisted by the previous run of the subscriber: it had seen up to seq 100.
  sub.set_position("process", "reading/home", pub.instance_id(), 100);
  REQUIRE(wait_connected(pub, sub, "reading/probe"));
  CHECK(pub.replay_requests() == 0);
  publish(pub, "reading/home");  // seq 601, the first one it sees live
  auto got = only(drain(sub), "reading/home");
  REQUIRE(got.size() == 501);
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].env.seq() == 101 + i);
    CHECK(got[i].replayed == (i < 500));
    CHECK(got[i].env.raw().data().size() == (i < 500 ? 200u : 16u));
  }
  const auto& st = state_of(sub, "process", "reading/home");
  CHECK(st.last_seq == 601);
  CHECK(st.gaps == 1);
  CHECK(st.lost == 0);
  CHECK(sub.replayed() == 500);
  CHECK(sub.duplicates() == 0);
  CHECK(pub.replay_requests() == 1);
  // and it goes on live
  publish(pub, "reading/home");
  auto more = drain(sub);
  REQUIRE(more.size() == 1);
  CHECK(more[0].env.seq() == 602);
  CHECK_FALSE(more[0].replayed);
}

TEST_CASE("catch_up: a restored position gets what it missed without a live message") {
  TempDir d;
  Publisher pub(d.path, "process");
  for (int i = 0; i < 40; ++i) publish(pub, "reading/home");
  Subscriber::Options so;
  so.replay = true;
  Subscriber sub(d.path, {"process"}, {"reading/"}, so);
  sub.set_position("process", "reading/home", pub.instance_id(), 25);
  sub.set_position("process", "reading/gone", pub.instance_id() + 1, 7);  // another instance
  CHECK(sub.catch_up() == 15);
  auto got = drain(sub, 50);
  REQUIRE(got.size() == 15);
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].env.seq() == 26 + i);
    CHECK(got[i].replayed);
  }
  CHECK(state_of(sub, "process", "reading/home").last_seq == 40);
  CHECK(state_of(sub, "process", "reading/gone").last_seq == 7);  // untouched
  CHECK(sub.lost() == 0);
  // live messages go on after it, none twice
  REQUIRE(wait_connected(pub, sub, "reading/probe"));
  publish(pub, "reading/home");
  auto live = only(drain(sub), "reading/home");
  REQUIRE(live.size() == 1);
  CHECK(live[0].env.seq() == 41);
  CHECK(sub.duplicates() == 0);
}

TEST_CASE("gap older than the replay ring: what the ring no longer has is counted lost") {
  TempDir d;
  Publisher::Options po;
  po.ring_size = 100;
  Publisher pub(d.path, "process", po);
  for (int i = 0; i < 300; ++i) publish(pub, "reading/home");
  Subscriber::Options so;
  so.replay = true;
  so.first_contact_max = 0;  // these cases look at gaps after a first (probe) contact
  Subscriber sub(d.path, {"process"}, {"reading/"}, so);
  sub.set_position("process", "reading/home", pub.instance_id(), 50);
  REQUIRE(wait_connected(pub, sub, "reading/probe"));
  publish(pub, "reading/home");  // seq 301; the ring holds 201..300 of this topic at most
  auto got = only(drain(sub), "reading/home");
  REQUIRE(!got.empty());
  CHECK(got.back().env.seq() == 301);
  for (size_t i = 1; i < got.size(); ++i) CHECK(got[i].env.seq() == got[i - 1].env.seq() + 1);
  const auto& st = state_of(sub, "process", "reading/home");
  // 51..300 were missing; every one of them is either delivered (replayed) or counted lost.
  CHECK(sub.replayed() + st.lost == 250);
  CHECK(st.lost >= 150);
}

TEST_CASE("publisher restart: new instance noticed, its early messages replayed") {
  TempDir d;
  Subscriber::Options so;
  so.replay = true;
  so.first_contact_max = 0;  // these cases look at gaps after a first (probe) contact
  Subscriber sub(d.path, {"process"}, {"reading/"}, so);
  uint64_t old_instance = 0;
  {
    Publisher p1(d.path, "process");
    old_instance = p1.instance_id();
    REQUIRE(wait_connected(p1, sub, "reading/home"));
    for (int i = 0; i < 5; ++i) publish(p1, "reading/home");
    drain(sub, 100);
  }
  CHECK(state_of(sub, "process", "reading/home").instance == old_instance);
  CHECK(state_of(sub, "process", "reading/home").last_seq > 5);

  Publisher p2(d.path, "process");
  REQUIRE(p2.instance_id() != old_instance);
  // Sent right after the bind, before the subscriber has reconnected (reconnect_ivl 100 ms):
  // live, these are lost; only the replay ring can deliver them.
  for (int i = 0; i < 5; ++i) publish(p2, "reading/home");
  REQUIRE(wait_connected(p2, sub, "reading/probe"));
  publish(p2, "reading/home");  // seq 6
  auto got = only(drain(sub), "reading/home");
  REQUIRE(got.size() == 6);
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].env.seq() == i + 1);
    CHECK(got[i].env.instance_id() == p2.instance_id());
  }
  CHECK(got.back().replayed == false);
  int replayed = 0;
  for (const auto& m : got) replayed += m.replayed;
  CHECK(replayed == 5);
  const auto& st = state_of(sub, "process", "reading/home");
  CHECK(st.instance == p2.instance_id());
  CHECK(st.restarts == 1);
  CHECK(st.last_seq == 6);
  CHECK(st.lost == 0);
  CHECK(sub.duplicates() == 0);
}

TEST_CASE("publisher restart without replay: restart and loss are visible") {
  TempDir d;
  Subscriber sub(d.path, {"process"}, {"reading/"});
  {
    Publisher p1(d.path, "process");
    REQUIRE(wait_connected(p1, sub, "reading/home"));
  }
  Publisher p2(d.path, "process");
  for (int i = 0; i < 5; ++i) publish(p2, "reading/home");
  REQUIRE(wait_connected(p2, sub, "reading/probe"));
  publish(p2, "reading/home");  // seq 6
  auto got = only(drain(sub), "reading/home");
  REQUIRE(!got.empty());
  CHECK(got.back().env.seq() == 6);
  const auto& st = state_of(sub, "process", "reading/home");
  CHECK(st.restarts == 1);
  CHECK(st.instance == p2.instance_id());
  CHECK(st.lost + got.size() == 6);
  CHECK(st.lost >= 1);
}

TEST_CASE("stalled subscriber does not slow the publisher; loss is counted exactly") {
  TempDir d;
  Publisher::Options po;
  po.sndhwm = 1000;
  Publisher pub(d.path, "acquire", po);
  Subscriber::Options so;
  so.rcvhwm = 1000;
  Subscriber sub(d.path, {"acquire"}, {"raw/"}, so);
  REQUIRE(wait_connected(pub, sub, "raw/probe"));

  const int total = 100000;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < total - 1; ++i) publish(pub, "raw/flood", 100);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("published %d messages with a stalled subscriber in %.3f s (%.0f msg/s)\n", total - 1,
              secs, (total - 1) / secs);
  CHECK(secs < 30);
  CHECK(pub.send_failures() == 0);  // dropping at the HWM is not a send failure

  auto got = only(drain(sub), "raw/flood");
  publish(pub, "raw/flood");  // the last one always arrives: the queue is empty now
  auto tail = only(drain(sub), "raw/flood");
  REQUIRE(tail.size() == 1);
  CHECK(tail[0].env.seq() == uint64_t(total));
  got.push_back(tail[0]);
  for (size_t i = 1; i < got.size(); ++i) CHECK(got[i].env.seq() > got[i - 1].env.seq());
  const auto& st = state_of(sub, "acquire", "raw/flood");
  std::printf("stalled subscriber: delivered %zu, lost %llu, gaps %llu\n", got.size(),
              (unsigned long long)st.lost, (unsigned long long)st.gaps);
  CHECK(st.lost > 0);
  CHECK(st.gaps > 0);
  CHECK(got.size() + st.lost == uint64_t(total));
  CHECK(st.last_seq == uint64_t(total));
  CHECK(sub.lost() == st.lost);
}

TEST_CASE("a burst larger than the receive batch: pending stays bounded, all come in order") {
  TempDir d;
  Publisher pub(d.path, "process");
  Subscriber::Options so;
  so.receive_batch = 100;
  Subscriber sub(d.path, {"process"}, {"reading/"}, so);
  Subscriber probe(d.path, {"process"}, {"reading/"});  // default batch
  REQUIRE(wait_connected(pub, probe, "reading/probe"));
  REQUIRE(wait_connected(pub, sub, "reading/home"));
  Message m;
  while (probe.receive(m, 100)) {
  }
  const uint64_t first = state_of(sub, "process", "reading/home").last_seq;
  const int total = 5000;
  for (int i = 0; i < total; ++i) publish(pub, "reading/home");
  // the probe has the whole burst: sub's socket most likely holds it too (on a loaded
  // machine part of it may still be on its way: the bound holds either way)
  size_t probed = 0;
  while (probed < size_t(total) && probe.receive(m, 5000)) probed += m.topic == "reading/home";
  REQUIRE(probed == size_t(total));

  const uint64_t received_before = sub.received();
  REQUIRE(sub.receive(m, 5000));
  CHECK(sub.received() - received_before <= so.receive_batch);  // the rest stays in ZeroMQ
  std::vector<uint64_t> seqs{m.env.seq()};
  size_t max_pending = sub.pending();
  while (seqs.size() < size_t(total) && sub.receive(m, 5000)) {
    seqs.push_back(m.env.seq());
    max_pending = std::max(max_pending, sub.pending());
  }
  CHECK(max_pending < so.receive_batch);
  REQUIRE(seqs.size() == size_t(total));
  for (size_t i = 0; i < seqs.size(); ++i) REQUIRE(seqs[i] == first + 1 + i);
  const auto& st = state_of(sub, "process", "reading/home");
  CHECK(st.lost == 0);
  CHECK(st.gaps == 0);
  CHECK(sub.received() - received_before == uint64_t(total));
  CHECK_FALSE(sub.receive(m, 0));  // nothing else: the burst was delivered once
}

TEST_CASE("stalled subscriber with replay on loses nothing the ring still holds") {
  TempDir d;
  Publisher::Options po;
  po.sndhwm = 100;
  po.ring_size = 10000;
  Publisher pub(d.path, "acquire", po);
  Subscriber::Options so;
  so.rcvhwm = 100;
  so.replay = true;
  so.first_contact_max = 0;  // these cases look at gaps after a first (probe) contact
  Subscriber sub(d.path, {"acquire"}, {"raw/"}, so);
  REQUIRE(wait_connected(pub, sub, "raw/probe"));
  const int total = 3000;
  for (int i = 0; i < total - 1; ++i) publish(pub, "raw/flood", 100);
  auto got = only(drain(sub), "raw/flood");
  publish(pub, "raw/flood");
  auto tail = only(drain(sub), "raw/flood");
  got.insert(got.end(), tail.begin(), tail.end());
  REQUIRE(got.size() == size_t(total));
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i].env.seq() == i + 1);
  const auto& st = state_of(sub, "acquire", "raw/flood");
  CHECK(st.lost == 0);
  CHECK(st.gaps >= 1);
  CHECK(sub.replayed() > 0);
  CHECK(pub.replay_requests() == st.gaps);
}

TEST_CASE("publish is thread-safe: per-topic seq stays unique and dense") {
  TempDir d;
  Publisher pub(d.path, "acquire");
  std::vector<std::thread> ts;
  std::vector<std::vector<uint64_t>> seqs(4);
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) seqs[t].push_back(publish(pub, "raw/shared"));
    });
  for (auto& t : ts) t.join();
  std::vector<bool> seen(8001, false);
  for (const auto& v : seqs)
    for (uint64_t s : v) {
      REQUIRE(s >= 1);
      REQUIRE(s <= 8000);
      CHECK_FALSE(seen[s]);
      seen[s] = true;
    }
  CHECK(pub.published() == 8000);
}

// The supervisor's restart policy is pure; its cap (30 s after 9 quick exits, ~51 s of
// waiting) is too slow to reach in tests/integration/test_supervisor.py, so it is checked here.
TEST_CASE("supervisor restart backoff: doubling from 0.1 s, capped at 30 s, reset when stable") {
  mp::supervisor::Backoff b;
  std::vector<double> got;
  for (int i = 0; i < 12; ++i) got.push_back(b.next(0.01));
  const std::vector<double> want = {0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30, 30};
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]));
  CHECK(b.next(59.9) == doctest::Approx(30));  // not stable yet
  CHECK(b.next(60) == doctest::Approx(0.1));   // ran long enough: start over
  CHECK(b.next(1) == doctest::Approx(0.2));
}

TEST_CASE("first contact with replay on fetches what the publisher sent just before") {
  TempDir d;
  Publisher pub(d.path, "acquire");
  for (int i = 0; i < 5; ++i) publish(pub, "raw/home");  // nobody listens yet
  Subscriber::Options so;
  so.replay = true;
  Subscriber sub(d.path, {"acquire"}, {"raw/"}, so);
  std::vector<Message> got;
  for (int i = 0; i < 50 && got.empty(); ++i) {
    publish(pub, "raw/home");
    got = drain(sub);
  }
  REQUIRE(got.size() >= 6);
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i].env.seq() == i + 1);
  CHECK(got[0].replayed);
  CHECK(sub.duplicates() == 0);
  CHECK(sub.lost() == 0);
  CHECK(state_of(sub, "acquire", "raw/home").gaps == 0);
}

TEST_CASE("first contact far into a publisher's life does not replay its history") {
  TempDir d;
  Publisher pub(d.path, "acquire");
  for (int i = 0; i < 300; ++i) publish(pub, "raw/home");
  Subscriber::Options so;
  so.replay = true;
  so.first_contact_max = 100;
  Subscriber sub(d.path, {"acquire"}, {"raw/"}, so);
  std::vector<Message> got;
  for (int i = 0; i < 50 && got.empty(); ++i) {
    publish(pub, "raw/home");
    got = drain(sub);
  }
  REQUIRE_FALSE(got.empty());
  CHECK(got[0].env.seq() > 300);
  CHECK_FALSE(got[0].replayed);
  CHECK(sub.replayed() == 0);
  CHECK(pub.replay_requests() == 0);
}

TEST_CASE("positions survive a restart of the subscriber through save/load") {
  TempDir d;
  Publisher pub(d.path, "process");
  const std::string file = d.path + "/pos";
  uint64_t last = 0;
  {
    Subscriber::Options so;
    so.replay = true;
    Subscriber sub(d.path, {"process"}, {"reading/"}, so);
    REQUIRE(wait_connected(pub, sub, "reading/home"));
    drain(sub);
    last = state_of(sub, "process", "reading/home").last_seq;
    REQUIRE(sub.save_positions(file));
  }
  for (int i = 0; i < 30; ++i) publish(pub, "reading/home");  // while "down"
  Subscriber::Options so;
  so.replay = true;
  Subscriber sub(d.path, {"process"}, {"reading/"}, so);
  CHECK(sub.load_positions(file) == 1);
  std::vector<Message> got;
  for (int i = 0; i < 50 && got.size() < 31; ++i) {
    publish(pub, "reading/home");
    auto more = drain(sub);
    got.insert(got.end(), std::make_move_iterator(more.begin()),
               std::make_move_iterator(more.end()));
  }
  REQUIRE(got.size() >= 31);
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i].env.seq() == last + 1 + i);
  CHECK(sub.lost() == 0);
  CHECK(sub.duplicates() == 0);
}

TEST_CASE("positions in run_dir are overwritten in place; a shorter save leaves no old line") {
  TempDir d;
  const std::string file = d.path + "/pos";
  std::map<Subscriber::Key, Subscriber::TopicState> three, one;
  for (int i = 0; i < 3; ++i)
    three[{"acquire", "raw/meter" + std::to_string(i)}] = {1000 + uint64_t(i), 123456789};
  one[{"acquire", "raw/meter1"}] = {2000, 7};
  REQUIRE(Subscriber::save_positions(file, three, false));
  struct stat before {};
  REQUIRE(::stat(file.c_str(), &before) == 0);
  REQUIRE(Subscriber::save_positions(file, one, false));
  struct stat after {};
  REQUIRE(::stat(file.c_str(), &after) == 0);
  CHECK(after.st_ino == before.st_ino);    // the same file: no temp file renamed over it
  CHECK(after.st_size == before.st_size);  // padded, not truncated
  CHECK_FALSE(std::filesystem::exists(file + ".tmp"));
  Subscriber sub(d.path, {}, {"raw/"}, {});
  CHECK(sub.load_positions(file) == 1);
  CHECK(state_of(sub, "acquire", "raw/meter1").instance == 2000);
  CHECK(state_of(sub, "acquire", "raw/meter1").last_seq == 7);

  // more than a page: written whole to a temp file and renamed, still read back
  std::map<Subscriber::Key, Subscriber::TopicState> many;
  for (int i = 0; i < 200; ++i) many[{"acquire", "raw/meter" + std::to_string(i)}] = {3000, 9};
  REQUIRE(Subscriber::save_positions(file, many, false));
  Subscriber sub2(d.path, {}, {"raw/"}, {});
  CHECK(sub2.load_positions(file) == 200);
  // and back to a small one, which replaces the large file
  REQUIRE(Subscriber::save_positions(file, one, false));
  Subscriber sub3(d.path, {}, {"raw/"}, {});
  CHECK(sub3.load_positions(file) == 1);
}
