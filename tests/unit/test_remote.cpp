// Remote taps: key files (common/curve_keys.h) and the forwarder (bus/remote.h) with real
// ZeroMQ over tcp://127.0.0.1 and CurveZMQ: a bus::Publisher in a temporary run_dir, the
// forwarder polled on a thread, clients with a listed key, an unlisted key, no CURVE at
// all, and a key removed from authorized_keys_file while the forwarder runs.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>
#include <zmq_addon.hpp>

#include "bus/bus.h"
#include "bus/remote.h"
#include "common/curve_keys.h"
#include "common/fs.h"
#include "tests/harness/temp_dir.h"

namespace {

using mp::bus::Message;
using mp::bus::Publisher;
using mp::bus::RemoteForwarder;
using mp::bus::RemoteSubscriber;

struct TempDir : mp::test::TempDir {
  TempDir() : mp::test::TempDir("mprem") {}
};

struct KeyPair {
  std::string pub, sec;
  KeyPair() { REQUIRE(mp::bus::curve_keypair(pub, sec)); }
};

void write_file(const std::string& path, const std::string& text) {
  // a new file renamed into place, as an editor or `mv` would: a new inode and mtime
  const std::string tmp = path + ".new";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
  }
  REQUIRE(std::rename(tmp.c_str(), path.c_str()) == 0);
}

// The forwarder, polled on its own thread as the worker's loop would.
struct Running {
  RemoteForwarder fwd;
  std::atomic<bool> stop{false};
  std::thread thread;
  explicit Running(RemoteForwarder::Options o) : fwd(std::move(o)) {
    thread = std::thread([this] {
      while (!stop) fwd.poll(50);
    });
  }
  ~Running() {
    stop = true;
    thread.join();
  }
  // "127.0.0.1:PORT" of the bound endpoint
  std::string server() const { return fwd.endpoint().substr(std::string("tcp://").size()); }
};

void publish(Publisher& pub, const std::string& topic) {
  meterpipe::Envelope env;
  if (topic.rfind("reading/", 0) == 0) {
    env.mutable_reading()->set_meter("home");
  } else {
    env.mutable_raw()->set_source("home");
    env.mutable_raw()->set_data("x");
  }
  pub.publish(topic, env);
}

// Publishes reading/home and raw/home every 20 ms for `seconds` (or until `enough`
// returns true), collecting what `receive` gets meanwhile.
std::vector<Message> pump(Publisher& pub, double seconds,
                          const std::function<bool(Message&)>& receive,
                          const std::function<bool(const std::vector<Message>&)>& enough) {
  std::vector<Message> got;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    publish(pub, "reading/home");
    publish(pub, "raw/home");
    Message m;
    while (receive(m)) got.push_back(std::move(m));
    if (enough && enough(got)) break;
  }
  return got;
}

std::unique_ptr<RemoteSubscriber> client(const std::string& server, const KeyPair& server_key,
                                         const KeyPair& me, std::vector<std::string> prefixes) {
  RemoteSubscriber::Options o;
  o.server = server;
  o.server_key = server_key.pub;
  o.public_key = me.pub;
  o.secret_key = me.sec;
  o.prefixes = std::move(prefixes);
  return std::make_unique<RemoteSubscriber>(std::move(o));
}

}  // namespace

