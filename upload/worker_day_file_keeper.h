// Runs retention passes over the day files on its own thread: one at start, then about once
// an hour and whenever the UTC day changes (checked every minute). A pass is abandoned within
// one 64 KiB chunk when the worker stops (its temp file is removed; the next run redoes it).
// Health: counters day_files_compressed, day_files_deleted, day_files_errors; gauge
// data_dir_bytes (every regular file in data_dir, refreshed every minute).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "bus/worker.h"
#include "upload/day_retention.h"

namespace mp::upload {

class DayFileKeeper {
 public:
  // `writer`: held by whoever appends to the day files while a pass unlinks one.
  DayFileKeeper(Worker& w, const config::Upload& uc, std::mutex& writer);
  ~DayFileKeeper() { stop(); }
  DayFileKeeper(const DayFileKeeper&) = delete;
  DayFileKeeper& operator=(const DayFileKeeper&) = delete;

  void start();
  // Prompt: a pass in progress stops at its next chunk.
  void stop();

 private:
  void run();
  void pass(int64_t wall);

  Worker& w_;
  const std::string dir_;
  std::mutex& writer_;
  RetentionOptions opt_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_flag_{false};
};

}  // namespace mp::upload
