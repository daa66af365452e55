// meterpipe-history: every meter's minutes and days, and the relay switches, in an SQLite
// database in state_dir (history/worker_history.h has the loop, docs/ARCHITECTURE.md the
// durability rules).
#include <cstdlib>

#include "bus/worker.h"
#include "history/worker_history.h"

int main(int argc, char** argv) {
  mp::Worker w(argc, argv, "history");
  // local days are those of general.timezone (history/days.h)
  if (!w.cfg().general.timezone.empty()) setenv("TZ", w.cfg().general.timezone.c_str(), 1);
  mp::history::HistoryWorker worker(w);
  return worker.run();
}