TEST_CASE("Z85 keys: 40 characters that decode to 32 bytes") {
  std::string bytes;
  // the test vector of ZeroMQ RFC 32
  REQUIRE(mp::keys::z85_decode("HelloWorld", bytes));
  CHECK(bytes == std::string("\x86\x4F\xD2\x6F\xB5\x59\xF7\x5B", 8));
  CHECK(mp::keys::z85_decode("Hello", bytes));
  CHECK_FALSE(mp::keys::z85_decode("Hell", bytes));    // not a multiple of 5
  CHECK_FALSE(mp::keys::z85_decode("Hell\"", bytes));  // '"' is not a Z85 character
  CHECK_FALSE(mp::keys::z85_decode("#####", bytes));   // 85^5 - 1 > 2^32 - 1
  KeyPair k;
  CHECK(mp::keys::valid_z85_key(k.pub));
  CHECK(mp::keys::valid_z85_key(k.sec));
  CHECK_FALSE(mp::keys::valid_z85_key(k.pub.substr(1)));
  CHECK_FALSE(mp::keys::valid_z85_key(k.pub + "0"));
  CHECK_FALSE(mp::keys::valid_z85_key(std::string(40, ' ')));
  std::string pub;
  REQUIRE(mp::bus::curve_public_key(k.sec, pub));
  CHECK(pub == k.pub);
  CHECK_FALSE(mp::bus::curve_public_key("short", pub));
  CHECK(mp::keys::key_hint(k.pub) == k.pub.substr(0, 8) + "...");
}

TEST_CASE("authorized_keys: comments, names, bad lines with their line numbers") {
  KeyPair a, b, c, secret;
  const std::vector<std::string> lines = {
      "# who may tap this meter",            // 1
      "",                                    // 2
      a.pub + " laptop",                     // 3
      "   " + b.pub + "   home server  \r",  // 4
      "not-a-key at all",                    // 5
      a.pub + " laptop again",               // 6
      "  # indented comment",                // 7
      c.pub,                                 // 8
      secret.sec.substr(0, 39),              // 9: a mangled paste
      c.pub + " # no name, a comment",       // 10 (same as 8)
  };
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  std::vector<mp::keys::Problem> problems;
  const auto keys = mp::keys::parse_authorized_keys(text, problems);
  REQUIRE(keys.size() == 3);
  CHECK(keys[0].key == a.pub);
  CHECK(keys[0].name == "laptop");
  CHECK(keys[0].line == 3);
  CHECK(keys[1].key == b.pub);
  CHECK(keys[1].name == "home server");
  CHECK(keys[1].line == 4);
  CHECK(keys[2].key == c.pub);
  CHECK(keys[2].name == "");
  CHECK(keys[2].line == 8);
  REQUIRE(problems.size() == 4);
  CHECK(problems[0].line == 5);
  CHECK(problems[0].message.find("not a public key") != std::string::npos);
  CHECK(problems[1].line == 6);
  CHECK(problems[1].message == "the same key as line 3");
  CHECK(problems[2].line == 9);
  CHECK(problems[3].line == 10);
  CHECK(problems[0].str().rfind("line 5: ", 0) == 0);
  for (const auto& p : problems)  // never the text of a line: it may be a secret
    CHECK(p.message.find(secret.sec.substr(0, 39)) == std::string::npos);

  problems.clear();
  CHECK(mp::keys::parse_authorized_keys("", problems).empty());
  CHECK(mp::keys::parse_authorized_keys("# nobody yet\n", problems).empty());
  CHECK(problems.empty());
}

TEST_CASE("key files: one key, comments and blank lines around it") {
  KeyPair k;
  std::string key;
  mp::keys::Problem p;
  CHECK(mp::keys::parse_key_text(k.sec + "\n", key, p));
  CHECK(key == k.sec);
  CHECK(mp::keys::parse_key_text("# made by keygen\n\n  " + k.pub + "  \r\n\n", key, p));
  CHECK(key == k.pub);
  CHECK_FALSE(mp::keys::parse_key_text("", key, p));
  CHECK(p.str() == "holds no key");
  CHECK_FALSE(mp::keys::parse_key_text("# only a comment\n", key, p));
  CHECK_FALSE(mp::keys::parse_key_text(k.sec + "\n" + k.pub + "\n", key, p));
  CHECK(p.line == 2);
  CHECK_FALSE(mp::keys::parse_key_text("\n" + k.sec.substr(0, 30) + "\n", key, p));
  CHECK(p.line == 2);
  CHECK(p.message.find(k.sec.substr(0, 30)) == std::string::npos);
  std::string text, err;
  CHECK_FALSE(mp::fs::read_file("/nonexistent/x.key", text, err));
  CHECK(err == "cannot read /nonexistent/x.key: No such file or directory");
}

