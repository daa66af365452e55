// The upload worker: journals (acquire's raw frames, actuate's relay events) -> InfluxDB or
// daily files (docs/DURABILITY.md). upload/uploader.h runs on its own thread, so a hanging
// server never stops the heartbeat; this class wires it and reports its health.
#pragma once

#include <memory>
#include <mutex>

#include "bus/worker.h"
#include "upload/journal_feed.h"
#include "upload/targets.h"
#include "upload/uploader.h"
#include "upload/worker_day_file_keeper.h"

namespace mp::upload {

class UploadWorker {
 public:
  explicit UploadWorker(Worker& w) : w_(w) {}
  // Runs until the worker stops; the process exit code.
  int run();

 private:
  bool make_line_options();
  bool make_target();
  bool make_influx_target();
  void make_feed();
  UploaderOptions uploader_options() const;
  void report(const Uploader& up);

  Worker& w_;
  LineProtocolOptions lp_;
  std::unique_ptr<JournalFeed> feed_;
  std::unique_ptr<Target> target_;
  FileTarget* files_ = nullptr;  // target_ when target = "file"
  std::mutex files_mu_;          // appends vs. the keeper's unlink of a compressed day file
  std::unique_ptr<DayFileKeeper> keeper_;
};

}  // namespace mp::upload
