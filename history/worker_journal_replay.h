// What a crash of the whole pipeline took from the history worker: the readings after its
// last commit were only in memory (its pending minutes, process's replay ring). acquire's
// journal holds every raw frame on disk (docs/ARCHITECTURE.md, "Durability"), so at start the
// worker decodes it again, as upload does, and takes the readings newer than its own; the
// bus then brings what comes after. A cursor (`cursor.history`) lets the journal writer
// delete what history has taken.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/reading.h"
#include "config/config.h"
#include "journal/journal.h"
#include "process/decoder.h"

namespace mp::history {

struct ReplayStats {
  uint64_t records = 0, readings = 0, decode_errors = 0, bad_records = 0;
};

class JournalReplay {
 public:
  explicit JournalReplay(const config::Config& cfg);
  // Every reading in acquire's journal from history's cursor (its oldest record without one)
  // to its end, in order, to `take`; `progress` every 512 records (readings or not: a long
  // journal of frames that do not decode is no hang either). Nothing when there is no journal.
  ReplayStats read_all(const std::function<void(const Reading&)>& take,
                       const std::function<void()>& progress);
  // After a commit that holds every reading taken so far: the cursor moves to the start of the
  // segment that was the newest at the previous commit (all before it was taken then).
  void committed();

 private:
  std::string dir_;
  process::Decoders decoders_;
  uint64_t newest_at_last_commit_ = 0;
  journal::Position saved_;
};

}  // namespace mp::history
