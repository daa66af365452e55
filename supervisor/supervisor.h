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