TEST_CASE("remote forwarder: CURVE clients with a listed key only, revocation without restart") {
  TempDir dir;
  KeyPair server, a, b, c;
  const std::string auth = dir.path + "/authorized_keys";
  write_file(auth, "# test\n" + a.pub + " laptop\n");
  Publisher pub(dir.path, "process");

  RemoteForwarder::Options o;
  o.run_dir = dir.path;
  o.publishers = {"process"};
  o.listen = "127.0.0.1:*";  // a free port; endpoint() tells which
  o.secret_key = server.sec;
  o.authorized_keys_file = auth;
  o.keys_check_ms = 100;
  Running r(std::move(o));
  REQUIRE(r.fwd.endpoint().rfind("tcp://127.0.0.1:", 0) == 0);
  CHECK(r.fwd.stats().keys == 1);

  SUBCASE("a listed key gets what it subscribed to, and only that") {
    auto ca = client(r.server(), server, a, {"reading/"});
    auto got = pump(
        pub, 10, [&](Message& m) { return ca->receive(m, 20); },
        [](const std::vector<Message>& g) { return g.size() >= 5; });
    REQUIRE(got.size() >= 5);
    for (const auto& m : got) {
      CHECK(m.topic == "reading/home");
      CHECK(m.env.publisher() == "process");
      CHECK(m.env.reading().meter() == "home");
    }
    CHECK(ca->connected());
    CHECK(ca->failure().empty());
    const auto st = r.fwd.stats();
    CHECK(st.accepted >= 1);
    CHECK(st.rejected == 0);
    CHECK(st.forwarded >= 5);
    CHECK(st.subscriptions == 1);

    // a second client with the same key and another prefix gets raw/ only
    auto ca2 = client(r.server(), server, a, {"raw/"});
    auto got2 = pump(
        pub, 10, [&](Message& m) { return ca2->receive(m, 20); },
        [](const std::vector<Message>& g) { return g.size() >= 3; });
    REQUIRE(got2.size() >= 3);
    for (const auto& m : got2) CHECK(m.topic == "raw/home");
  }

  SUBCASE("an unlisted key gets nothing and is counted") {
    auto cb = client(r.server(), server, b, {""});
    // (until the refusal is known: a busy machine may take a while for the handshake)
    auto got = pump(
        pub, 5.0, [&](Message& m) { return cb->receive(m, 20); },
        [&](const std::vector<Message>&) { return !cb->failure().empty(); });
    CHECK(got.empty());
    CHECK(r.fwd.stats().rejected >= 1);
    CHECK(r.fwd.stats().accepted == 0);
    CHECK(cb->failure().find("refused this client's key") != std::string::npos);
    CHECK_FALSE(cb->connected());
  }

  SUBCASE("a client with the wrong server key gets nothing") {
    auto cw = client(r.server(), c, a, {""});  // c's public key is not the server's
    auto got = pump(
        pub, 1.0, [&](Message& m) { return cw->receive(m, 20); }, nullptr);
    CHECK(got.empty());
    CHECK(r.fwd.stats().accepted == 0);
  }

  SUBCASE("a client without CURVE gets nothing") {
    zmq::socket_t plain(mp::bus::context(), zmq::socket_type::sub);
    plain.set(zmq::sockopt::linger, 0);
    plain.set(zmq::sockopt::subscribe, "");
    plain.connect(r.fwd.endpoint());
    auto got = pump(
        pub, 1.0,
        [&](Message& m) {
          std::vector<zmq::message_t> parts;
          if (!zmq::recv_multipart(plain, std::back_inserter(parts), zmq::recv_flags::dontwait))
            return false;
          m.topic = parts[0].to_string();
          return true;
        },
        nullptr);
    CHECK(got.empty());
    CHECK(r.fwd.stats().accepted == 0);
  }

  SUBCASE("removing a key from the file cuts that client off, without a restart") {
    auto ca = client(r.server(), server, a, {"reading/"});
    auto got = pump(
        pub, 10, [&](Message& m) { return ca->receive(m, 20); },
        [](const std::vector<Message>& g) { return !g.empty(); });
    REQUIRE_FALSE(got.empty());

    write_file(auth, "# a revoked\n" + c.pub + " phone\n");
    for (int i = 0; i < 100 && r.fwd.stats().key_reloads == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    REQUIRE(r.fwd.stats().key_reloads == 1);
    CHECK(r.fwd.stats().keys == 1);
    CHECK(r.fwd.stats().disconnects == 1);

    // the connected client was dropped and is refused when it reconnects
    Message m;
    while (ca->receive(m, 0)) {
    }
    got = pump(
        pub, 5.0, [&](Message& mm) { return ca->receive(mm, 20); },
        [&](const std::vector<Message>&) { return !ca->failure().empty(); });
    CHECK(got.empty());
    CHECK(ca->failure().find("refused") != std::string::npos);
    // a new connection with that key is refused
    auto ca_new = client(r.server(), server, a, {""});
    got = pump(
        pub, 5.0, [&](Message& mm) { return ca_new->receive(mm, 20); },
        [&](const std::vector<Message>&) { return !ca_new->failure().empty(); });
    CHECK(got.empty());
    CHECK(ca_new->failure().find("refused") != std::string::npos);
    // the key now listed gets in
    auto cc = client(r.server(), server, c, {"reading/"});
    got = pump(
        pub, 10, [&](Message& mm) { return cc->receive(mm, 20); },
        [](const std::vector<Message>& g) { return g.size() >= 2; });
    CHECK(got.size() >= 2);
    CHECK(r.fwd.stats().rejected >= 2);
  }
}

TEST_CASE("remote forwarder: an unreadable authorized_keys_file lets nobody in") {
  TempDir dir;
  KeyPair server, a;
  const std::string auth = dir.path + "/authorized_keys";
  write_file(auth, a.pub + "\n");
  Publisher pub(dir.path, "process");
  RemoteForwarder::Options o;
  o.run_dir = dir.path;
  o.publishers = {"process"};
  o.listen = "127.0.0.1:*";
  o.secret_key = server.sec;
  o.authorized_keys_file = auth;
  o.keys_check_ms = 50;
  Running r(std::move(o));
  std::filesystem::remove(auth);
  for (int i = 0; i < 100 && r.fwd.stats().key_reloads == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE(r.fwd.stats().key_reloads == 1);
  CHECK(r.fwd.stats().keys == 0);
  auto ca = client(r.server(), server, a, {""});
  auto got = pump(
      pub, 1.0, [&](Message& m) { return ca->receive(m, 20); }, nullptr);
  CHECK(got.empty());
  CHECK(r.fwd.stats().rejected >= 1);
}

TEST_CASE("remote forwarder: bad options are clear errors") {
  TempDir dir;
  KeyPair server;
  RemoteForwarder::Options o;
  o.run_dir = dir.path;
  o.listen = "127.0.0.1:*";
  o.secret_key = "not a key";
  o.authorized_keys_file = dir.path + "/none";
  CHECK_THROWS_WITH_AS(RemoteForwarder{o}, "the server's secret key is not a Z85 CurveZMQ key",
                       std::runtime_error);
  o.secret_key = server.sec;
  o.listen = "192.0.2.1:7558";  // not an address of this machine
  CHECK_THROWS_AS(RemoteForwarder{o}, std::runtime_error);
  // a client with a bad key never touches the network
  RemoteSubscriber::Options so;
  so.server = "127.0.0.1:1";
  so.server_key = "short";
  so.public_key = server.pub;
  so.secret_key = server.sec;
  CHECK_THROWS_AS(RemoteSubscriber{so}, std::runtime_error);
}
