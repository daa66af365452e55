// meterpipe-acquire: bytes from meters in, raw/<meter> frames out.
// One thread per runner (a P1 port, a Modbus bus, an M-Bus line; each protocol makes its
// own: protocols/registry.h); frames are published on the worker's bus publisher
// (thread-safe) and kept in the journal for upload (docs/ARCHITECTURE.md, "Durability").
// Sources reconnect by themselves; this file only wires.
#include <thread>
#include <vector>

#include "acquire/worker_runners.h"
#include "bus/worker.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/wake.h"
#include "journal/for_worker.h"

int main(int argc, char** argv) {
  mp::Worker w(argc, argv, "acquire");
  auto journal = mp::journal::open_for(w.cfg(), "acquire");
  mp::acquire::WorkerContext ctx(w, journal.get());
  std::vector<std::string> problems;
  auto runners = mp::acquire::make_runners(ctx, w.cfg(), problems);
  for (const auto& p : problems) mp::log::error("%s", p.c_str());
  std::vector<std::thread> threads;
  for (auto& r : runners) {
    const int slot = w.add_thread("source " + std::to_string(threads.size()));
    threads.emplace_back([&w, slot, rp = r.get()]() { rp->run(slot); });
  }
  while (w.running()) {
    w.sleep_until_due();  // the runners' counters changing bring the heartbeat forward
    mp::journal::report(w, journal.get());
    w.tick();
  }
  for (auto& t : threads) t.join();
  if (journal) journal->close();  // what is queued reaches the file
  return 0;
}
