#include "upload/journal_feed.h"

#include <sys/inotify.h>
#include <unistd.h>

#include "common/log.h"
#include "meterpipe.pb.h"

namespace mp::upload {

JournalFeed::JournalFeed(const config::Config& cfg, LineProtocolOptions lp, std::string consumer)
    : cfg_(cfg), lp_(std::move(lp)), consumer_(std::move(consumer)), decoders_(cfg) {}

JournalFeed::~JournalFeed() {
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
}

bool JournalFeed::watch() {
  if (all_watched_) return true;
  if (inotify_fd_ < 0) inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) return false;
  bool all = true;
  for (auto& s : sources_) {
    if (!s.watched)
      s.watched =
          inotify_add_watch(inotify_fd_, s.dir.c_str(), IN_MODIFY | IN_CREATE | IN_MOVED_TO) >= 0;
    all = all && s.watched;
  }
  all_watched_ = all;
  return all;
}

void JournalFeed::drain_changes() {
  if (inotify_fd_ < 0) return;
  alignas(inotify_event) char buf[4096];
  while (::read(inotify_fd_, buf, sizeof buf) > 0) {
  }
}

void JournalFeed::add_source(const std::string& dir, Kind kind) {
  Source s;
  s.dir = dir;
  s.kind = kind;
  s.reader = std::make_unique<journal::Reader>(dir);
  if (journal::load_cursor(dir, consumer_, s.pos))
    log::info("journal %s: resuming at segment %llu offset %llu", dir.c_str(),
              static_cast<unsigned long long>(s.pos.segment),
              static_cast<unsigned long long>(s.pos.offset));
  s.clean = s.pos;
  saved_.push_back(s.pos);
  sources_.push_back(std::move(s));
}

void JournalFeed::take(Source& s, const std::string& payload, std::vector<Point>& out) {
  meterpipe::Envelope env;
  if (!env.ParseFromString(payload)) {
    ++st_.bad_records;
    return;
  }
  if (s.kind == Kind::relay_events) {
    if (!env.has_relay()) {
      ++st_.bad_records;
      return;
    }
    std::string line = encode_relay(env, lp_.precision);
    if (line.empty()) {
      ++st_.refused;
      return;
    }
    out.push_back(Point{std::move(line), env.send_time_ns()});
    ++st_.points;
    return;
  }
  if (!env.has_raw()) {
    ++st_.bad_records;
    return;
  }
  const auto& raw = env.raw();
  meterpipe::Reading reading;
  std::string error;
  switch (decoders_.decode(raw, reading, error)) {
    case process::Status::pending:
      s.partial.insert(raw.source());
      return;
    case process::Status::error:
      s.partial.erase(raw.source());
      ++st_.decode_errors;
      return;
    case process::Status::reading:
      s.partial.erase(raw.source());
      break;
  }
  auto res = encode(reading, lp_);
  if (!res.ok()) {
    ++st_.refused;
    return;
  }
  for (auto& p : res.points) {
    out.push_back(Point{std::move(p.line), p.time_ns});
    ++st_.points;
  }
}

size_t JournalFeed::read(std::vector<Point>& out, size_t max_points) {
  const size_t start = out.size();
  bool more = true;
  std::string payload;
  while (more && out.size() - start < max_points) {
    more = false;
    for (auto& s : sources_) {  // in turn, so one busy journal does not starve the other
      if (out.size() - start >= max_points) break;
      if (s.reader->next(s.pos, payload) != journal::Reader::Result::record) continue;
      ++st_.records;
      more = true;
      take(s, payload, out);
      if (s.partial.empty()) s.clean = s.pos;
    }
  }
  return out.size() - start;
}

JournalFeed::Marks JournalFeed::marks() const {
  Marks m;
  for (const auto& s : sources_) m.push_back(s.clean);
  return m;
}

bool JournalFeed::save(const Marks& m) {
  bool ok = true;
  for (size_t i = 0; i < sources_.size() && i < m.size(); ++i) {
    if (m[i] == saved_[i] || m[i].segment == 0) continue;
    if (journal::save_cursor(sources_[i].reader->dir(), consumer_, m[i]))
      saved_[i] = m[i];
    else
      ok = false;
  }
  return ok;
}

FeedStats JournalFeed::stats() const {
  FeedStats s = st_;
  for (const auto& src : sources_) {
    s.lost_segments += src.reader->stats().lost_segments;
    s.corrupt += src.reader->stats().corrupt;
  }
  return s;
}

}  // namespace mp::upload
