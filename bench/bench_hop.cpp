// What one bus hop costs at a meter's pace (issue 22): a publisher process sends one
// telegram-sized message every --period-ms to --subscribers processes, each waiting for it;
// printed is the CPU time per message of each process, all its threads (ZeroMQ's I/O thread
// too), from /proc/<pid>/task/*/schedstat (ns). Side by side, the same hop over a plain Unix
// datagram socket (no I/O thread, no framing): the floor a hop between processes costs here.
//
//   bus    bus::Publisher -> bus::Subscriber (ipc://, as between the workers), the
//          subscriber in receive(-1) as a worker's loop waits
//   unix   sendto() on an AF_UNIX SOCK_DGRAM socket per subscriber -> recv() blocking
//
// Messages 1 s apart find caches cold (the machine idled in between); the same hop 1 ms
// apart shows what the work itself costs. Figures, not assertions.
//
// A subscriber that did not get every message (it died) shows -1.
//
// usage: bench_hop [--messages 20] [--period-ms 1000] [--subscribers 2] [--bytes 900]
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "bus/bus.h"

namespace {

struct Args {
  int messages = 20;
  int period_ms = 1000;
  int subscribers = 2;
  size_t bytes = 900;
};

int64_t cpu_ns(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  int64_t sum = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    FILE* f = std::fopen((e.path() / "schedstat").c_str(), "r");
    if (!f) continue;
    long long ns = 0;
    if (std::fscanf(f, "%lld", &ns) == 1) sum += ns;
    std::fclose(f);
  }
  return sum;
}

// A child waits for `n` messages on its own end, then tells the parent through `done`.
struct Child {
  pid_t pid = -1;
  int done = -1;  // read end: one byte per message taken
};

// Waits for the child's 'x' (it has every message); false when the child is gone.
bool wait_done(int fd) {
  char c = 0;
  for (;;) {
    const ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    if (c == 'x') return true;  // a late 'j' of the joins is skipped
  }
}

// In a child: dies with the parent (a benchmark killed half way leaves no child behind).
void die_with_parent() { ::prctl(PR_SET_PDEATHSIG, SIGKILL); }

// Empties a child's pipe of bytes for messages taken before the measurement.
void drain(int fd) {
  pollfd pf{fd, POLLIN, 0};
  char buf[256];
  while (::poll(&pf, 1, 200) > 0 && ::read(fd, buf, sizeof buf) > 0) {
  }
}

meterpipe::Envelope frame(size_t bytes) {
  meterpipe::Envelope env;
  auto* raw = env.mutable_raw();
  raw->set_source("home");
  raw->set_protocol("dsmr");
  raw->set_data(std::string(bytes, 'Z'));
  raw->set_receive_time_ns(1);
  raw->set_receive_mono_ns(1);
  return env;
}

// ---- bus

Child bus_child(const std::string& run_dir, int total) {
  int p[2];
  if (::pipe(p) != 0) std::exit(1);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    std::exit(1);  // children made before die with us (die_with_parent)
  }
  if (pid == 0) {
    die_with_parent();
    ::close(p[0]);
    mp::bus::Subscriber sub(run_dir, {"acquire"}, {"raw/"});
    mp::bus::Message m;
    for (int i = 0; i < total;) {
      if (!sub.receive(m, -1)) continue;
      if (m.topic == "raw/join") {
        (void)!::write(p[1], "j", 1);
        continue;
      }
      ++i;
    }
    (void)!::write(p[1], "x", 1);
    for (;;) ::pause();  // until the parent has read our CPU time
  }
  ::close(p[1]);
  return {pid, p[0]};
}

// ---- unix datagrams

Child unix_child(const std::string& path, int total, size_t bytes) {
  int p[2];
  if (::pipe(p) != 0) std::exit(1);
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) std::exit(1);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    std::exit(1);
  }
  if (pid == 0) {
    die_with_parent();
    ::close(p[0]);
    std::vector<char> buf(bytes + 1024);
    for (int i = 0; i < total; ++i) {
      while (::recv(fd, buf.data(), buf.size(), 0) < 0 && errno == EINTR) {
      }
    }
    (void)!::write(p[1], "x", 1);
    for (;;) ::pause();  // until the parent has read our CPU time
  }
  ::close(fd);
  ::close(p[1]);
  return {pid, p[0]};
}

struct Result {
  double pub_us = 0;
  std::vector<double> sub_us;
};

