#include "upload/worker_upload.h"

#include <unistd.h>

#include <algorithm>
#include <thread>

#include "common/clock.h"
#include "common/log.h"
#include "common/wake.h"
#include "journal/for_worker.h"

namespace mp::upload {

bool UploadWorker::make_line_options() {
  const auto& uc = w_.cfg().upload;
  lp_.measurement = uc.measurement;
  lp_.tags = uc.tags;
  parse_precision(uc.precision, lp_.precision);
  if (auto e = check_options(lp_); !e.empty()) {
    log::error("upload: %s", e.c_str());
    return false;
  }
  return true;
}

void UploadWorker::make_feed() {
  const auto& cfg = w_.cfg();
  feed_ = std::make_unique<JournalFeed>(cfg, lp_);
  feed_->add_source(journal::dir_of(cfg, "acquire"), JournalFeed::Kind::raw_frames);
  if (!cfg.relays.empty())
    feed_->add_source(journal::dir_of(cfg, "actuate"), JournalFeed::Kind::relay_events);
}

bool UploadWorker::make_influx_target() {
  const auto& uc = w_.cfg().upload;
  InfluxConfig ic;
  ic.api = uc.target == "influxdb1" ? InfluxConfig::Api::v1 : InfluxConfig::Api::v2;
  ic.url = uc.url;
  ic.db = uc.database;
  ic.rp = uc.retention_policy;
  ic.user = uc.username;
  ic.org = uc.org;
  ic.bucket = uc.bucket;
  ic.precision = lp_.precision;
  ic.verify_tls = uc.tls_verify;
  ic.ca_file = uc.ca_file;
  if (!uc.tls_verify && uc.url.rfind("https:", 0) == 0)
    log::warn(
        "upload: tls_verify = false: the server's certificate is not checked, anyone on "
        "the way can pose as %s and read the credentials",
        uc.url.c_str());
  ic.gzip = uc.gzip;
  ic.request_timeout_ms = long(uc.timeout_s * 1000);
  std::string serr;
  if (!config::resolve_secret(uc.token_file, uc.token_env, ic.token, serr))
    log::error("upload: token: %s (points are kept in the journal)", serr.c_str());
  if (!config::resolve_secret(uc.password_file, uc.password_env, ic.password, serr))
    log::error("upload: password: %s (points are kept in the journal)", serr.c_str());
  auto t = std::make_unique<InfluxTarget>(ic);
  if (auto c = t->check(); !c.empty()) {
    log::error("upload: %s", c.c_str());
    return false;
  }
  log::info("sending to %s (%s)", uc.url.c_str(), uc.target.c_str());
  target_ = std::move(t);
  return true;
}

bool UploadWorker::make_target() {
  const auto& uc = w_.cfg().upload;
  if (uc.target != "file") return make_influx_target();
  auto t = std::make_unique<FileTarget>(files_mu_);
  std::string err;
  if (!t->open(uc.data_dir, err)) {
    log::error("upload: data_dir %s: %s", uc.data_dir.c_str(), err.c_str());
    return false;
  }
  log::info("writing daily line-protocol files to %s", uc.data_dir.c_str());
  files_ = t.get();
  target_ = std::move(t);
  keeper_ = std::make_unique<DayFileKeeper>(w_, uc, files_mu_);
  keeper_->start();
  return true;
}

UploaderOptions UploadWorker::uploader_options() const {
  const auto& uc = w_.cfg().upload;
  UploaderOptions o;
  // files too are written a batch at a time (at most batch_age_s after a point came): one
  // wake per batch instead of one per point (issue 22)
  o.batch_points = files_ ? std::min<size_t>(1000, size_t(uc.batch_size)) : size_t(uc.batch_size);
  o.batch_age_ms = int64_t(uc.batch_age_s * 1000);
  o.deliver_at_stop = files_ != nullptr;  // a stopped pipeline's day file ends with its points
  return o;
}

void UploadWorker::report(const Uploader& up) {
  const auto st = up.stats();
  const auto fs = feed_->stats();
  w_.set_counter("points_received", fs.points);
  w_.set_counter("journal_records", fs.records);
  w_.set_counter("decode_errors", fs.decode_errors);
  w_.set_counter("readings_refused", fs.refused);
  w_.set_counter("journal_lost_segments", fs.lost_segments);
  w_.set_counter("journal_corrupt", fs.corrupt);
  w_.set_counter("points_sent", st.points_sent);
  w_.set_counter("points_retried", st.points_retried);
  w_.set_counter("dropped_bad_data", st.dropped_bad_data);
  w_.set_counter("cursor_saves", st.cursor_saves);
  w_.set_counter("probes", st.probes);
  if (files_) w_.set_counter("duplicates_skipped", files_->skipped_duplicates());
  w_.gauge("points_pending", double(st.points_pending));
  w_.gauge("oldest_unsent_age_s", st.oldest_unsent_age_s);
  w_.info("last_error", st.last_error);
}

int UploadWorker::run() {
  if (!make_line_options()) return 2;
  if (!make_target()) return w_.cfg().upload.target == "file" ? 1 : 2;
  make_feed();
  Uploader up(*feed_, *target_, uploader_options());
  std::thread loop([&up] { up.run(); });
  while (w_.running()) {
    w_.sleep_until_due();  // the heartbeat
    report(up);
    w_.tick();
  }
  up.stop();
  loop.join();
  if (keeper_) keeper_->stop();
  report(up);
  log::info("stopped: %llu points sent this run",
            static_cast<unsigned long long>(up.stats().points_sent));
  return 0;
}

}  // namespace mp::upload
