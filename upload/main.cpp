// meterpipe-upload: reading/* (and relay/*) from the bus into InfluxDB or daily files.
// Every point goes to the disk spool the moment it comes off the bus; a separate sender
// thread drains the spool, so a slow or dead server never makes this loop miss messages.
// The bus position is saved after each spool sync, so a restarted uploader asks process
// (and actuate) to replay what it missed.
// With target = "file", a low-priority thread compresses finished day files and deletes old
// ones (upload/day_retention.h: compress, keep_days).
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "bus/worker.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/rate_limit.h"
#include "upload/daily_files.h"
#include "upload/day_retention.h"
#include "upload/line_protocol.h"
#include "upload/sender.h"
#include "upload/spool.h"

namespace {

using mp::bus::Subscriber;

std::string relay_line(const meterpipe::Envelope& env, mp::upload::Precision p) {
  const auto& r = env.relay();
  std::string line;
  mp::upload::append_measurement(line, "relay");
  line += ",relay=";
  if (!mp::upload::append_key(line, r.relay())) return {};
  line += " state=";
  line += r.new_state() ? "1i" : "0i";
  line += ",ok=";
  line += r.ok() ? "true" : "false";
  line += ",mode=";
  if (!mp::upload::append_string_field(line, r.mode())) return {};
  line += ",reason=";
  if (!mp::upload::append_string_field(line, r.reason())) return {};
  line += ' ';
  line += std::to_string(mp::upload::convert_time(env.send_time_ns(), p));
  return line;
}

// Runs retention passes over the day files on its own thread: one at start, then about once
// an hour and whenever the UTC day changes (checked every minute). A pass is abandoned within
// one 64 KiB chunk when the worker stops (its temp file is removed; the next run redoes it).
// Health: counters day_files_compressed, day_files_deleted, day_files_errors; gauge
// data_dir_bytes (every regular file in data_dir, refreshed every minute).
class DayFileKeeper {
 public:
  DayFileKeeper(mp::Worker& w, const mp::config::Upload& uc, std::mutex& writer)
      : w_(w), dir_(uc.data_dir), writer_(writer) {
    opt_.keep_days = uc.keep_days;
    opt_.compress = uc.compress;
    opt_.writer_mutex = &writer_;
    opt_.keep_going = [this] { return !stop_flag_.load() && !mp::g_stop.load(); };
  }
  ~DayFileKeeper() { stop(); }
  DayFileKeeper(const DayFileKeeper&) = delete;
  DayFileKeeper& operator=(const DayFileKeeper&) = delete;

  void start() {
    w_.count("day_files_compressed", 0);
    w_.count("day_files_deleted", 0);
    w_.count("day_files_errors", 0);
    thread_ = std::thread([this] { run(); });
  }
  // Prompt: a pass in progress stops at its next chunk.
  void stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_flag_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    // Bulk disk I/O and compression: give way to the bus loop (and the other workers).
    (void)!setpriority(PRIO_PROCESS, pid_t(syscall(SYS_gettid)), 10);
    constexpr int64_t kHourNs = 3600LL * 1000000000LL;
    bool first = true;
    int64_t last_pass = 0, last_day = 0;
    std::unique_lock<std::mutex> lk(mu_);
    while (!stop_flag_) {
      lk.unlock();
      const int64_t mono = mp::clock::mono_ns(), wall = mp::clock::wall_ns();
      const int64_t today = mp::upload::utc_day(wall);
      if (first || today != last_day || mono - last_pass >= kHourNs) {
        pass(wall);
        first = false;
        last_pass = mono;
        last_day = today;
      } else {
        w_.gauge("data_dir_bytes", double(mp::upload::dir_bytes(dir_)));
      }
      lk.lock();
      cv_.wait_for(lk, std::chrono::seconds(60), [this] { return stop_flag_.load(); });
    }
  }

