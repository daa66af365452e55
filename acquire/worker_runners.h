// The per-meter loops of the acquire worker: read bytes, cut frames, publish raw/<meter>.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bus/worker.h"
#include "config/config.h"

namespace mp::journal {
class Writer;
}

namespace mp::acquire {

// Every frame the runners publish is also appended to `j` (docs/DURABILITY.md); nullptr: none.
// Set before the runners start.
void set_journal(journal::Writer* j);

class Runner {
 public:
  virtual ~Runner() = default;
  // Runs until the worker stops; calls w.progress(slot) at least once a second.
  virtual void run(int slot) = 0;
};

// The runner for one configured DSMR meter, or nullptr with `why` set.
std::unique_ptr<Runner> make_runner(Worker& w, const config::Meter& m, std::string& why);
// Runners for every configured meter: one per DSMR meter, one per Modbus bus (meters on the
// same TCP endpoint or serial line share it), one per M-Bus line. Problems: one line each.
std::vector<std::unique_ptr<Runner>> make_runners(Worker& w, std::vector<std::string>& problems);

}  // namespace mp::acquire
