// meterpipe-history: every meter's minutes and days, and the relay switches, in an SQLite
// database in state_dir (history/worker_history.h has the loop, docs/ARCHITECTURE.md the
// durability rules).
#include "bus/worker.h"
#include "history/worker_history.h"

int main(int argc, char** argv) {
  mp::Worker w(argc, argv, "history");  // (sets TZ: local days are those of general.timezone)
  mp::history::HistoryWorker worker(w);
  return worker.run();
}
