#include "upload/sender.h"

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

}  // namespace

Sender::Sender(Spool& spool, InfluxConfig cfg, SenderOptions opt)
    : spool_(spool), client_(std::move(cfg)), opt_(opt) {
  rng_ = opt_.random_seed ? opt_.random_seed : static_cast<uint64_t>(clock::mono_ns()) | 1;
}

Sender::~Sender() { stop(); }

void Sender::start() {
  std::lock_guard lk(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  client_.reset_abort();
  thread_ = std::thread([this] { run(); });
}

void Sender::stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  client_.abort();
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Sender::notify() {
  {
    std::lock_guard lk(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

double Sender::next_random() {
  // xorshift64*: enough for jitter.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return static_cast<double>((rng_ * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

bool Sender::sleep_for_ms(std::unique_lock<std::mutex>& lk, int64_t ms) {
  return !cv_.wait_for(lk, std::chrono::milliseconds(ms), [this] { return stop_; });
}

SenderStats Sender::stats() const {
  SenderStats s;
  {
    std::lock_guard lk(mu_);
    s = st_;
  }
  SpoolStats sp = spool_.stats();
  s.points_received = sp.points_appended;
  s.dropped_spool_full = sp.dropped_points;
  s.spool_bytes = sp.bytes;
  s.points_pending = sp.points_pending;
  s.oldest_unsent_age_s =
      sp.points_pending && sp.oldest_pending_time_ns
          ? static_cast<double>(clock::wall_ns() - sp.oldest_pending_time_ns) / 1e9
          : 0.0;
  return s;
}

void Sender::run() {
  using namespace std::chrono;
  const int64_t age_ns = opt_.batch_age_ms * 1000000;
  int64_t pending_since = 0;  // mono ns when the loop first saw pending points
  size_t batch_limit = opt_.batch_points;  // lowered by HTTP 413
  int attempt = 0;
  int64_t last_problem_log = 0;
  bool in_trouble = false;

  std::unique_lock lk(mu_);
  while (!stop_) {
    lk.unlock();
    const int64_t now = clock::mono_ns();
    spool_.maybe_sync(now);
    SpoolStats sp = spool_.stats();
    lk.lock();
    if (stop_) break;
    if (sp.points_pending == 0) {
      pending_since = 0;
      cv_.wait_for(lk, milliseconds(100), [this] { return stop_ || woken_; });
      woken_ = false;
      continue;
    }
    if (pending_since == 0) pending_since = now;
    if (sp.points_pending < opt_.batch_points && now - pending_since < age_ns) {
      int64_t wait_ms = std::min<int64_t>((age_ns - (now - pending_since)) / 1000000 + 1, 100);
      cv_.wait_for(lk, milliseconds(wait_ms), [this] { return stop_ || woken_; });
      woken_ = false;
      continue;
    }

    lk.unlock();
    SpoolBatch batch = spool_.peek(std::min(opt_.batch_points, batch_limit), opt_.batch_max_bytes);
    WriteResult r;
    if (batch.count > 0) r = client_.write(batch.body);
    lk.lock();
    if (batch.count == 0) {
      pending_since = 0;
      continue;
    }
    st_.last_http_status = r.http_status;
    const int64_t t = clock::mono_ns();
    switch (r.cls) {
      case WriteClass::ok:
        lk.unlock();
        spool_.commit(batch.end);
        lk.lock();
        st_.points_sent += batch.count;
        st_.batches_sent += 1;
        st_.config_error = false;
        if (in_trouble) log::info("upload: delivering again (%zu points sent)", batch.count);
        in_trouble = false;
        attempt = 0;
        // Whatever is still pending has waited long enough (backlog): send it at once.
        pending_since = t - age_ns;
        break;
      case WriteClass::too_large:
        // HTTP 413: a proxy or server limit on the body size. Halve the batch and go on;
        // nothing is dropped (a single point that is still too large is refused as bad data).
        if (batch.count > 1) {
          batch_limit = std::max<size_t>(1, batch.count / 2);
          log::warn("upload: server says the batch is too large (HTTP 413): %zu points per batch "
                    "from now on",
                    batch_limit);
          pending_since = t - age_ns;
          break;
        }
        [[fallthrough]];
      case WriteClass::bad_data:
        lk.unlock();
        spool_.commit(batch.end);
        lk.lock();
        st_.dropped_bad_data += batch.count;
        st_.batches_dropped_bad_data += 1;
        st_.last_error = "HTTP " + std::to_string(r.http_status) + ": " + one_line(r.message);
        st_.last_error_wall_ns = clock::wall_ns();
        log::error(
            "upload: server refused a batch (HTTP %ld): %s; dropped %zu points; first "
            "offending line: %s",
            r.http_status, one_line(r.message).c_str(), batch.count,
            r.first_bad_line.empty() ? "(not identified)" : one_line(r.first_bad_line).c_str());
        attempt = 0;
        pending_since = t - age_ns;
        break;
      case WriteClass::config_error:
      case WriteClass::retry: {
        const bool cfg = r.cls == WriteClass::config_error;
        st_.config_error = cfg;
        st_.retries += 1;
        st_.points_retried += batch.count;
        st_.last_error = r.http_status
                             ? "HTTP " + std::to_string(r.http_status) + ": " + one_line(r.message)
                             : one_line(r.message);
        st_.last_error_wall_ns = clock::wall_ns();
        int64_t delay = opt_.backoff.delay_ms(attempt, r.retry_after_ms, next_random());
        if (attempt < 30) ++attempt;
        if (!in_trouble || t - last_problem_log >= opt_.config_error_log_interval_ms * 1000000) {
          if (cfg)
            log::error(
                "upload: configuration error at %s: %s (data kept; check url, "
                "db/bucket, org and credentials)",
                client_.write_url().c_str(), st_.last_error.c_str());
          else
            log::warn("upload: %s; %llu points kept, retrying in %lld ms", st_.last_error.c_str(),
                      static_cast<unsigned long long>(sp.points_pending),
                      static_cast<long long>(delay));
          last_problem_log = t;
        }
        in_trouble = true;
        if (!sleep_for_ms(lk, delay)) goto out;
        break;
      }
      case WriteClass::aborted:
        goto out;
    }
  }
out:
  lk.unlock();
  spool_.sync();
}

}  // namespace mp::upload