  void pass(int64_t wall) {
    const auto st = mp::upload::retention_pass(dir_, wall, opt_);
    w_.count("day_files_compressed", st.compressed);
    w_.count("day_files_deleted", st.deleted);
    w_.count("day_files_errors", st.errors.size());
    w_.gauge("data_dir_bytes", double(st.dir_bytes));
    const std::string done = mp::upload::describe(st, opt_.keep_days);
    if (!done.empty()) mp::log::info("%s", done.c_str());
    if (!st.errors.empty())
      mp::log::warn("day files: %zu problem%s (files kept as they were): %s%s", st.errors.size(),
                    st.errors.size() == 1 ? "" : "s", st.errors.front().c_str(),
                    st.errors.size() > 1 ? "; ..." : "");
  }

  mp::Worker& w_;
  const std::string dir_;
  std::mutex& writer_;
  mp::upload::RetentionOptions opt_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_flag_{false};
};

}  // namespace

int main(int argc, char** argv) {
  mp::Worker w(argc, argv, "upload");
  const auto& uc = w.cfg().upload;

  mp::upload::LineProtocolOptions lp;
  lp.measurement = uc.measurement;
  lp.tags = uc.tags;
  mp::upload::parse_precision(uc.precision, lp.precision);
  if (auto e = mp::upload::check_options(lp); !e.empty()) {
    mp::log::error("upload: %s", e.c_str());
    return 2;
  }

  const bool to_files = uc.target == "file";
  mp::upload::Spool spool;
  mp::upload::DailyFiles files;
  std::unique_ptr<mp::upload::Sender> sender;
  std::mutex files_mu;  // appends vs. the keeper's unlink of a compressed day file
  std::unique_ptr<DayFileKeeper> keeper;
  std::string err;
  std::string state_dir;
  if (to_files) {
    if (!files.open(uc.data_dir, &err)) {
      mp::log::error("upload: data_dir %s: %s", uc.data_dir.c_str(), err.c_str());
      return 1;
    }
    state_dir = uc.data_dir;
    mp::log::info("writing daily line-protocol files to %s", uc.data_dir.c_str());
    keeper = std::make_unique<DayFileKeeper>(w, uc, files_mu);
    keeper->start();
  } else {
    if (!spool.open(uc.spool_dir, uint64_t(uc.spool_max_mb) << 20, 0, &err)) {
      mp::log::error("upload: spool_dir %s: %s", uc.spool_dir.c_str(), err.c_str());
      return 1;
    }
    state_dir = uc.spool_dir;
    mp::upload::InfluxConfig ic;
    ic.api = uc.target == "influxdb1" ? mp::upload::InfluxConfig::Api::v1
                                      : mp::upload::InfluxConfig::Api::v2;
    ic.url = uc.url;
    ic.db = uc.database;
    ic.rp = uc.retention_policy;
    ic.user = uc.username;
    ic.org = uc.org;
    ic.bucket = uc.bucket;
    ic.precision = lp.precision;
    ic.verify_tls = uc.tls_verify;
    ic.ca_file = uc.ca_file;
    if (!uc.tls_verify && uc.url.rfind("https:", 0) == 0)
      mp::log::warn("upload: tls_verify = false: the server's certificate is not checked, "
                    "anyone on the way can pose as %s and read the credentials",
                    uc.url.c_str());
    ic.gzip = uc.gzip;
    ic.request_timeout_ms = long(uc.timeout_s * 1000);
    std::string serr;
    if (auto t = mp::config::resolve_secret(uc.token_file, uc.token_env, serr))
      ic.token = *t;
    else
      mp::log::error("upload: token: %s (points are kept in the spool)", serr.c_str());
    if (auto p = mp::config::resolve_secret(uc.password_file, uc.password_env, serr))
      ic.password = *p;
    else
      mp::log::error("upload: password: %s (points are kept in the spool)", serr.c_str());
    mp::upload::SenderOptions so;
    so.batch_points = size_t(uc.batch_size);
    so.batch_age_ms = int64_t(uc.batch_age_s * 1000);
    sender = std::make_unique<mp::upload::Sender>(spool, ic, so);
    if (auto c = sender->check(); !c.empty()) {
      mp::log::error("upload: %s", c.c_str());
      return 2;
    }
    const auto st = spool.stats();
    mp::log::info("sending to %s (%s); spool %s holds %llu unsent points", uc.url.c_str(),
                  uc.target.c_str(), uc.spool_dir.c_str(), (unsigned long long)st.points_pending);
    sender->start();
  }

  Subscriber::Options so;
  so.replay = true;
  Subscriber sub(w.cfg().general.run_dir, {"process", "actuate"}, {"reading/", "relay/"}, so);
  const std::string pos_file = state_dir + "/bus.position";
  if (size_t n = sub.load_positions(pos_file))
    mp::log::info("resuming after %zu saved bus positions", n);

  mp::LogLimiter limiter;
  uint64_t points = 0, refused = 0;
  int64_t last_save = 0;
  uint64_t saved_points = 0;
  bool store_failing = false;
  auto store = [&](const std::string& line, int64_t t) {
    bool ok;
    if (to_files) {
      std::lock_guard<std::mutex> l(files_mu);
      ok = files.append(line, t);
    } else {
      ok = spool.append(line, t);
    }
    if (ok) {
      ++points;
    } else {
      if (!store_failing)
        mp::log::error("cannot write to %s (disk full or failing?)",
                       to_files ? uc.data_dir.c_str() : uc.spool_dir.c_str());
      store_failing = true;
    }
    return ok;
  };
  while (w.running()) {
    mp::bus::Message m;
    bool got = sub.receive(m, std::min(w.wait_ms(), 200));
    while (got) {
      if (m.env.has_reading()) {
        auto res = mp::upload::encode(m.env.reading(), lp);
        uint64_t held;
        if (!res.ok()) {
          ++refused;
          if (limiter.allow("encode", mp::clock::mono_ns(), held))
            mp::log::warn("reading from %s not stored: %s", m.env.reading().meter().c_str(),
                          res.error.c_str());
        }
        for (const auto& p : res.points) store(p.line, p.time_ns);
      } else if (m.env.has_relay()) {
        std::string line = relay_line(m.env, lp.precision);
        if (!line.empty()) store(line, m.env.send_time_ns());
      }
      got = sub.receive(m, 0);
    }
    if (sender) sender->notify();
    const int64_t now = mp::clock::mono_ns();
    if (to_files) files.maybe_sync(now);  // the sender thread does this for the spool
    if (store_failing) {
      // A point could not be written. Never save a position past it: exit, and the
      // restarted uploader asks process for everything after the last saved position
      // (the supervisor restarts us with backoff while the disk stays full).
      mp::log::error("stopping after write errors; the restart re-reads the bus from the last "
                     "saved position");
      if (sender) sender->stop();
      return 1;
    }
    if (now - last_save >= 10000000000LL && points != saved_points) {
      // Spool first, then the position that says those points are safe. Every 10 s (and
      // at exit): a position that lags only means replayed duplicates, which InfluxDB
      // absorbs, while each save costs an SD card page writes.
      if (to_files)
        files.sync();
      else
        spool.sync();
      sub.save_positions(pos_file);
      last_save = now;
      saved_points = points;
    }
    w.set_counter("points_received", points);
    w.set_counter("readings_refused", refused);
    w.set_counter("bus_lost", sub.lost());
    w.set_counter("bus_replayed", sub.replayed());
    if (sender) {
      const auto st = sender->stats();
      w.set_counter("points_sent", st.points_sent);
      w.set_counter("points_retried", st.points_retried);
      w.set_counter("dropped_bad_data", st.dropped_bad_data);
      w.set_counter("dropped_spool_full", st.dropped_spool_full);
      w.gauge("spool_bytes", double(st.spool_bytes));
      w.gauge("points_pending", double(st.points_pending));
      w.gauge("oldest_unsent_age_s", st.oldest_unsent_age_s);
      w.info("last_error", st.last_error);
    }
    w.tick();
  }
  if (sender) sender->stop();
  if (keeper) keeper->stop();
  if (to_files)
    files.sync();
  else
    spool.sync();
  sub.save_positions(pos_file);
  mp::log::info("stopped: %llu points stored this run", (unsigned long long)points);
  return 0;
}
