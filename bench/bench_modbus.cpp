// Modbus TCP polling figures against the pymodbus peer (tests/integration/modbus_peer.py),
// and mbpoll (Debian) reading the same registers in the same run.
//
//   bench_modbus [seconds-per-phase]   (default 2)
//
// Prints: polls/s and CPU per poll for the full SDM630 plan (5 requests) and for the SDM530
// map coalesced into one 76-register request, then mbpoll reading the same 76 registers
// (38 floats from address 0), one process per poll.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "protocols/modbus/modbus_maps.h"
#include "protocols/modbus/modbus_poll.h"

#ifndef MP_SOURCE_DIR
#define MP_SOURCE_DIR "."
#endif

using namespace mp::modbus;

namespace {

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

bool can_connect(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

double cpu_s(int who) {
  rusage ru{};
  ::getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

pid_t spawn(const std::vector<std::string>& argv, bool quiet) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (quiet) {
      FILE* devnull = std::fopen("/dev/null", "w");
      if (devnull) ::dup2(::fileno(devnull), 1);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

struct Result {
  double polls_per_s, cpu_us_per_poll;
  long polls;
};

Result run_bus(int port, const std::string& type, uint16_t max_gap, double seconds) {
  BusConfig cfg;
  cfg.port = port;
  Bus bus(cfg);
  DeviceConfig d{"bench", 1, type, 1};
  d.plan.max_gap = max_gap;
  std::string err;
  if (!bus.add_device(d, err)) {
    std::fprintf(stderr, "bench_modbus: %s\n", err.c_str());
    std::exit(1);
  }
  long polls = 0, bad = 0;
  auto sink = [](const RawBlock&) {};
  bus.poll_device(0, sink);  // connect
  const double c0 = cpu_s(RUSAGE_SELF);
  const int64_t t0 = mp::clock::mono_ns();
  const int64_t end = t0 + static_cast<int64_t>(seconds * 1e9);
  while (mp::clock::mono_ns() < end) {
    if (!bus.poll_device(0, sink)) ++bad;
    ++polls;
  }
  const double wall = static_cast<double>(mp::clock::mono_ns() - t0) / 1e9;
  const double cpu = cpu_s(RUSAGE_SELF) - c0;
  if (bad) std::printf("  (%ld failed polls)\n", bad);
  return {static_cast<double>(polls) / wall, cpu / static_cast<double>(polls) * 1e6, polls};
}

}  // namespace

int main(int argc, char** argv) {
  mp::log::init("bench_modbus", mp::log::Level::warn);
  const double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;

  // Image: unit 1, input registers 0..0x16B, SDM630 values.
  const MeterMap& sdm = *find_map("sdm630");
  std::vector<uint16_t> regs(0x16C, 0);
  for (size_t i = 0; i < sdm.regs.size(); ++i) {
    const auto u = std::bit_cast<uint32_t>(200.0f + 0.5f * static_cast<float>(i));
    regs[sdm.regs[i].address] = static_cast<uint16_t>(u >> 16);
    regs[sdm.regs[i].address + 1u] = static_cast<uint16_t>(u);
  }
  std::string json = "{\"units\": {\"1\": {\"ir\": {";
  for (size_t a = 0; a < regs.size(); ++a)
    json += (a ? ", \"" : "\"") + std::to_string(a) + "\": " + std::to_string(regs[a]);
  json += "}}}}";
  char path[] = "/tmp/mp_bench_modbus_XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0 || ::write(fd, json.data(), json.size()) != static_cast<ssize_t>(json.size()))
    return 1;
  ::close(fd);

  const int port = free_port();
  const std::string script = std::string(MP_SOURCE_DIR) + "/tests/integration/modbus_peer.py";
  const pid_t peer =
      spawn({"/usr/bin/python3", script, "--port", std::to_string(port), "--image", path}, false);
  const int64_t deadline = mp::clock::mono_ns() + 15'000'000'000LL;
  while (!can_connect(port)) {
    if (mp::clock::mono_ns() > deadline) {
      std::fprintf(stderr, "peer did not start\n");
      ::kill(peer, SIGKILL);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  std::printf("modbus TCP against pymodbus 3.0 on 127.0.0.1 (%.1f s per phase)\n", seconds);
  const Result full = run_bus(port, "sdm630", 10, seconds);
  std::printf("meterpipe  sdm630 plan (5 requests, 96 regs): %8.1f polls/s  %7.1f us CPU/poll\n",
              full.polls_per_s, full.cpu_us_per_poll);
  const Result one = run_bus(port, "sdm530", 125, seconds);
  std::printf("meterpipe  sdm530 in 1 request (76 regs):     %8.1f polls/s  %7.1f us CPU/poll\n",
              one.polls_per_s, one.cpu_us_per_poll);

  // mbpoll: one call reads 38 floats (76 registers from address 0), the same registers as
  // the one-request SDM530 poll; spawned once per poll (how a script would use it).
  const std::vector<std::string> mb = {"/usr/bin/mbpoll",
                                       "-m",
                                       "tcp",
                                       "-a",
                                       "1",
                                       "-r",
                                       "1",
                                       "-c",
                                       "38",
                                       "-t",
                                       "3:float",
                                       "-B",
                                       "-1",
                                       "-p",
                                       std::to_string(port),
                                       "127.0.0.1"};
  if (::access("/usr/bin/mbpoll", X_OK) == 0) {
    long runs = 0, bad = 0;
    const double c0 = cpu_s(RUSAGE_CHILDREN);
    const int64_t t0 = mp::clock::mono_ns();
    const int64_t end = t0 + static_cast<int64_t>(seconds * 1e9);
    while (mp::clock::mono_ns() < end) {
      const pid_t p = spawn(mb, true);
      int st = 0;
      ::waitpid(p, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ++bad;
      ++runs;
    }
    const double wall = static_cast<double>(mp::clock::mono_ns() - t0) / 1e9;
    const double cpu = cpu_s(RUSAGE_CHILDREN) - c0;
    std::printf(
        "mbpoll -1  38 floats (76 regs), one process per poll: %8.1f polls/s  %7.1f us "
        "CPU/poll%s\n",
        static_cast<double>(runs) / wall, cpu / static_cast<double>(runs) * 1e6,
        bad ? "  (some failed)" : "");
  } else {
    std::printf("mbpoll not installed: skipped\n");
  }
  std::printf(
      "(CPU: this process for meterpipe, the mbpoll children for mbpoll; the peer's "
      "CPU is not counted; pymodbus is the bottleneck of both)\n");
  ::kill(peer, SIGKILL);
  int st = 0;
  ::waitpid(peer, &st, 0);
  ::unlink(path);
  return 0;
}