// The children count the messages and say when they have all of them: the publisher's
// CPU is its wake-up after the period and the send, as for a worker with a meter.
template <class Send>
Result run(const Args& a, std::vector<Child>& kids, int warmup, Send send) {
  for (int i = 0; i < warmup; ++i) {  // first-time costs, not measured
    send();
    std::this_thread::sleep_for(std::chrono::milliseconds(a.period_ms));
  }
  std::vector<int64_t> s0;  // the children first: reading /proc costs the reader
  for (auto& k : kids) s0.push_back(cpu_ns(k.pid));
  const int64_t p0 = cpu_ns(::getpid());
  for (int i = 0; i < a.messages; ++i) {
    send();
    std::this_thread::sleep_for(std::chrono::milliseconds(a.period_ms));
  }
  Result r;
  r.pub_us = double(cpu_ns(::getpid()) - p0) / 1e3 / a.messages;
  for (size_t i = 0; i < kids.size(); ++i) {
    const bool done = wait_done(kids[i].done);
    r.sub_us.push_back(done ? double(cpu_ns(kids[i].pid) - s0[i]) / 1e3 / a.messages : -1);
  }
  return r;
}

void reap(std::vector<Child>& kids) {
  for (auto& k : kids) {
    if (k.pid <= 0) continue;
    ::kill(k.pid, SIGKILL);  // a pid > 0 from our own fork()
    int st = 0;
    ::waitpid(k.pid, &st, 0);
    ::close(k.done);
  }
}

void print(const char* name, const Result& r) {
  double subs = 0;
  std::printf("| %s | %.1f |", name, r.pub_us);
  for (double s : r.sub_us) {
    std::printf(" %.1f |", s);
    subs += s;
  }
  std::printf(" %.1f |\n", r.pub_us + subs);
}

Result bus_hop(const Args& a, const std::string& dir, int warmup) {
  const int total = warmup + a.messages;
  std::vector<Child> kids;
  for (int i = 0; i < a.subscribers; ++i) kids.push_back(bus_child(dir, total));
  Result r;
  {
    mp::bus::Publisher pub(dir, "acquire");
    meterpipe::Envelope env = frame(a.bytes);
    // slow joiners: raw/join until every subscriber took one (not counted)
    for (auto& k : kids) {
      for (;;) {
        pub.publish("raw/join", env);
        pollfd pf{k.done, POLLIN, 0};
        if (::poll(&pf, 1, 20) > 0) break;
      }
    }
    for (auto& k : kids) drain(k.done);
    r = run(a, kids, warmup, [&] { pub.publish("raw/home", env); });
  }
  reap(kids);
  return r;
}

Result unix_hop(const Args& a, const std::string& dir, int warmup) {
  const int total = warmup + a.messages;
  std::vector<Child> kids;
  std::vector<std::string> paths;
  for (int i = 0; i < a.subscribers; ++i) {
    paths.push_back(dir + "/sub" + std::to_string(i));
    kids.push_back(unix_child(paths.back(), total, a.bytes));
  }
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const std::string msg(a.bytes, 'Z');
  Result r = run(a, kids, warmup, [&] {
    for (const auto& p : paths) {
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", p.c_str());
      (void)!::sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    }
  });
  ::close(fd);
  reap(kids);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (argc % 2 == 0) {
    std::fprintf(
        stderr, "usage: bench_hop [--messages N] [--period-ms MS] [--subscribers N] [--bytes N]\n");
    return 2;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--messages")
      a.messages = std::max(1, v);
    else if (k == "--period-ms")
      a.period_ms = std::max(0, v);
    else if (k == "--subscribers")
      a.subscribers = std::clamp(v, 1, 8);
    else if (k == "--bytes")
      a.bytes = size_t(std::max(1, v));
    else {
      std::fprintf(
          stderr,
          "usage: bench_hop [--messages N] [--period-ms MS] [--subscribers N] [--bytes N]\n");
      return 2;
    }
  }
  char tmpl[] = "/tmp/mphop.XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  const std::string dir = tmpl;
  std::printf("# one hop, %d messages of %zu bytes, %d ms apart, %d subscriber processes\n",
              a.messages, a.bytes, a.period_ms, a.subscribers);
  std::printf("# CPU per message (us, all threads of each process)\n");
  std::printf("| transport | publisher |");
  for (int i = 0; i < a.subscribers; ++i) std::printf(" subscriber %d |", i + 1);
  std::printf(" total |\n|---|---|");
  for (int i = 0; i < a.subscribers; ++i) std::printf("---|");
  std::printf("---|\n");
  std::fflush(stdout);
  const int warmup = 3;
  // each transport from a fresh process: nothing of one (ZeroMQ's threads) in the other's
  for (int t = 0; t < 2; ++t) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (t == 0)
        print("bus (ZeroMQ PUB/SUB, ipc)", bus_hop(a, dir, warmup));
      else
        print("Unix datagram socket", unix_hop(a, dir, warmup));
      std::fflush(stdout);
      ::_exit(0);
    }
    int st = 0;
    if (pid > 0) ::waitpid(pid, &st, 0);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
