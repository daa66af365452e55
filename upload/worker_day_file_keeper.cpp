#include "upload/worker_day_file_keeper.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>

#include "common/clock.h"
#include "common/log.h"

namespace mp::upload {

DayFileKeeper::DayFileKeeper(Worker& w, const config::Upload& uc, std::mutex& writer)
    : w_(w), dir_(uc.data_dir), writer_(writer) {
  opt_.keep_days = uc.keep_days;
  opt_.compress = uc.compress;
  opt_.writer_mutex = &writer_;
  opt_.keep_going = [this] { return !stop_flag_.load() && !g_stop.load(); };
}

void DayFileKeeper::start() {
  w_.count("day_files_compressed", 0);
  w_.count("day_files_deleted", 0);
  w_.count("day_files_errors", 0);
  thread_ = std::thread([this] { run(); });
}

void DayFileKeeper::stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_flag_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DayFileKeeper::run() {
  // Bulk disk I/O and compression: give way to the upload loop (and the other workers).
  (void)!setpriority(PRIO_PROCESS, pid_t(syscall(SYS_gettid)), 10);
  constexpr int64_t kHourNs = 3600LL * 1000000000LL;
  bool first = true;
  int64_t last_pass = 0, last_day = 0;
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_flag_) {
    lk.unlock();
    const int64_t mono = clock::mono_ns(), wall = clock::wall_ns();
    const int64_t today = utc_day(wall);
    if (first || today != last_day || mono - last_pass >= kHourNs) {
      pass(wall);
      first = false;
      last_pass = mono;
      last_day = today;
    } else {
      w_.gauge("data_dir_bytes", double(dir_bytes(dir_)));
    }
    lk.lock();
    cv_.wait_for(lk, std::chrono::seconds(60), [this] { return stop_flag_.load(); });
  }
}

void DayFileKeeper::pass(int64_t wall) {
  const auto st = retention_pass(dir_, wall, opt_);
  w_.count("day_files_compressed", st.compressed);
  w_.count("day_files_deleted", st.deleted);
  w_.count("day_files_errors", st.errors.size());
  w_.gauge("data_dir_bytes", double(st.dir_bytes));
  const std::string done = describe(st, opt_.keep_days);
  if (!done.empty()) log::info("%s", done.c_str());
  if (!st.errors.empty())
    log::warn("day files: %zu problem%s (files kept as they were): %s%s", st.errors.size(),
              st.errors.size() == 1 ? "" : "s", st.errors.front().c_str(),
              st.errors.size() > 1 ? "; ..." : "");
}

}  // namespace mp::upload
