// The supervisor: starts one process per enabled worker, restarts any that exits, dies or
// stops heartbeating, forwards their stderr line by line with the worker's name, answers
// `meterpipe status` on ipc://<run_dir>/supervisor.ctl, and stops everything on SIGTERM.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace mp::supervisor {

// Restart policy (pure): 0.1 s doubling to a 30 s cap; a worker that ran for at least
// 60 s before it exited starts again from 0.1 s.
struct Backoff {
  double initial_s = 0.1;
  double cap_s = 30;
  double stable_s = 60;
  int failures = 0;  // consecutive quick exits
  // Called when the worker exited after running `ran_s`; returns the delay before restart.
  double next(double ran_s);
};

// CPU placement (general.realtime_cpu), pure. The real-time path (acquire reads the meter,
// actuate switches) gets one CPU of its own; the other workers run on the remaining CPUs.
// Each ZeroMQ hop wakes an I/O thread on each side; when the whole chain sits on one CPU
// those wake-ups are plain context switches rather than cross-CPU interrupts, and bulk work
// (upload, gzip, spool writes, the web page) never competes with it.
struct CpuPlan {
  std::vector<int> realtime;  // empty: do not pin the real-time workers
  std::vector<int> others;    // empty: do not pin the other workers
  std::string warning;        // why the configured CPU is not used (empty when fine)
};
// `allowed`: the CPUs the supervisor may run on (sched_getaffinity), ascending.
// `realtime_cpu`: config::General::realtime_cpu (-2 auto, -1 off, else a CPU number).
CpuPlan plan_cpus(const std::vector<int>& allowed, int64_t realtime_cpu);
// acquire and actuate
bool is_realtime_worker(const std::string& name);
// "0-2,5" style list
std::string cpu_list(const std::vector<int>& cpus);

struct Options {
  std::string config_file;
  std::string bin_dir;  // where meterpipe-<worker> executables are
};

// Runs until SIGTERM/SIGINT; returns the process exit code (0 on a clean stop, 1 when it
// could not start: run_dir, missing worker binary ...; the reason is logged in one line).
int run(const config::Config& cfg, const Options& opt);

// Directory of the running executable (/proc/self/exe).
std::string self_dir();

}  // namespace mp::supervisor
