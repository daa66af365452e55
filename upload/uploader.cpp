#include "upload/uploader.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "common/clock.h"
#include "common/log.h"

namespace mp::upload {
namespace {

// One line per event: control characters in server texts become spaces.
std::string one_line(std::string_view s, size_t max = 300) {
  std::string out;
  for (char c : s.substr(0, max)) out += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  if (s.size() > max) out += "...";
  return out;
}

std::string error_text(const WriteResult& r) {
  return r.http_status ? "HTTP " + std::to_string(r.http_status) + ": " + one_line(r.message)
                       : one_line(r.message);
}

}  // namespace

Uploader::Uploader(Feed& feed, Target& target, UploaderOptions opt)
    : feed_(feed), target_(target), opt_(opt), batch_limit_(opt.batch_points) {
  rng_ = opt_.random_seed ? opt_.random_seed : static_cast<uint64_t>(clock::mono_ns()) | 1;
  confirmed_ = feed_.saved();
  batch_marks_ = confirmed_;
  stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

Uploader::~Uploader() {
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void Uploader::stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  target_.abort();
  cv_.notify_all();
  const uint64_t one = 1;
  if (stop_fd_ >= 0) (void)!::write(stop_fd_, &one, sizeof one);
}

bool Uploader::wait_change(int64_t ms) {
  const int change = feed_.change_fd();
  if (change < 0 || stop_fd_ < 0) return wait_ms(ms);
  pollfd p[2] = {{stop_fd_, POLLIN, 0}, {change, POLLIN, 0}};
  if (::poll(p, 2, int(std::max<int64_t>(ms, 0))) > 0 && p[1].revents) feed_.drain_changes();
  std::lock_guard lk(mu_);
  return !stop_;
}

bool Uploader::wait_ms(int64_t ms) {
  std::unique_lock lk(mu_);
  if (ms <= 0) return !stop_;  // a look, not a sleep (a zero-timeout futex wait still is one)
  return !cv_.wait_for(lk, std::chrono::milliseconds(ms), [this] { return stop_; });
}

double Uploader::next_random() {
  // xorshift64*: enough for jitter.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return static_cast<double>((rng_ * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

UploaderStats Uploader::stats() const {
  std::lock_guard lk(mu_);
  return st_;
}

void Uploader::run() {
  last_commit_ = clock::mono_ns();
  while (wait_ms(0)) {
    // watched before reading: a write after the read still wakes the wait below
    const int64_t idle = feed_.watch() ? opt_.idle_watched_ms : opt_.idle_ms;
    const int64_t now = clock::mono_ns();
    if (!fill_batch(now)) {
      commit(now, false);
      if (!wait_for_batch(now, idle)) break;
      continue;
    }
    const WriteResult r = deliver_batch();
    if (r.cls == WriteClass::aborted) break;
    if (r.cls == WriteClass::ok) {
      confirm_batch();
    } else {
      back_off(r);
    }
    commit(clock::mono_ns(), false);
  }
  if (opt_.deliver_at_stop) deliver_rest();
  commit(clock::mono_ns(), true);
}

// At a clean stop, a local target gets the batch in flight and what the journals hold beyond
// it, up to one more batch (quick: a stop returns within about a second), so today's file
// ends with the last points; the rest waits in the journals for the next start.
void Uploader::deliver_rest() {
  fill_batch(clock::mono_ns());
  if (batch_.empty()) return;
  if (deliver_batch().cls == WriteClass::ok) confirm_batch();
}

// An empty batch waits for the journals to change; a started one only for its age: what the
// journals get meanwhile waits there and is read when the batch is due, so points arriving
// one by one cost one wake per batch, not one per point (issue 22).
bool Uploader::wait_for_batch(int64_t now, int64_t idle) {
  if (batch_.empty()) return wait_change(idle);
  const int64_t age_left = opt_.batch_age_ms - (now - batch_since_) / 1000000;
  if (!wait_ms(std::max<int64_t>(age_left, 1))) return false;
  feed_.drain_changes();  // before the read: a write after it still wakes the next wait
  return true;
}

bool Uploader::fill_batch(int64_t now) {
  if (batch_.size() < opt_.batch_points) {
    const size_t before = batch_.size();
    feed_.read(batch_, opt_.batch_points - batch_.size());
    batch_marks_ = feed_.marks();
    if (batch_.empty()) {
      confirmed_ = batch_marks_;  // records that made no point
      backlog_ = false;
    } else if (before == 0)  // after a full batch the rest of a backlog goes at once
      batch_since_ = backlog_ ? now - opt_.batch_age_ms * 1000000 : now;
  }
  {
    std::lock_guard lk(mu_);
    st_.points_pending = batch_.size();
    st_.oldest_unsent_age_s =
        batch_.empty() ? 0 : double(clock::wall_ns() - batch_.front().time_ns) / 1e9;
  }
  return !batch_.empty() &&
         (batch_.size() >= opt_.batch_points || now - batch_since_ >= opt_.batch_age_ms * 1000000);
}

WriteResult Uploader::deliver_batch() {
  WriteResult r;
  r.cls = WriteClass::ok;
  size_t i = sent_upto_;
  while (i < batch_.size()) {
    size_t j = i, bytes = 0;
    while (j < batch_.size() && j - i < batch_limit_ &&
           (j == i || bytes + batch_[j].line.size() + 1 <= opt_.batch_max_bytes))
      bytes += batch_[j++].line.size() + 1;
    r = target_.deliver(batch_, i, j);
    std::lock_guard lk(mu_);
    st_.last_http_status = r.http_status;
    if (r.cls == WriteClass::too_large && j - i > 1) {
      // HTTP 413: a proxy or server limit on the body size. Halve and go on.
      batch_limit_ = std::max<size_t>(1, (j - i) / 2);
      log::warn(
          "upload: server says the batch is too large (HTTP 413): %zu points per batch "
          "from now on",
          batch_limit_);
      continue;
    }
    if (r.cls == WriteClass::bad_data || r.cls == WriteClass::too_large) {
      st_.dropped_bad_data += j - i;
      st_.batches_dropped_bad_data += 1;
      st_.last_error = error_text(r);
      st_.last_error_wall_ns = clock::wall_ns();
      log::error(
          "upload: server refused a batch (HTTP %ld): %s; dropped %zu points; first "
          "offending line: %s",
          r.http_status, one_line(r.message).c_str(), j - i,
          r.first_bad_line.empty() ? "(not identified)" : one_line(r.first_bad_line).c_str());
      i = j;
      continue;
    }
    if (r.cls != WriteClass::ok) {
      sent_upto_ = i;  // a retry resumes after the chunks already accepted
      return r;
    }
    st_.points_sent += j - i;
    st_.batches_sent += 1;
    st_.config_error = false;
    i = j;
  }
  r.cls = WriteClass::ok;
  return r;
}

void Uploader::confirm_batch() {
  if (in_trouble_) log::info("upload: delivering again (%zu points sent)", batch_.size());
  in_trouble_ = false;
  attempt_ = 0;
  confirmed_ = batch_marks_;
  backlog_ = batch_.size() >= opt_.batch_points;
  batch_.clear();
  {
    std::lock_guard lk(mu_);
    st_.points_pending = 0;
  }
  sent_upto_ = 0;
  batch_since_ = 0;
}

void Uploader::back_off(const WriteResult& r) {
  const bool cfg = r.cls == WriteClass::config_error;
  const int64_t delay = opt_.backoff.delay_ms(attempt_, r.retry_after_ms, next_random());
  if (attempt_ < 30) ++attempt_;
  const int64_t now = clock::mono_ns();
  {
    std::lock_guard lk(mu_);
    st_.config_error = cfg;
    st_.retries += 1;
    st_.points_retried += batch_.size() - sent_upto_;
    st_.last_error = error_text(r);
    st_.last_error_wall_ns = clock::wall_ns();
  }
  if (!in_trouble_ || now - last_problem_log_ >= opt_.problem_log_interval_ms * 1000000) {
    if (cfg)
      log::error(
          "upload: configuration error at %s: %s (data kept; check url, db/bucket, org "
          "and credentials)",
          target_.describe().c_str(), error_text(r).c_str());
    else
      log::warn("upload: %s; %zu points kept in the journal, retrying in %lld ms",
                error_text(r).c_str(), batch_.size(), static_cast<long long>(delay));
    last_problem_log_ = now;
  }
  in_trouble_ = true;
  // No answer at all (server down, network gone): probe cheaply and go as soon as it answers.
  // A server that answered (5xx, 429, 401) is left alone for the whole delay.
  const bool probe = r.http_status == 0 && !r.retry_after_ms && !cfg;
  const int64_t deadline = now + delay * 1000000;
  while (true) {
    const int64_t left = (deadline - clock::mono_ns()) / 1000000;
    if (left <= 0) return;
    if (!wait_ms(probe ? std::min(left, opt_.probe_ms) : std::min<int64_t>(left, 1000))) return;
    if (!probe || clock::mono_ns() >= deadline) continue;
    {
      std::lock_guard lk(mu_);
      st_.probes += 1;
    }
    if (target_.probe()) {
      log::info("upload: %s answers again; sending", target_.describe().c_str());
      return;
    }
  }
}

void Uploader::commit(int64_t now, bool force) {
  if (confirmed_ == feed_.saved()) return;
  if (!force && now - last_commit_ < opt_.cursor_save_ms * 1000000) return;
  target_.make_durable();
  if (!feed_.save(confirmed_)) log::warn("upload: cannot save the journal cursors");
  last_commit_ = now;
  std::lock_guard lk(mu_);
  st_.cursor_saves += 1;
}

}  // namespace mp::upload
