// Where upload delivers points: InfluxDB (HTTP) or the daily line-protocol files.
#pragma once

#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "upload/daily_files.h"
#include "upload/influx.h"
#include "upload/journal_feed.h"

namespace mp::upload {

class Target {
 public:
  virtual ~Target() = default;
  // Delivers points [begin, end). `ok`: the target holds them (in the page cache at least).
  virtual WriteResult deliver(const std::vector<Point>& points, size_t begin, size_t end) = 0;
  // Makes what was delivered survive a power cut; called before the cursors move past it.
  virtual void make_durable() {}
  // After a failed delivery: true when the target looks reachable again (a cheap probe).
  virtual bool probe() { return true; }
  // Makes a running deliver() or probe() return promptly (shutdown). Thread safe.
  virtual void abort() {}
  virtual std::string describe() const = 0;
};

class InfluxTarget : public Target {
 public:
  explicit InfluxTarget(InfluxConfig cfg) : client_(std::move(cfg)) {}
  std::string check() const { return client_.check(); }
  WriteResult deliver(const std::vector<Point>& points, size_t begin, size_t end) override;
  bool probe() override;  // GET /ping answers 2xx
  void abort() override { client_.abort(); }
  std::string describe() const override { return client_.write_url(); }

 private:
  InfluxClient client_;
  std::string body_;
};

// Daily files (upload/daily_files.h). A line already in the tail of today's or yesterday's file
// when the target was opened is not appended again: after a crash the points between the
// saved cursor and the crash are read again from the journal, and must not appear twice.
// The tails read are the last `tail_bytes` of the two newest plain day files: far more than
// the points of one cursor period (30 s).
class FileTarget : public Target {
 public:
  FileTarget(std::mutex& files_mu) : files_mu_(files_mu) {}
  bool open(const std::string& data_dir, std::string& error, size_t tail_bytes = 8 << 20);
  WriteResult deliver(const std::vector<Point>& points, size_t begin, size_t end) override;
  void make_durable() override;
  std::string describe() const override { return dir_; }
  uint64_t skipped_duplicates() const { return skipped_; }

 private:
  void load_tails(size_t tail_bytes);

  std::mutex& files_mu_;  // appends vs. the day-file keeper's unlink of a compressed day
  DailyFiles files_;
  std::string dir_;
  std::unordered_set<std::string> recent_;
  uint64_t skipped_ = 0;
};

}  // namespace mp::upload
